"""The errors of the embedded broker, in one tree so callers catch one base class.

Whoever starts a broker (``tether broker serve``, ``tether up``, a test) wants to tell
"the operator must do something" (a port is taken, a setting is wrong) from a bug. Every
error raised out of :mod:`broker` is a :class:`BrokerError`; errors of amqtt, of the
socket layer or of httpx are wrapped with ``raise ... from exc`` so the cause stays on the
chain but the message is ours, one line, and says what to do::

    BrokerError                  base: catch this in a CLI, print str(exc), exit non-zero
    ├── BrokerConfigError        settings that cannot work (bad topic root, no auth source)
    ├── BrokerStartError         amqtt refused to start, or did not start in time
    │   └── PortInUse            the MQTT port is taken by another process
    └── BrokerStateError         start() twice, port asked for before start(), ...

Authentication failures are not errors here: a refused client gets CONNACK "not
authorized" and the broker carries on. Nothing a client sends raises out of the broker.
"""

from __future__ import annotations

__all__ = [
    "BrokerConfigError",
    "BrokerError",
    "BrokerStartError",
    "BrokerStateError",
    "PortInUse",
]


class BrokerError(Exception):
    """Base of every error raised by the :mod:`broker` package."""


class BrokerConfigError(BrokerError):
    """The broker's settings cannot work; the message names the setting to change."""


class BrokerStartError(BrokerError):
    """The broker could not start listening."""


class PortInUse(BrokerStartError):
    """The MQTT port is already bound by another process (often another broker)."""

    def __init__(self, host: str, port: int, *, hint: str = "pass --mqtt-port") -> None:
        self.host = host
        self.port = port
        super().__init__(f"port {port} on {host} is in use: stop the other broker or {hint}")


class BrokerStateError(BrokerError):
    """A lifecycle method was called at the wrong time (e.g. ``port`` before ``start()``)."""
