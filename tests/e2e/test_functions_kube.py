"""The function issue's end-to-end path with the node on the kube backend.

``tether edge run`` runs as a child process with ``TETHER_EDGE_BACKEND=kube`` and a
kubeconfig for the fake API server; ``FakeKubelet`` runs the pods it creates as local
processes (the Tether image's ``python`` is this interpreter) and every Service gets
127.0.0.1, so the URL the backend announces reaches the pod. Invoked through the edge
proxy, over MQTT and through the cloud's REST relay; new code rolls the pod and answers
the new way; removing the app gives 404.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from edge_runtime.settings import DEFAULT_FUNCTION_IMAGE
from launcher.stack import LocalStack
from tests.conftest import free_port
from tests.e2e.conftest import Api, wait_until
from tests.e2e.test_functions import APP, SUM_V1, SUM_V2, invoke_over_mqtt
from tests.fake_kube.fixtures import running_fake_kube
from tests.fake_kube.kubelet import FakeKubelet

NAMESPACE = "tether-edge"


def test_a_kube_node_runs_function_apps_in_pods(
    make_stack: Callable[..., LocalStack], make_api: Callable[[LocalStack], Api], tmp_path: Path
) -> None:
    proxy_port, function_port = free_port(), free_port()
    with running_fake_kube(cluster_ip="127.0.0.1") as fake, FakeKubelet(
        fake, namespace=NAMESPACE, images={DEFAULT_FUNCTION_IMAGE}, workdir=tmp_path / "pods"
    ) as kubelet:
        stack = make_stack(edge_env={
            "TETHER_EDGE_RECONNECT_MAX_SECONDS": "1",
            "TETHER_EDGE_BACKEND": "kube",
            "KUBECONFIG": str(fake.write_kubeconfig(tmp_path / "kubeconfig")),
            "TETHER_EDGE_KUBE_NAMESPACE": NAMESPACE,
            "TETHER_EDGE_FUNCTION_PORT": str(function_port),
            "TETHER_EDGE_FUNCTION_PROXY_PORT": str(proxy_port),
            "TETHER_EDGE_KUBE_POLL_SECONDS": "0.2",
        })
        api = make_api(stack)
        api.client.post("/v1/namespaces/default/configs",
                        json={"name": "calc-code", "data": {"main.py": SUM_V1}}).raise_for_status()
        api.client.post("/v1/namespaces/default/apps", json=APP).raise_for_status()
        with httpx.Client(base_url=f"http://127.0.0.1:{proxy_port}", timeout=10) as proxy:
            def answer() -> Any:
                response = proxy.post("/calc/sum", json={"a": 1, "b": 2})
                return response.json() if response.status_code == 200 else None

            assert wait_until(answer, timeout=30, what="the pod to answer through the proxy") \
                == {"sum": 3}, stack.edge_log.read_text()
            assert invoke_over_mqtt(stack, {"a": 2, "b": 3})["result"] == {"sum": 5}
            relayed = api.client.post(
                "/v1/namespaces/default/nodes/local/functions/calc/sum:invoke", json={"a": 5, "b": 5})
            assert relayed.status_code == 200 and relayed.json() == {"sum": 10}
            reported = api.shadow()["state"]["reported"]["appstats"]["calc"]
            assert reported["status"] == "Running", reported

            api.client.put("/v1/namespaces/default/configs/calc-code",
                           json={"name": "calc-code", "data": {"main.py": SUM_V2}}).raise_for_status()
            wait_until(lambda: (answer() or {}).get("v") == 2, timeout=30,
                       what="the rolled pod to answer the new way")
            assert answer() == {"sum": 3, "v": 2, "node": "default/local"}
            assert len(kubelet.started) == 2

            api.client.delete("/v1/namespaces/default/apps/calc").raise_for_status()
            wait_until(lambda: proxy.post("/calc/sum", json={"a": 1, "b": 1}).status_code == 404,
                       timeout=30, what="404 after removal")
            wait_until(lambda: fake.objects("Deployment", NAMESPACE) == [], timeout=10,
                       what="the Deployment to be deleted")  # the proxy forgets it first
