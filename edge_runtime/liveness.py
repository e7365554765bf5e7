"""How the agent knows its broker link is dead: its own watchdog, faster than MQTT keepalive.

A link can die without a FIN or RST: a NAT forgets the flow, a cable is pulled upstream,
a firewall starts dropping. The socket stays open and nothing flows (a half-open link).
The broker notices after 1.5 x keepalive and fires the node's will, so the cloud shows it
offline; paho notices only after up to 2 x keepalive (it pings after one keepalive of
silence, then waits another for the answer), and meanwhile the node's reports go nowhere.

``Liveness`` is the rule, without sockets or clocks of its own: anything heard from the
broker (CONNACK, a message, an acknowledgement) proves the link. After ``keepalive / 2``
of silence the link sends a probe the broker itself answers (an UNSUBSCRIBE of a filter
never subscribed: an UNSUBACK comes back, nothing is delivered anywhere, the cloud never
sees it); if nothing at all is heard within ``keepalive / 2`` after the probe, the link
is declared dead and dropped. A dead link is therefore noticed at most one keepalive
after the last thing heard (plus the link's loop period), within the broker's
1.5 x keepalive. Before the CONNACK, a whole keepalive is allowed.

``path_down`` sorts connection failures: a timeout or "no route" means the network
between node and broker is down, not the broker, so the next attempt should come soon
(the link returns at an unknown moment) instead of after a doubling backoff; a refusal
means the broker is down or restarting, where backing off is what spares it a stampede.
"""

from __future__ import annotations

import errno
from enum import Enum

PATH_ERRNOS = frozenset({errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN,
                         errno.EHOSTDOWN})


class Verdict(Enum):
    ALIVE = "alive"
    PROBE = "probe"  # send a probe now
    DEAD = "dead"  # drop the connection


class Liveness:
    """The watchdog of one connection; times are the caller's monotonic clock."""

    def __init__(self, keepalive: float) -> None:
        self.keepalive = keepalive
        self._heard = 0.0
        self._probed: float | None = None
        self._established = False

    @property
    def silence_limit(self) -> float:
        """Silence after which a probe goes out, and then the wait for any answer."""
        return self.keepalive / 2

    def opened(self, now: float) -> None:
        """The socket connected; the CONNACK may take up to a keepalive."""
        self._heard, self._probed, self._established = now, None, False

    def established(self, now: float) -> None:
        self._established = True
        self.heard(now)

    def heard(self, now: float) -> None:
        """Anything came from the broker."""
        self._heard, self._probed = now, None

    def check(self, now: float) -> Verdict:
        if not self._established:
            return Verdict.DEAD if now - self._heard >= self.keepalive else Verdict.ALIVE
        if self._probed is not None:
            return Verdict.DEAD if now - self._probed >= self.silence_limit else Verdict.ALIVE
        if now - self._heard >= self.silence_limit:
            self._probed = now
            return Verdict.PROBE
        return Verdict.ALIVE

    def silent_for(self, now: float) -> float:
        return now - self._heard


def path_down(exc: OSError) -> bool:
    """Whether a failed connect says the network is down (retry soon), not the broker."""
    return isinstance(exc, TimeoutError) or exc.errno in PATH_ERRNOS
