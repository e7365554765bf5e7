"""The agent's link watchdog as a pure rule: probe after keepalive/2 of silence, dead after
another keepalive/2 unanswered; timeouts and "no route" say the path is down."""

from __future__ import annotations

import errno

from edge_runtime.liveness import Liveness, Verdict, path_down


def test_silence_gets_a_probe_then_the_link_is_declared_dead_within_one_keepalive() -> None:
    watchdog = Liveness(10)
    watchdog.opened(0.0)
    watchdog.established(0.5)
    assert watchdog.check(5.4) is Verdict.ALIVE
    assert watchdog.check(5.5) is Verdict.PROBE
    assert watchdog.check(7.0) is Verdict.ALIVE  # waiting for the answer
    assert watchdog.check(10.5) is Verdict.DEAD  # one keepalive after the last thing heard


def test_an_answer_to_the_probe_keeps_the_link() -> None:
    watchdog = Liveness(10)
    watchdog.opened(0.0)
    watchdog.established(0.0)
    assert watchdog.check(5.0) is Verdict.PROBE
    watchdog.heard(6.0)
    assert watchdog.check(10.9) is Verdict.ALIVE
    assert watchdog.check(11.0) is Verdict.PROBE


def test_a_connack_may_take_a_whole_keepalive() -> None:
    watchdog = Liveness(10)
    watchdog.opened(0.0)
    assert watchdog.check(9.9) is Verdict.ALIVE
    assert watchdog.check(10.0) is Verdict.DEAD


def test_path_down_is_a_timeout_or_no_route_never_a_refusal() -> None:
    assert path_down(TimeoutError())
    assert path_down(OSError(errno.EHOSTUNREACH, "No route to host"))
    assert path_down(OSError(errno.ENETUNREACH, "Network is unreachable"))
    assert not path_down(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"))
    assert not path_down(ConnectionResetError(errno.ECONNRESET, "reset"))


def test_the_broker_is_told_half_the_keepalive_so_its_will_fires_within_the_bound() -> None:
    # Mosquitto waits up to 2.2 x what it is told (measured): told half, 1.1 x the keepalive
    from edge_runtime.sync import broker_keepalive

    assert [broker_keepalive(k) for k in (5, 10, 30, 31)] == [3, 5, 15, 16]
    assert all(2.2 * broker_keepalive(k) <= 1.5 * k for k in range(5, 200))
