"""The ``fake_kube`` pytest fixture and its context-manager twin.

Import the fixture into a ``conftest.py`` (``from tests.fake_kube.fixtures import
fake_kube``) or load this module as a plugin (``-p tests.fake_kube.fixtures``). One fake
server per test: starting one costs a thread and a socket, and shared state between tests
would hide ordering bugs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.fake_kube.cluster import FakeKube


@contextmanager
def running_fake_kube(
    *, namespace_defaults: bool = True, cluster_ip: str | None = None
) -> Iterator[FakeKube]:
    """A started ``FakeKube``, stopped (clients closed, sockets dropped) on exit."""
    with FakeKube(namespace_defaults=namespace_defaults, cluster_ip=cluster_ip) as fake:
        yield fake


@pytest.fixture
def fake_kube() -> Iterator[FakeKube]:
    """A fresh fake Kubernetes API server on 127.0.0.1 (port chosen by the OS)."""
    with running_fake_kube() as fake:
        yield fake
