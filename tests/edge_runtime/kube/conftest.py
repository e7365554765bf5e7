"""Fixtures for the kube backend's tests: the fake API server, or a real cluster.

``fake_kube`` is the project's fake API server (``tests/fake_kube``). ``kube_api`` is the
``ApiClient`` backend code should be handed: the fake's, unless the test is marked
``kube_real`` and ``KUBECONFIG`` is set, in which case it talks to that cluster -- so one
test body can run against both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from kubernetes.client import ApiClient
from kubernetes.config import new_client_from_config

from tests.fake_kube.fixtures import fake_kube

__all__ = ["fake_kube", "kube_api"]


@pytest.fixture
def kube_api(request: pytest.FixtureRequest) -> Iterator[ApiClient]:
    kubeconfig = os.environ.get("KUBECONFIG")
    if request.node.get_closest_marker("kube_real") is not None and kubeconfig:
        client = new_client_from_config(config_file=kubeconfig)
        try:
            yield client
        finally:
            client.close()
        return
    yield request.getfixturevalue("fake_kube").api_client()
