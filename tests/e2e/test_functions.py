"""Function apps end to end: code in a config, invoked through the edge proxy, over MQTT
and through the cloud's REST relay; updated code answers the new way; removal -> 404."""

from __future__ import annotations

import json
import queue
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as mqtt

from launcher.stack import LocalStack
from tests.conftest import free_port
from tests.e2e.conftest import Api, wait_until
from tests.paho_clients import release_sockets

SUM_V1 = 'def handle(event, ctx):\n    return {"sum": event["a"] + event["b"]}\n'
SUM_V2 = 'def handle(event, ctx):\n    return {"sum": event["a"] + event["b"], "v": 2, "node": ctx.node}\n'
BROKEN = 'def handle(event, ctx):\n    raise ValueError("no")\n'
APP = {
    "name": "calc",
    "type": "function",
    "selector": "",
    "services": [{"name": "sum", "handler": "main.handle", "volumeMounts": [{"name": "code", "mountPath": "code"}]}],
    "volumes": [{"name": "code", "config": {"name": "calc-code"}}],
}


def invoke_over_mqtt(stack: LocalStack, payload: Any) -> Any:
    """As a cloud-side integration would: publish invoke, wait for the result by invokeId."""
    root = stack.config.topic_root
    base = f"{root}/default/local/functions/calc/sum"
    url = urlsplit(stack.mqtt_url)
    results: queue.Queue[Any] = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"caller-{uuid.uuid4().hex[:6]}")
    assert stack.cloud is not None
    client.username_pw_set(stack.cloud.settings.mqtt_username, stack.bridge_password())
    subscribed: queue.Queue[bool] = queue.Queue()
    client.on_subscribe = lambda c, u, mid, rc, p: subscribed.put(True)
    client.on_message = lambda c, u, m: results.put(json.loads(m.payload))
    client.connect(url.hostname or "127.0.0.1", url.port or 1883)
    client.loop_start()
    try:
        client.subscribe(f"{base}/result", qos=1)
        subscribed.get(timeout=5)
        client.publish(f"{base}/invoke", json.dumps({"invokeId": "m1", "payload": payload}), qos=1)
        answer = results.get(timeout=10)
        assert answer["invokeId"] == "m1"
        return answer
    finally:
        client.loop_stop()
        client.disconnect()
        release_sockets(client)


def test_function_app_invoked_three_ways_updated_and_removed(
    make_stack: Callable[..., LocalStack], make_api: Callable[[LocalStack], Api]
) -> None:
    proxy_port = free_port()
    stack = make_stack(edge_env={"TETHER_EDGE_RECONNECT_MAX_SECONDS": "1",
                                 "TETHER_EDGE_FUNCTION_PROXY_PORT": str(proxy_port)})
    api = make_api(stack)
    api.client.post("/v1/namespaces/default/configs", json={"name": "calc-code", "data": {"main.py": SUM_V1}}).raise_for_status()
    api.client.post("/v1/namespaces/default/apps", json=APP).raise_for_status()
    proxy = httpx.Client(base_url=f"http://127.0.0.1:{proxy_port}", timeout=10)
    try:
        def answer() -> Any:
            response = proxy.post("/calc/sum", json={"a": 1, "b": 2})
            return response.json() if response.status_code == 200 else None

        assert wait_until(answer, timeout=20, what="the function to answer through the proxy") == {"sum": 3}
        invoked = proxy.post("/calc/sum", json={"a": 1, "b": 2}, headers={"X-Tether-Invoke-Id": "abc"})
        assert invoked.headers["X-Tether-Invoke-Id"] == "abc"

        assert invoke_over_mqtt(stack, {"a": 2, "b": 3})["result"] == {"sum": 5}
        relayed = api.client.post("/v1/namespaces/default/nodes/local/functions/calc/sum:invoke", json={"a": 5, "b": 5})
        assert relayed.status_code == 200 and relayed.json() == {"sum": 10}

        # new code -> a new app version -> a new runtime answers the new way
        api.client.put("/v1/namespaces/default/configs/calc-code", json={"name": "calc-code", "data": {"main.py": SUM_V2}}).raise_for_status()
        wait_until(lambda: (answer() or {}).get("v") == 2, timeout=20, what="the updated code to answer")
        assert answer() == {"sum": 3, "v": 2, "node": "default/local"}

        # a function that raises: 502 with the error, and the proxy keeps serving
        api.client.put("/v1/namespaces/default/configs/calc-code", json={"name": "calc-code", "data": {"main.py": BROKEN}}).raise_for_status()
        def raised() -> dict[str, Any] | None:
            response = proxy.post("/calc/sum", json={"a": 1, "b": 1})
            body = response.json()
            return body if response.status_code == 502 and body["error"]["type"] == "ValueError" else None

        failing = wait_until(raised, timeout=20, what="502 from the raising function")
        assert failing["code"] == 502 and failing["error"]["message"] == "no"
        assert proxy.get("/healthz").status_code == 200

        api.client.delete("/v1/namespaces/default/apps/calc").raise_for_status()
        wait_until(lambda: proxy.post("/calc/sum", json={"a": 1, "b": 1}).status_code == 404, timeout=20, what="404 after removal")
    finally:
        proxy.close()
