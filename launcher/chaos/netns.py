"""A network namespace joined to the root namespace by a veth pair, and the faults made on it.

Why a namespace: a fault made in the kernel (a link down, packets dropped by nftables, a
token bucket) is what a node meets in the field; a fault simulated in Python is not. Each
``Namespace`` has a unique name (``tether-chaos-PID-N``), a veth pair with unique names and
a private /30 of 10.213.0.0/16 (the root side ``.1``, ``host_address``; the namespace side
``.2``, ``address``). Processes run inside it with ``ip netns exec`` (``popen``); sockets
of this process are opened inside it by a worker thread that joined it with ``setns``
(``socket``), so a fleet simulator keeps its event loop in the root namespace and only its
nodes' connections go through the faulty path.

The faults (each undone by ``heal``):

- ``cut``: the root side of the veth down: no carrier, every packet lost, sockets open;
- ``blackhole``: an nftables table *inside the namespace* that drops everything but
  loopback, both ways: sockets stay open and nothing flows (a half-open link);
- ``loss(percent)``: the same table dropping packets at random (``numgen random``);
- ``slow(kbit)``: ``tc tbf`` on both ends of the veth;
- ``delay(ms)``: ``tc netem`` where the kernel has it (``netem_available``); this
  machine's kernel has not, so latency comes from ``relay.DelayRelay`` instead.

Nothing outside the namespace and its veth is changed: the nftables table lives in the
namespace and goes with it. ``close`` kills every process left in the namespace and
deletes it; a namespace left by a process that died (a test killed with SIGKILL) is swept
by the next ``Namespace.create`` in any process. ``net_admin_problem`` says why faults
cannot be made here (no CAP_NET_ADMIN, a missing tool), for a test's skip reason.
"""

from __future__ import annotations

import ctypes
import ipaddress
import itertools
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self

PREFIX = "tether-chaos"
SUPERNET = ipaddress.IPv4Network("10.213.0.0/16")
NFT_TABLE = "tether_chaos"
NETNS_DIR = Path("/run/netns")
CAP_NET_ADMIN, CAP_SYS_ADMIN = 12, 21
_CLONE_NEWNET = 0x40000000
_counter = itertools.count(1)


class NetError(RuntimeError):
    """A namespace, link or rule could not be made; the message holds the tool's own words."""


