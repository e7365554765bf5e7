"""Releasing a test's paho client whole, so that none of its sockets is left to the collector.

``loop_start`` opens a pair of sockets through which other threads wake paho's network
thread, and neither ``disconnect`` nor ``loop_stop`` closes them: the client's ``__del__``
does. A test's client is mostly in a reference cycle (its callbacks hold the probe that
holds it), so a later garbage collection, in whatever test runs then, finalises it; when
the collector reaches the sockets before the client, Python warns "unclosed socket", and
the suite, which turns warnings into errors, failed that unrelated test. Found with a
``gc.collect()`` after every test: four refused probes in ``tests/broker`` left their pair.
"""

from __future__ import annotations

import paho.mqtt.client as mqtt


def release_sockets(client: mqtt.Client) -> None:
    """Close the client's connection and its wake-up socket pair; call after ``loop_stop``."""
    # paho 2.x has no public call for this; its __del__ calls the same method
    client._reset_sockets()
