"""``ShareProbe`` with an in-memory broker: a share group that delivers, and one that does not."""

from __future__ import annotations

from collections.abc import Sequence

from cloud_api.mqtt.share_probing import ShareProbe
from schemas.topics import TopicScheme

TOPICS = TopicScheme()


def test_a_probe_that_comes_back_proves_the_group() -> None:
    handled: list[tuple[str, bytes]] = []
    probe = ShareProbe(TOPICS, "g", publish=lambda topic, payload: handle([(topic, payload)]),
                       timeout=1.0)
    handle = probe.watching(lambda batch: handled.extend(batch))
    probe.run(lambda timeout: True)
    assert probe.problem is None and probe.done.is_set()
    assert handled == []  # probe traffic never reaches the shadow server


def test_a_probe_lost_names_the_problem() -> None:
    probe = ShareProbe(TOPICS, "g", publish=lambda topic, payload: None, timeout=0.2)
    probe.run(lambda timeout: True)
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
