"""``tether bench``: benchmark commands; the measuring lives in ``launcher.bench``."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from launcher.bench import run_roundtrip
from launcher.mosquitto import PrivateMosquitto

app = typer.Typer(no_args_is_help=True)
console = Console()


@app.command()
def roundtrip(
    count: Annotated[int, typer.Option(min=1, help="Round trips measured.")] = 200,
    warmup: Annotated[int, typer.Option(min=0, help="Round trips run first and not counted.")] = 20,
    broker: Annotated[
        str,
        typer.Option(
            help="'embedded' (amqtt), 'mosquitto' (a private one started with set_tcp_nodelay), "
            "or a URL such as mqtt://127.0.0.1:1883 of a running broker."
        ),
    ] = "embedded",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """PATCH desired through REST until the edge has reported it: p50/p90/p99."""
    if broker == "mosquitto":
        with PrivateMosquitto() as mosquitto:
            summaries = run_roundtrip(count=count, warmup=warmup, mqtt_url=mosquitto.url)
        broker = f"private mosquitto ({mosquitto.url}, set_tcp_nodelay true)"
    elif broker == "embedded":
        summaries = run_roundtrip(count=count, warmup=warmup)
        broker = "embedded amqtt"
    else:
        summaries = run_roundtrip(count=count, warmup=warmup, mqtt_url=broker)
    rows = [s.row() for s in summaries]
    if as_json:
        print(json.dumps({"broker": broker, "results": rows}))
        return
    table = Table(title=f"Shadow round trip, broker: {broker}")
    for column in rows[0]:
        table.add_column(column, justify="left" if column == "name" else "right")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)


@app.command()
def matching(
    nodes: Annotated[int, typer.Option(min=1, help="Nodes in the fleet.")] = 10_000,
    apps: Annotated[int, typer.Option(min=1, help="Apps with selectors.")] = 100,
    database_url: Annotated[
        str | None, typer.Option(help="postgresql://... to measure PostgreSQL [default: a scratch SQLite file].")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Recompute every node's desired apps after a label change on every node."""
    from launcher.bench_matching import run_matching_bench

    result = run_matching_bench(nodes=nodes, apps=apps, database_url=database_url)
    if as_json:
        print(json.dumps(result))
        return
    table = Table(title=f"Matching {nodes} nodes x {apps} apps on {result['database']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, str(value))
    console.print(table)


@app.command()
def serving(
    nodes: Annotated[int, typer.Option(min=1, help="Nodes in the store.")] = 10_000,
    messages: Annotated[int, typer.Option(min=10, help="Messages of each kind and batch size.")] = 5_000,
    batch: Annotated[list[int] | None, typer.Option(help="Batch sizes [default: 1, 8, 64].")] = None,
    database_url: Annotated[
        str | None, typer.Option(help="postgresql://... server to measure PostgreSQL on (a database of "
                                      "its own is created and dropped) [default: a scratch SQLite file].")
    ] = None,
    profile: Annotated[bool, typer.Option(help="Also print where lone updates spend their CPU.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """CPU per node message in the cloud's shadow server (no broker): updates, gets, statuses."""
    from launcher.bench_serving import run_serving_bench

    result = run_serving_bench(nodes=nodes, messages=messages, batch_sizes=batch or (1, 8, 64),
                               database_url=database_url, profile=profile)
    if as_json:
        print(json.dumps(result))
        return
    table = Table(title=f"Shadow server, {nodes} nodes on {result['database']}: CPU µs per message")
    table.add_column("message x batch size")
    table.add_column("CPU µs", justify="right")
    for key, value in result["cpu_us_per_message"].items():
        table.add_row(key, str(value))
    console.print(table)
    if profile:
        console.print(result["profile"], markup=False, highlight=False)


@app.command()
def functions(
    count: Annotated[int, typer.Option(min=1, help="Invocations measured.")] = 2000,
    concurrency: Annotated[int, typer.Option(min=1, help="Callers invoking at once.")] = 4,
    replicas: Annotated[int, typer.Option(min=1, help="Runtime processes behind the proxy.")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Invocations per second and p50/p99 through the edge function proxy to a trivial function."""
    from launcher.bench_functions import run_function_bench

    row = run_function_bench(count=count, concurrency=concurrency, replicas=replicas).row()
    if as_json:
        print(json.dumps(row))
        return
    table = Table(title="Function proxy")
    for column in row:
        table.add_column(column, justify="right")
    table.add_row(*(str(v) for v in row.values()))
    console.print(table)


class _PhaseBars:
    """A rich progress bar per phase of the fleet bench (``launcher.fleet.running.Progress``)."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: TaskID | None = None

    def phase(self, name: str, total: int) -> None:
        self._task = self._progress.add_task(name, total=total)

    def update(self, done: int) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=done)


@app.command()
def fleet(
    nodes: Annotated[int, typer.Option(min=1, help="Simulated edge nodes, in this one process.")] = 1000,
    mqtt_url: Annotated[
        str | None, typer.Option(help="Use this broker [default: a private Mosquitto on a free port].")
    ] = None,
    cloud_url: Annotated[
        str | None, typer.Option(help="Use this running cloud (with --token) [default: start one].")
    ] = None,
    token: Annotated[str | None, typer.Option(help="Admin token of --cloud-url.")] = None,
    database_url: Annotated[
        str | None,
        typer.Option(help="postgresql://... server: the bench creates (and drops) a database of "
                     "its own there [default: SQLite in a temp dir]."),
    ] = None,
    replicas: Annotated[int, typer.Option(min=1, help="Cloud processes, with --share-group (PostgreSQL).")] = 1,
    update_nodes: Annotated[int, typer.Option(min=0, help="Nodes reporting updates in phase 4.")] = 10,
    update_seconds: Annotated[float, typer.Option(min=0, help="Length of phase 4.")] = 10.0,
    fault: Annotated[
        str | None, typer.Option(help="broker-restart, replica-kill or partition (the fleet in a "
                                 "network namespace, every packet dropped; needs root), mid-rollout.")
    ] = None,
    partition_seconds: Annotated[
        float, typer.Option(min=0, help="--fault partition: how long the fleet is cut off.")
    ] = 30.0,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds each phase may take.")] = 120.0,
    connect_concurrency: Annotated[
        int, typer.Option(min=1, help="Connection attempts in progress at once.")
    ] = 100,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of nodes converged over time.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """N simulated nodes against a broker and cloud: connect, rollout, updates, faults."""
    from launcher.fleet.cloudrest import RestError
    from launcher.fleet.results import plot as plot_png
    from launcher.fleet.results import rows
    from launcher.fleet.running import FleetOptions, run_fleet_bench
    from launcher.fleet.services import ServiceError

    options = FleetOptions(
        nodes=nodes, mqtt_url=mqtt_url, cloud_url=cloud_url, token=token,
        database_url=database_url, replicas=replicas, update_nodes=update_nodes,
        update_seconds=update_seconds, fault=fault, timeout=timeout,
        connect_concurrency=connect_concurrency, partition_seconds=partition_seconds,
    )
    # SIGTERM unwinds like Ctrl-C: the broker, clouds and scratch database it started go too
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    columns = (TextColumn("{task.description:>12}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    try:
        with Progress(*columns, console=Console(stderr=True), transient=as_json) as progress:
            result = run_fleet_bench(options, _PhaseBars(progress))
    except (ServiceError, RestError, FileNotFoundError, httpx.HTTPError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    if plot is not None:
        plot_png(result, plot)
    if as_json:
        print(json.dumps(result.to_json()))
    else:
        table = Table(title=f"Fleet of {nodes} simulated nodes: {result.database}, "
                      f"{result.replicas} cloud replica(s), {result.broker}")
        for column in ("phase", "measure", "value"):
            table.add_column(column, justify="right" if column == "value" else "left")
        for row in rows(result):
            table.add_row(*row)
        console.print(table)
        if plot is not None:
            console.print(f"plot: {plot}")
    if not result.ok:
        raise typer.Exit(code=1)


@app.command()
def soak(
    nodes: Annotated[int, typer.Option(min=1, help="Simulated edge nodes.")] = 1000,
    seconds: Annotated[float, typer.Option(min=0, help="How long to keep making faults.")] = 3600.0,
    fault_every: Annotated[float, typer.Option(min=0, help="A round (fault + rollout) this often.")] = 180.0,
    partition_seconds: Annotated[float, typer.Option(min=0, help="How long a partition lasts.")] = 20.0,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds a round may take to converge.")] = 120.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """A fleet through a fault every few minutes: cloud and broker RSS and descriptors per round."""
    from launcher.fleet.services import ServiceError
    from launcher.fleet.soak import SoakOptions, run_soak

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        result = run_soak(SoakOptions(nodes=nodes, seconds=seconds, fault_every=fault_every,
                                      partition_seconds=partition_seconds, timeout=timeout))
    except (ServiceError, FileNotFoundError, httpx.HTTPError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    if as_json:
        print(json.dumps(result.to_json()))
    else:
        table = Table(title=f"Soak: {nodes} simulated nodes, a round every {fault_every:g} s")
        for column in ("round", "fault", "converged s", "cloud MB", "cloud fds", "broker MB", "broker fds"):
            table.add_column(column, justify="right")
        for index, row in enumerate(result.rounds):
            table.add_row(str(index), row.fault, str(row.converge_seconds), str(row.cloud_rss_mb),
                          str(row.cloud_fds), str(row.broker_rss_mb), str(row.broker_fds))
        console.print(table)
        for line in result.skipped + result.failures:
            console.print(line)
    if not result.ok:
        raise typer.Exit(code=1)
