"""Telling whoever holds live connections that a node's credentials were just revoked.

The database decides every *new* connection (the broker asks the cloud at each connect),
but a node already connected would keep its session until it reconnects. The cloud
cannot import the broker (DESIGN §1), so it announces revocations here and the process
that owns both (the launcher, a test) subscribes the broker's ``disconnect`` to it. A
standalone embedded broker relies on its periodic re-check of connected clients instead,
and for a broker that can ask nobody (Mosquitto) the cloud itself subscribes
``kicking.SessionKicker``, which takes the node's session over.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["Revocations"]

log = logging.getLogger(__name__)

RevocationListener = Callable[[str], object]
"""Called with the revoked identity ``NS/NODE``; its result is ignored."""


class Revocations:
    """A list of listeners called, in the revoking thread, with each revoked identity."""

    def __init__(self) -> None:
        self._listeners: list[RevocationListener] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: RevocationListener) -> Callable[[], None]:
        """Add a listener; returns a function that removes it."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def announce(self, identity: str) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(identity)
            except Exception:  # one failing listener must not stop the others
                log.exception("a revocation listener failed for %s", identity)
