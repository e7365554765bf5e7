"""``ShareProbe`` with an in-memory broker: a share group that delivers, and one that does not."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from cloud_api.mqtt.share_probing import ShareProbe
from schemas.topics import TopicScheme

TOPICS = TopicScheme()


def test_a_probe_that_comes_back_proves_the_group() -> None:
    handled: list[tuple[str, bytes]] = []
    probe = ShareProbe(TOPICS, "g", publish=lambda topic, payload: handle([(topic, payload)]),
                       timeout=1.0)
    handle = probe.watching(lambda batch: handled.extend(batch))
    probe.probe()
    assert probe.problem is None and probe.done.is_set()
    assert handled == []  # probe traffic never reaches the shadow server


def test_a_probe_lost_names_the_problem() -> None:
    probe = ShareProbe(TOPICS, "g", publish=lambda topic, payload: None, timeout=0.2)
    probe.probe()
    assert probe.problem is not None and "$share/" in probe.problem and "'g'" in probe.problem
    assert probe.verdict(0) == probe.problem


def test_another_replicas_probe_is_answered_unshared_and_not_served() -> None:
    sent: list[str] = []
    handled: list[Sequence[tuple[str, bytes]]] = []
    probe = ShareProbe(TOPICS, "g", publish=lambda topic, payload: sent.append(topic))
    handle = probe.watching(handled.append)
    handle([(f"{TOPICS.root}/_probe/other/shadow/get", b"{}"),
            (f"{TOPICS.root}/default/n1/shadow/get", b"{}")])
    assert sent == [f"{TOPICS.root}/_probe/other/functions/_probe/_probe/result"]
    assert handled == [[(f"{TOPICS.root}/default/n1/shadow/get", b"{}")]]


def test_the_probe_runs_again_after_each_resubscription() -> None:
    """A broker that stops delivering after a reconnect (a failover to a broker without
    shared subscriptions) is caught; one that delivers again clears the problem."""
    delivering = threading.Event()
    delivering.set()
    subscriptions = [1]

    def publish(topic: str, payload: bytes) -> None:
        if delivering.is_set():
            handle([(topic, payload)])

    probe = ShareProbe(TOPICS, "g", publish=publish, timeout=0.3)
    handle = probe.watching(lambda batch: None)
    threading.Thread(target=probe.run, args=(lambda timeout: True, lambda: subscriptions[0]),
                     daemon=True).start()
    try:
        assert probe.done.wait(5) and probe.problem is None
        delivering.clear()
        subscriptions[0] += 1  # the bridge reconnected and subscribed again
        deadline = time.monotonic() + 5
        while probe.problem is None:
            assert time.monotonic() < deadline, "the probe did not run after the reconnect"
            time.sleep(0.02)
        delivering.set()
        subscriptions[0] += 1
        while probe.problem is not None:
            assert time.monotonic() < deadline + 5, "a working group stayed failed"
            time.sleep(0.02)
    finally:
        probe.close()
