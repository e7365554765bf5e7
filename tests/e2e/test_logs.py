"""Logs and events end to end: a real edge agent (child process), the embedded broker, the
cloud. A crashing native app's last lines come back through ``tether logs`` in under 2 s;
``-f`` delivers new lines; its crashes become one deduplicated event; a node the cloud
knows is offline is refused at once; a token of another namespace reads nothing.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
from typer.testing import CliRunner

from cloud_api.admin.observing import app as observing_app
from launcher.stack import LocalStack
from tests.e2e.conftest import Api, wait_until

CRASHER = ("import sys; print('starting up', flush=True); "
           "print('fatal: cannot open /nonexistent/config.yaml', flush=True); sys.exit(3)")
TICKER = ("import itertools, time\n"
          "for i in itertools.count():\n"
          "    print(f'tick {i}', flush=True); time.sleep(0.1)\n")
LOGS = "/v1/namespaces/default/nodes/local/logs"


def app_of(name: str, code: str) -> dict[str, Any]:
    return {"name": name, "selector": "",
            "services": [{"name": "main", "command": [sys.executable, "-u", "-c", code]}]}


def events_of(api: Api, app: str) -> list[dict[str, Any]]:
    response = api.client.get("/v1/namespaces/default/events", params={"app": app})
    response.raise_for_status()
    return response.json()["items"]  # type: ignore[no-any-return]


def test_a_crashing_apps_last_lines_and_events_through_the_cloud(
    make_stack: Callable[..., LocalStack], make_api: Callable[[LocalStack], Api]
) -> None:
    stack = make_stack(edge_env={"TETHER_EDGE_RECONNECT_MAX_SECONDS": "1",
                                 "TETHER_EDGE_RESTART_BACKOFF_SECONDS": "0.2",
                                 "TETHER_EDGE_RESTART_BACKOFF_MAX_SECONDS": "0.5"})
    api = make_api(stack)
    api.client.post("/v1/namespaces/default/apps", json=app_of("crasher", CRASHER)).raise_for_status()

    def crashed_twice() -> list[dict[str, Any]]:
        found = [e for e in events_of(api, "crasher") if e["kind"] == "Crashed"]
        return found if found and found[0]["count"] >= 2 else []

    crashed = wait_until(crashed_twice, timeout=30, what="the crashes of crasher as an event")
    # deduplicated: one row for the same crash, its count growing
    assert len(crashed) == 1 and crashed[0]["message"] == "main-0 exited: exit code 3"
    assert crashed[0]["node"] == "local" and crashed[0]["service"] == "main"
    assert crashed[0]["time"].endswith("Z")
    kinds = {e["kind"] for e in events_of(api, "crasher")}
    assert {"Crashed"} <= kinds <= {"Crashed", "Restarted", "BackOff", "Started"}

    runner = CliRunner()
    cli = ["--server", stack.api_url, "--token", stack.admin_token()]
    started = time.monotonic()
    result = runner.invoke(observing_app, ["logs", "local", "crasher", "--tail", "2", *cli])
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["starting up", "fatal: cannot open /nonexistent/config.yaml"]
    print(f"\n`tether logs local crasher --tail 2` took {elapsed * 1000:.0f} ms")
    assert elapsed < 2.0, f"tether logs took {elapsed:.2f} s"

    body = api.client.get(LOGS, params={"app": "crasher", "service": "main", "tail": 4}).json()
    assert body["node"] == "local" and body["app"] == "crasher" and body["service"] == "main"
    assert len(body["lines"]) == 4 and body["truncated"] is False
    missing = api.client.get(LOGS, params={"app": "nope"})
    assert missing.status_code == 404 and "does not run on this node" in missing.json()["message"]

    table = runner.invoke(observing_app, ["events", "--app", "crasher", *cli])
    assert table.exit_code == 0 and "Crashed" in table.output and "main-0 exited" in table.output


def test_follow_delivers_new_lines_and_ends_with_the_client(
    make_stack: Callable[..., LocalStack], make_api: Callable[[LocalStack], Api]
) -> None:
    stack = make_stack()
    api = make_api(stack)
    api.client.post("/v1/namespaces/default/apps", json=app_of("ticker", TICKER)).raise_for_status()
    wait_until(lambda: api.client.get(LOGS, params={"app": "ticker", "tail": 1}).json().get("lines"),
               timeout=30, what="the ticker's first line")
    seen: list[str] = []
    with api.client.stream("GET", LOGS, params={"app": "ticker", "tail": 1, "follow": "true"},
                           timeout=httpx.Timeout(10, read=10)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                seen += json.loads(line[6:])["lines"]
            if len(seen) >= 5:
                break
    numbers = [int(text.split()[1]) for text in seen]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), seen  # in order, none lost
    assert stack.cloud is not None
    wait_until(lambda: stack.cloud is not None and stack.cloud.context.logs.open_streams == 0,
               timeout=5, what="the cloud to forget the stream its client left")


def test_offline_nodes_and_other_namespaces_are_refused(
    make_stack: Callable[..., LocalStack], make_api: Callable[[LocalStack], Api]
) -> None:
    stack = make_stack()
    api = make_api(stack)
    api.client.post("/v1/namespaces/default/nodes", json={"name": "ghost"}).raise_for_status()
    timings = []
    for _ in range(5):  # the median, on a warm connection: the machine is shared
        started = time.monotonic()
        refused = api.client.get("/v1/namespaces/default/nodes/ghost/logs", params={"app": "x"})
        timings.append(time.monotonic() - started)
        assert refused.status_code == 503, refused.text
    body = refused.json()
    assert body["code"] == "NodeOffline" and body["lastSeen"] is None
    assert "never connected" in body["message"] and refused.headers["retry-after"] == "5"
    elapsed = sorted(timings)[2]
    print(f"\noffline node refused in {elapsed * 1000:.1f} ms (median of 5)")
    assert elapsed < 0.1, f"{timings}"

    api.client.post("/v1/namespaces", json={"name": "a"}).raise_for_status()
    issued = api.client.post("/v1/tokens", json={"namespaces": ["a"], "role": "editor"})
    issued.raise_for_status()
    with httpx.Client(base_url=stack.api_url, timeout=10,
                      headers={"Authorization": f"Bearer {issued.json()['token']}"}) as other:
        assert other.get(LOGS, params={"app": "x"}).status_code == 403
        assert other.get("/v1/namespaces/default/events").status_code == 403
        assert other.get("/v1/namespaces/a/events").json() == {"items": [], "continue": None}
        assert other.get("/v1/namespaces/a/nodes/local/logs", params={"app": "x"}).status_code == 404
    assert api.client.get(LOGS, params={"app": "x", "bogus": "1"}).status_code == 400
    assert api.client.get(LOGS, params={"app": "x", "tail": 10_001}).status_code == 400
