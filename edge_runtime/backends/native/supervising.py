"""Keeping a service's processes up: restarts with backoff, and what their status is.

A ``Replica`` is one of the ``replicas`` processes of a service. When its process exits,
whatever the code, it is started again (a service is meant to run: Kubernetes'
``restartPolicy: Always``) after ``RestartPolicy.delay``: ``initial`` seconds, doubling
with every exit in a row up to ``maximum``. A run of ``stable_seconds`` or more resets
the count, so a process that crashes once a day restarts quickly every time.

Status of a replica, first rule that holds:

1. **Failed** ``cannot start: ...`` when the last start failed (no such command...);
2. **Failed** ``crashing: exit code N`` after ``crash_threshold`` exits in a row -- it
   stays Failed while it crash-loops, until a run lasts ``stable_seconds`` (so a crash
   loop does not flip the report between Running and Failed at every restart);
3. **Pending** ``restarting after exit code N`` while it waits for its restart;
4. **Running** while its process runs.

An app is Failed if any replica is (the cause names it first), Running if all run,
Pending otherwise. The functions here only change ``Replica`` records; starting and
stopping processes is the backend's part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edge_runtime.backends.base import InstanceStatus
from edge_runtime.backends.native.processes import Proc
from schemas.resources import AppStatus


@dataclass(frozen=True)
class RestartPolicy:
    initial: float = 1.0
    maximum: float = 60.0
    stable_seconds: float = 60.0
    crash_threshold: int = 3

    def delay(self, failures: int) -> float:
        """Seconds before the restart that follows ``failures`` exits in a row."""
        return float(min(self.maximum, self.initial * 2 ** min(max(failures - 1, 0), 30)))


@dataclass
class Replica:
    """One process slot of a service, and its restart history."""

    service: str
    index: int
    digest: str
    proc: Proc | None = None
    started_at: float = 0.0  # monotonic
    restarts: int = 0
    failures: int = 0  # exits (or failed starts) in a row without a stable run
    last_exit: str = ""
    start_error: str = ""
    restart_at: float | None = None  # due to start (when proc is None)

    @property
    def name(self) -> str:
        return f"{self.service}-{self.index}"


def exited(replica: Replica, how: str, *, now: float, policy: RestartPolicy) -> None:
    """Its process ended ``how``: schedule the restart, counting the failures in a row."""
    stable = now - replica.started_at >= policy.stable_seconds
    replica.failures = 1 if stable else replica.failures + 1
    replica.last_exit = how
    replica.proc = None
    replica.restarts += 1
    replica.restart_at = now + policy.delay(replica.failures)


def started(replica: Replica, proc: Proc, *, now: float) -> None:
    replica.proc, replica.started_at = proc, now
    replica.start_error, replica.restart_at = "", None


def start_failed(replica: Replica, error: str, *, now: float, policy: RestartPolicy) -> None:
    replica.failures += 1
    replica.start_error = error
    replica.restart_at = now + policy.delay(replica.failures)


def settled(replica: Replica, *, now: float, policy: RestartPolicy) -> bool:
    """Reset the failure count of a process that now ran long enough; True if it did."""
    ran = now - replica.started_at
    if replica.proc is not None and replica.failures and ran >= policy.stable_seconds:
        replica.failures = 0
        return True
    return False


def instance_status(replica: Replica, policy: RestartPolicy) -> InstanceStatus:
    cpu, memory = replica.proc.usage() if replica.proc is not None else (None, None)
    status, cause = AppStatus.RUNNING, ""
    if replica.start_error:
        status, cause = AppStatus.FAILED, f"cannot start: {replica.start_error}"
    elif replica.failures >= policy.crash_threshold:
        status, cause = AppStatus.FAILED, f"crashing: {replica.last_exit}"
    elif replica.proc is None:
        status = AppStatus.PENDING
        cause = f"restarting after {replica.last_exit}" if replica.last_exit else "starting"
    return InstanceStatus(name=replica.name, status=status, cause=cause,
                          restarts=replica.restarts, cpu_percent=cpu, memory_bytes=memory,
                          service=replica.service, last_exit=replica.last_exit)


def app_status(instances: Sequence[InstanceStatus]) -> tuple[AppStatus, str]:
    """The app's status and cause from its instances'."""
    for wanted in (AppStatus.FAILED, AppStatus.PENDING):
        found = [i for i in instances if i.status is wanted]
        if found:
            return wanted, f"{found[0].name}: {found[0].cause}"
    return AppStatus.RUNNING, ""
