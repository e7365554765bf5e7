"""The agent's own version in the shadow: ``desired.sysapps.tether`` and its report.

Why it exists: a fleet upgrades its edge agents the way it upgrades apps (DESIGN §11), so
the cloud and the node need one shape for "run this agent version" and for "this is what
I run and how the last upgrade went". Both sides parse it here, purely.

Desired, written by the cloud (``cloud_api.services.agent_upgrade``)::

    "sysapps": {"tether": {
        "version": "0.2.0",
        "wheel": {"url": "https://cloud/v1/agent/wheels/tether-0.2.0-py3-none-any.whl",
                  "sha256": "<64 hex>"},          # native nodes install this
        "image": "ghcr.io/example/tether:0.2.0",  # kube nodes run this (optional)
        "deadlineSeconds": 120}}                  # to report healthy, else roll back

Reported, by the node (every report, so the cloud always knows the running version)::

    "sysapps": {"tether": {"version": "0.1.0", "state": "RolledBack",
                           "target": "0.2.0", "cause": "..."}}

Once it runs its target healthy, the node also mirrors the target's ``wheel``, ``image``
and ``deadlineSeconds`` (``mirrored``), so a converged node has an empty delta.

``state`` is ``Upgrading`` while a target is installed or on trial, ``Running`` when the
node runs what desired names (or nothing is desired), ``RolledBack`` when the target did
not come up healthy and the previous version runs again, ``Failed`` when the target could
not even be tried (download, checksum, install). A target that rolled back or failed is
not tried again while desired names the same version and checksum: the operator sets
another version (or the running one) to move on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

from schemas.shadow import JSONObject

SYSAPPS_KEY = "sysapps"
AGENT_KEY = "tether"
DEFAULT_DEADLINE_SECONDS = 120
MAX_DEADLINE_SECONDS = 3600
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+!_-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class AgentState(str, Enum):
    UPGRADING = "Upgrading"
    RUNNING = "Running"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


def is_valid_version(version: object) -> bool:
    """A PEP 440-ish version that is also safe as a file name (no ``/``, no ``..``)."""
    return isinstance(version, str) and bool(_VERSION.match(version)) and ".." not in version


def wheel_filename(version: str) -> str:
    """The agent wheel of ``version`` (the name pip needs to install it)."""
    return f"tether-{version}-py3-none-any.whl"


@dataclass(frozen=True)
class AgentTarget:
    """What ``desired.sysapps.tether`` asks for, validated."""

    version: str
    url: str = ""
    sha256: str = ""
    image: str = ""
    deadline_seconds: int = DEFAULT_DEADLINE_SECONDS

    @property
    def key(self) -> str:
        """What makes two targets the same attempt (a retry needs another one)."""
        return f"{self.version}|{self.sha256}|{self.image}"

    def to_json(self) -> JSONObject:
        body: JSONObject = {"version": self.version}
        if self.url:
            body["wheel"] = {"url": self.url, "sha256": self.sha256}
        if self.image:
            body["image"] = self.image
        body["deadlineSeconds"] = self.deadline_seconds
        return body


class BadTarget(ValueError):
    """``desired.sysapps.tether`` is malformed; the message says what to fix."""


def desired_target(desired: JSONObject) -> AgentTarget | None:
    """The agent target in a desired section; None if none. Raises ``BadTarget``."""
    sysapps = desired.get(SYSAPPS_KEY)
    if sysapps is None:
        return None
    if not isinstance(sysapps, dict):
        raise BadTarget("desired.sysapps must be an object")
    value = sysapps.get(AGENT_KEY)
    return None if value is None else parse_target(value)


def parse_target(value: Any) -> AgentTarget:
    """Validate ``desired.sysapps.tether``; ``BadTarget`` names the first problem."""
    where = "desired.sysapps.tether"
    if not isinstance(value, dict):
        raise BadTarget(f"{where} must be an object with a 'version'")
    version = value.get("version")
    if not is_valid_version(version):
        raise BadTarget(f"{where}.version must be a version string such as '0.2.0'")
    assert isinstance(version, str)
    url = sha256 = image = ""
    wheel = value.get("wheel")
    if wheel is not None:
        if not isinstance(wheel, dict):
            raise BadTarget(f"{where}.wheel must be an object with 'url' and 'sha256'")
        given_url, given_sha = wheel.get("url"), wheel.get("sha256")
        if not isinstance(given_url, str) or not given_url.startswith(("http://", "https://")):
            raise BadTarget(f"{where}.wheel.url must be an http(s) URL")
        if not isinstance(given_sha, str) or not _SHA256.match(given_sha):
            raise BadTarget(f"{where}.wheel.sha256 must be 64 lower-case hex digits")
        url, sha256 = given_url, given_sha
    image = value.get("image", "")
    if not isinstance(image, str) or len(image) > 1024:
        raise BadTarget(f"{where}.image must be an image reference")
    deadline = value.get("deadlineSeconds", DEFAULT_DEADLINE_SECONDS)
    if (not isinstance(deadline, int) or isinstance(deadline, bool)
            or not 1 <= deadline <= MAX_DEADLINE_SECONDS):
        raise BadTarget(f"{where}.deadlineSeconds must be 1..{MAX_DEADLINE_SECONDS}")
    return AgentTarget(version=version, url=url, sha256=sha256, image=image,
                       deadline_seconds=deadline)


@dataclass(frozen=True)
class AgentReport:
    """``reported.sysapps.tether``: what the node runs and how the last upgrade went."""

    version: str
    state: AgentState = AgentState.RUNNING
    target: str = ""
    cause: str = ""

    def to_json(self) -> JSONObject:
        body: JSONObject = {"version": self.version, "state": self.state.value}
        if self.target:
            body["target"] = self.target
        if self.cause:
            body["cause"] = self.cause
        return body


def mirrored(report: AgentReport, target: AgentTarget | None) -> JSONObject:
    """The report as sent: a node that runs its target healthy also reports the target's
    other fields (wheel, image, deadline), as properties are mirrored, so no delta stays."""
    body = report.to_json()
    if (target is not None and report.state is AgentState.RUNNING
            and report.version == target.version):
        body.update({k: v for k, v in target.to_json().items() if k != "version"})
    return body


def reported_agent(reported: JSONObject) -> AgentReport | None:
    """The agent report in a reported section (None if the node reports none, e.g. an
    agent older than self-upgrade). Lenient: a wave engine reads it from any node."""
    sysapps = reported.get(SYSAPPS_KEY)
    value = sysapps.get(AGENT_KEY) if isinstance(sysapps, dict) else None
    if not isinstance(value, dict) or not isinstance(value.get("version"), str):
        return None
    try:
        state = AgentState(value.get("state"))
    except ValueError:
        return None
    target, cause = value.get("target", ""), value.get("cause", "")
    return AgentReport(value["version"], state, target if isinstance(target, str) else "",
                       cause if isinstance(cause, str) else "")


def upgraded(reported: JSONObject, version: str) -> bool | None:
    """The gate a wave engine waits on: True once the node runs ``version`` healthy, False
    once it gave up on it (rolled back or failed), None while it is still undecided."""
    report = reported_agent(reported)
    if report is None:
        return None
    if report.version == version and report.state is AgentState.RUNNING:
        return True
    if report.target == version and report.state in (AgentState.ROLLED_BACK, AgentState.FAILED):
        return False
    return None