def net_admin_problem() -> str | None:
    """None when this process can make namespaces and faults; otherwise why it cannot."""
    for tool, package in (("ip", "iproute2"), ("tc", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is not installed (apt-get install {package})"
    try:
        status = Path("/proc/self/status").read_text()
        found = re.search(r"^CapEff:\s*([0-9a-f]+)", status, re.MULTILINE)
        effective = int(found.group(1) if found else "", 16)
    except (OSError, ValueError):
        return "cannot read this process's capabilities from /proc/self/status"
    for cap, name in ((CAP_NET_ADMIN, "CAP_NET_ADMIN"), (CAP_SYS_ADMIN, "CAP_SYS_ADMIN")):
        if not effective >> cap & 1:
            return f"{name} is missing: network namespaces and nftables rules need root"
    return None


def _tool(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _run(*argv: str, stdin: str | None = None, check: bool = True) -> str:
    done = subprocess.run([_tool(argv[0]), *argv[1:]], input=stdin, capture_output=True,
                          text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise NetError(f"{' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_inside(name: str) -> None:
    for pid in _run("ip", "netns", "pids", name, check=False).split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def sweep_stale() -> list[str]:
    """Delete namespaces of ours whose creating process is gone; returns their names."""
    swept = []
    for line in _run("ip", "netns", "list", check=False).splitlines():
        match = re.match(rf"^({PREFIX}-(\d+)-\d+)\b", line)
        if match and not _alive(int(match.group(2))):
            _kill_inside(match.group(1))
            _run("ip", "netns", "del", match.group(1), check=False)
            swept.append(match.group(1))
    return swept


def _used_subnets() -> set[int]:
    used = set()
    for address in re.findall(r"inet (10\.213\.\d+\.\d+)", _run("ip", "-o", "-4", "addr", "show")):
        used.add((int(ipaddress.IPv4Address(address)) - int(SUPERNET.network_address)) // 4)
    return used


class Namespace:
    """One namespace and its veth pair; ``create()`` makes them, ``close()`` removes them."""

    def __init__(self) -> None:
        n = next(_counter)
        self.name = f"{PREFIX}-{os.getpid()}-{n}"
        tag = f"{os.getpid() % 100000:05d}{n % 100:02d}"
        self.host_link, self.link = f"tch{tag}h", f"tch{tag}n"  # 11 chars: under IFNAMSIZ
        self.host_address = self.address = ""
        self._executor: ThreadPoolExecutor | None = None
        self._processes: list[subprocess.Popen[bytes]] = []
        self._created = False

    # -- lifecycle -------------------------------------------------------------------------
    def create(self) -> Self:
        sweep_stale()
        used = _used_subnets()
        free = [i for i in range(1, SUPERNET.num_addresses // 4) if i not in used]
        if not free:
            raise NetError(f"no free /30 left in {SUPERNET}")
        base = int(SUPERNET.network_address) + 4 * random.choice(free)
        self.host_address = str(ipaddress.IPv4Address(base + 1))
        self.address = str(ipaddress.IPv4Address(base + 2))
        self._created = True
        try:
            _run("ip", "netns", "add", self.name)
            _run("ip", "link", "add", self.host_link, "type", "veth", "peer", "name", self.link,
                 "netns", self.name)
            _run("ip", "addr", "add", f"{self.host_address}/30", "dev", self.host_link)
            _run("ip", "link", "set", self.host_link, "up")
            self._inside("ip", "addr", "add", f"{self.address}/30", "dev", self.link)
            self._inside("ip", "link", "set", self.link, "up")
            self._inside("ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Kill what runs inside, delete the namespace (its rules go with it) and the veth."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        for process in self._processes:
            if process.poll() is None:
                process.kill()
        for process in self._processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._processes = []
        if not self._created:
            return
        self._created = False
        _kill_inside(self.name)
        _run("ip", "netns", "del", self.name, check=False)
        _run("ip", "link", "del", self.host_link, check=False)  # gone with its peer, normally

    def __enter__(self) -> Self:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def exists(self) -> bool:
        return (NETNS_DIR / self.name).exists()

    # -- running inside ----------------------------------------------------------------------
    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this namespace."""
        return [_tool("ip"), "netns", "exec", self.name, *argv]

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside the namespace; ``close`` kills it if it still runs."""
        process = subprocess.Popen(self.command(argv), **kwargs)
        self._processes.append(process)
        return process

    def socket(self, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
        """A socket of this process that lives in the namespace (non-blocking)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"netns-{self.name}",
                                                initializer=_join, initargs=(self.name,))
        sock: socket.socket = self._executor.submit(socket.socket, family, kind).result()
        sock.setblocking(False)
        return sock

    def _inside(self, *argv: str) -> str:
        return _run("ip", "netns", "exec", self.name, _tool(argv[0]), *argv[1:])

    # -- faults ------------------------------------------------------------------------------
    def cut(self) -> None:
        """The cable pulled: the root side of the veth goes down."""
        _run("ip", "link", "set", self.host_link, "down")

    def blackhole(self) -> None:
        """Every packet in or out of the namespace dropped, loopback aside: half-open links."""
        self._rules("drop")

    def loss(self, percent: float) -> None:
        """Each packet in or out dropped with probability ``percent`` / 100."""
        if not 0 <= percent <= 100:
            raise ValueError("loss is a percentage, 0 to 100")
        per_mille = round(percent * 10)
        if per_mille >= 1000:
            self._rules("drop")
        else:
            self._rules(f"numgen random mod 1000 < {per_mille} drop" if per_mille else "accept")

    def slow(self, kbit: int, *, burst_bytes: int = 4096, latency_ms: int = 500) -> None:
        """Both directions limited to ``kbit`` by a token bucket filter."""
        spec = ["tbf", "rate", f"{kbit}kbit", "burst", str(burst_bytes), "latency", f"{latency_ms}ms"]
        _run("tc", "qdisc", "replace", "dev", self.host_link, "root", *spec)
        self._inside("tc", "qdisc", "replace", "dev", self.link, "root", *spec)

    def delay(self, ms: float, *, jitter_ms: float = 0.0) -> None:
        """Latency in the kernel (``netem``); ``NetError`` where the kernel has no netem."""
        spec = ["netem", "delay", f"{ms}ms"] + ([f"{jitter_ms}ms"] if jitter_ms else [])
        _run("tc", "qdisc", "replace", "dev", self.host_link, "root", *spec)
        self._inside("tc", "qdisc", "replace", "dev", self.link, "root", *spec)

    def heal(self) -> None:
        """Undo every fault: link up, rules and queueing disciplines removed."""
        _run("ip", "link", "set", self.host_link, "up")
        if self._has_rules():
            self._inside("nft", "delete", "table", "inet", NFT_TABLE)
        _run("tc", "qdisc", "del", "dev", self.host_link, "root", check=False)
        _run("ip", "netns", "exec", self.name, _tool("tc"), "qdisc", "del", "dev", self.link,
             "root", check=False)

    def _has_rules(self) -> bool:
        listing = _run("ip", "netns", "exec", self.name, _tool("nft"), "list", "tables", check=False)
        return NFT_TABLE in listing

    def _rules(self, verdict: str) -> None:
        """Replace this namespace's chaos table with one applying ``verdict`` both ways."""
        flush = f"delete table inet {NFT_TABLE}\n" if self._has_rules() else ""
        ruleset = (
            f"{flush}table inet {NFT_TABLE} {{\n"
            f"  chain input {{ type filter hook input priority -300; iifname \"lo\" accept; {verdict}; }}\n"
            f"  chain output {{ type filter hook output priority -300; oifname \"lo\" accept; {verdict}; }}\n"
            "}\n"
        )
        _run("ip", "netns", "exec", self.name, _tool("nft"), "-f", "-", stdin=ruleset)


def netem_available() -> bool:
    """Whether this kernel has ``sch_netem`` (tried on a scratch namespace's veth)."""
    try:
        with Namespace() as probe:
            probe.delay(1)
        return True
    except NetError:
        return False


def wait_gone(name: str, timeout: float = 5.0) -> bool:
    """Until namespace ``name`` no longer exists (deletion finishes asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not (NETNS_DIR / name).exists():
            return True
        time.sleep(0.05)
    return False


def _join(name: str) -> None:
    """Thread initializer: move this thread (only) into namespace ``name``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(NETNS_DIR / name, os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NetError(f"setns into {name}: {os.strerror(err)}")
    finally:
        os.close(fd)
