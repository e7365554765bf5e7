"""The figures of one fleet bench run: the record, its table rows, its JSON, its plot.

Every phase keeps its raw per-node times (``timeline``, seconds from the phase's start)
for the plot, and reports them as a ``Spread`` (nearest-rank p50/p99, as the other
benchmarks). A node that failed is a number in the record and a line in ``failures``,
never a sample left out: ``ok`` is false when any node did not get through a phase.
The table is rows of strings; drawing it (rich) is the CLI's business.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from launcher.bench import percentile

MB = 1024 * 1024


@dataclass(frozen=True)
class Spread:
    count: int
    p50: float
    p99: float
    max: float


def spread(samples: list[float], *, scale: float = 1.0) -> Spread | None:
    """p50/p99/max of ``samples`` times ``scale`` (1000: seconds to ms); None if empty."""
    if not samples:
        return None
    return Spread(len(samples), round(percentile(samples, 50) * scale, 3),
                  round(percentile(samples, 99) * scale, 3), round(max(samples) * scale, 3))


@dataclass
class CreatePhase:
    seconds: float
    path: str  # "bulk" or "single" (one POST per node, 8 clients)
    created: int
    existing: int
    failed: int


@dataclass
class ConnectPhase:
    seconds: float | None  # until every node's first report was accepted; None: never
    reported: int
    per_node: Spread | None
    # seconds from the phase's start, per node: "connected" (first CONNACK), "reported"
    timelines: dict[str, list[float]] = field(default_factory=dict, repr=False)


@dataclass
class RolloutPhase:
    app: str
    version: str
    post_seconds: float
    desired_seconds: float | None  # every node got the new desired apps (delta or get)
    fetched_seconds: float | None
    seconds: float | None  # every node's report of the version Running was accepted
    converged: int
    per_node: Spread | None
    status_seconds: float | None = None  # GET .../apps/{name}/nodes once converged
    status_counts: dict[str, int] = field(default_factory=dict)
    fault: str | None = None
    fault_at: float | None = None  # seconds after the POST
    # seconds from the POST, per node: "desired", "fetched", "running" (report accepted)
    timelines: dict[str, list[float]] = field(default_factory=dict, repr=False)


@dataclass
class UpdatePhase:
    nodes: int
    seconds: float
    accepted: int
    rejected: int
    unanswered: int  # still in flight 5 s after the phase's end
    per_second: float
    latency_ms: Spread | None
    # CPU ms per accepted update over the phase, by process ("database": the server
    # processes of the bench's PostgreSQL database; None: not measured), and how busy the
    # machine's cores were meanwhile: on a machine near its capacity, latency is the wait
    # for a core, whatever the cloud does
    cpu_ms_per_update: dict[str, float | None] = field(default_factory=dict)
    machine_busy_percent: float | None = None  # of every core together
    machine_steal_percent: float | None = None  # taken by the hypervisor
    machine_cores: int | None = None


@dataclass
class CloudUsage:
    pids: list[int]
    rss_after_connect_mb: list[float]
    rss_end_mb: list[float]
    cpu_seconds: float  # all replicas, during connect + rollout + updates
    messages_in: int  # node messages the fleet sent the cloud in that time
    messages_handled: int | None  # of which the bridge handled (/metrics); the rest got 429
    cpu_ms_per_message: float | None  # per message received
    cpu_ms_per_handled: float | None = None  # per message handled (not refused with 429)


@dataclass
class FleetResult:
    nodes: int
    namespace: str
    broker: str
    database: str
    replicas: int
    create: CreatePhase | None = None
    connect: ConnectPhase | None = None
    rollout: RolloutPhase | None = None
    updates: UpdatePhase | None = None
    cloud: CloudUsage | None = None
    traffic: dict[str, Any] = field(default_factory=dict)
    # CPU seconds of the others over the same phases: is the cloud the bottleneck?
    side_cpu_seconds: dict[str, float | None] = field(default_factory=dict)
    simulator_rss_mb: float | None = None  # at the end: what 10,000 nodes cost here
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        """Every figure, without the per-node timelines."""
        body = asdict(self)
        for phase in ("connect", "rollout"):
            if body[phase] is not None:
                body[phase].pop("timelines")
        body["ok"] = self.ok
        return body


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f}"


def _spread(value: Spread | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"p50 {value.p50:g} {unit}, p99 {value.p99:g} {unit}, max {value.max:g} {unit}"


def rows(result: FleetResult) -> list[tuple[str, str, str]]:
    """(phase, measure, value) for the table."""
    out: list[tuple[str, str, str]] = []
    if (create := result.create) is not None:
        out += [("create", f"{result.nodes} nodes ({create.path}) s", _s(create.seconds)),
                ("create", "created / existing / failed",
                 f"{create.created} / {create.existing} / {create.failed}")]
    if (connect := result.connect) is not None:
        out += [("connect", "all connected, first report accepted s", _s(connect.seconds)),
                ("connect", "per node s", _spread(connect.per_node, "s")),
                ("connect", "nodes reported", f"{connect.reported} / {result.nodes}")]
    if (rollout := result.rollout) is not None:
        out += [("rollout", f"POST apps ({rollout.app}) ms", f"{rollout.post_seconds * 1000:.0f}"),
                ("rollout", "every node has the new desired s", _s(rollout.desired_seconds)),
                ("rollout", "every node fetched the app s", _s(rollout.fetched_seconds)),
                ("rollout", "every node reported it Running s", _s(rollout.seconds)),
                ("rollout", "per node s", _spread(rollout.per_node, "s")),
                ("rollout", "nodes converged", f"{rollout.converged} / {result.nodes}")]
        if rollout.fault is not None:
            out.append(("rollout", f"fault {rollout.fault} at s", _s(rollout.fault_at)))
        if rollout.status_seconds is not None:
            counts = ", ".join(f"{k} {v}" for k, v in rollout.status_counts.items())
            out.append(("rollout", "GET apps/{name}/nodes ms",
                        f"{rollout.status_seconds * 1000:.0f} ({counts})"))
    if (updates := result.updates) is not None:
        counts = (f"{updates.accepted} accepted, {updates.rejected} rejected, "
                  f"{updates.unanswered} unanswered")
        out += [("updates", f"{updates.nodes} nodes x {updates.seconds:g} s: accepted/s",
                 f"{updates.per_second:.0f} ({counts})"),
                ("updates", "publish -> accepted", _spread(updates.latency_ms, "ms"))]
        if updates.cpu_ms_per_update:
            names = " / ".join(updates.cpu_ms_per_update)
            values = " / ".join("-" if value is None else f"{value:.3f}"
                                for value in updates.cpu_ms_per_update.values())
            out.append(("updates", f"CPU ms per update: {names}", values))
        if updates.machine_busy_percent is not None:
            out.append(("updates", f"machine's {updates.machine_cores} cores busy; stolen %",
                        f"{updates.machine_busy_percent:.0f}; {updates.machine_steal_percent:.1f}"))
    if (cloud := result.cloud) is not None:
        rss = ", ".join(f"{mb:.0f}" for mb in cloud.rss_after_connect_mb)
        end = ", ".join(f"{mb:.0f}" for mb in cloud.rss_end_mb)
        per = "-" if cloud.cpu_ms_per_message is None else f"{cloud.cpu_ms_per_message:.3f}"
        handled = "?" if cloud.messages_handled is None else str(cloud.messages_handled)
        out += [("cloud", "RSS MB after connect; at the end (per replica)", f"{rss}; {end}"),
                ("cloud", "CPU s (connect + rollout + updates)", f"{cloud.cpu_seconds:.1f}"),
                ("cloud", "CPU ms per node message received; per one handled",
                 f"{per}; {'-' if cloud.cpu_ms_per_handled is None else f'{cloud.cpu_ms_per_handled:.3f}'}"),
                ("cloud", "node messages received / handled (/metrics)",
                 f"{cloud.messages_in} / {handled}")]
    if result.side_cpu_seconds:
        side = " / ".join("-" if v is None else f"{v:.1f}" for v in result.side_cpu_seconds.values())
        out.append(("load", f"CPU s of the {' / '.join(result.side_cpu_seconds)}", side))
    if result.simulator_rss_mb is not None:
        out.append(("load", "simulator RSS MB", f"{result.simulator_rss_mb:.0f}"))
    traffic = result.traffic
    if traffic:
        out += [("fleet", "connects / failed attempts / drops",
                 f"{traffic['connects']} / {traffic['connect_failures']} / {traffic['disconnects']}"),
                ("fleet", "rejections", _counts(traffic["rejected"])),
                ("fleet", "requests re-sent (no answer)", _counts(traffic["resent"]))]
    out.append(("result", "failures", "none" if result.ok else "; ".join(result.failures)))
    return out


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} x{value}" for key, value in sorted(counts.items())) or "none"


CONNECT_CURVES = (("connected", "connected (CONNACK)"), ("reported", "first report accepted"))
ROLLOUT_CURVES = (("desired", "desired apps hold it"), ("fetched", "fetched (resources/get)"),
                  ("running", "reported Running, accepted"))


def plot(result: FleetResult, path: Path) -> None:
    """PNG: nodes converged over time, during connect and during the rollout."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    phases = [("connect", result.connect, CONNECT_CURVES),
              ("rollout of one app matching every node", result.rollout, ROLLOUT_CURVES)]
    for ax, (title, phase, curves) in zip(axes, phases, strict=True):
        ax.set_title(title)
        ax.set_xlabel("seconds from the start of the phase")
        ax.set_ylabel("nodes")
        ax.set_ylim(0, result.nodes * 1.05)
        ax.axhline(result.nodes, color="grey", linestyle=":", linewidth=1)
        timelines = phase.timelines if phase is not None else {}
        for key, label in curves:
            times = sorted(timelines.get(key, []))
            if times:
                ax.step([0.0, *times], range(len(times) + 1), where="post", label=label)
        if isinstance(phase, RolloutPhase):
            ax.axvline(phase.post_seconds, color="grey", linestyle="--", label="POST answered")
            if phase.fault_at is not None:
                ax.axvline(phase.fault_at, color="red", linestyle="--", label=phase.fault or "fault")
        ax.legend(loc="lower right")
        ax.grid(alpha=0.3)
    figure.suptitle(f"tether bench fleet: {result.nodes} nodes, {result.database}, "
                    f"{result.replicas} cloud replica(s), {result.broker}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
