"""The files a Mosquitto configuration names, placed where Mosquitto's user can read them.

Why it exists: Mosquitto 2.x, started as root, drops to its user (``mosquitto``, or the
``user`` option) *before* it loads its certificates, writes its pid file or re-reads the
CRL on SIGHUP; started as that user, it does everything as that user. The cloud keeps its
CA and the broker's key in 0700 directories (``DATA_DIR/ca``, ``DATA_DIR/broker-tls``),
so a configuration pointing there fails at start with "Unable to load CA certificates ...
Permission denied" (Mosquitto 2.0.11, measured).

The design, carried out by ``tether broker mosquitto-config``:

- The TLS material it is given is **copied** into the output directory (made 0755):
  ``ca.crt`` and ``server.crt`` mode 0644, ``server.key`` mode 0640 with the primary group
  of Mosquitto's user, so only the owner (root) and that user read the key. Giving the key
  that group needs root (or membership of the group): without it the command fails rather
  than leave a key Mosquitto cannot read, or one everybody can. Copies go stale when the
  certificate is renewed: run the command again then (it replaces them atomically).
- Files something else keeps current in place are **referenced where they are**, after a
  check that Mosquitto's user can reach them: the CRL (``crl-sync`` replaces it, 0644) and
  the password file (``mosquitto_passwd``) must be readable if they exist already and
  their directory searchable; the pid file's directory must be writable by that user, and
  is made for it (owned by it, 0755) when missing.
- Where that user does not exist on this host (a configuration written for another
  machine or an image), no group is given and nothing is checked; the command says so.

The check reads owners and mode bits; POSIX ACLs are not consulted.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from broker.errors import BrokerConfigError
from broker.mosquitto import MosquittoConfig, render_acl, render_config

__all__ = [
    "CONFIG_NAME",
    "DEFAULT_USER",
    "Account",
    "Installed",
    "blocked",
    "copy_for",
    "ensure_writable_dir",
    "install",
]

CONFIG_NAME = "mosquitto.conf"
ACL_NAME = "tether.acl"
CA_NAME, CERT_NAME, KEY_NAME = "ca.crt", "server.crt", "server.key"

DEFAULT_USER = "mosquitto"
"""The user Mosquitto drops to when its configuration has no ``user`` line."""

READ, WRITE, SEARCH = 4, 2, 1  # the rwx bits of one class (owner, group or other)


@dataclass(frozen=True)
class Account:
    """A local user as the kernel checks it: uid, primary gid and every group it is in."""

    name: str
    uid: int
    gid: int
    groups: frozenset[int]

    @classmethod
    def lookup(cls, name: str) -> Account | None:
        """The account ``name`` on this host, or None if there is none."""
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            return None
        groups = frozenset(os.getgrouplist(name, entry.pw_gid))
        return cls(name, entry.pw_uid, entry.pw_gid, groups | {entry.pw_gid})

    def may(self, status: os.stat_result, want: int) -> bool:
        """Whether this account has the ``want`` bits (READ, WRITE, SEARCH) on a file."""
        if self.uid == 0:
            return True
        mode = stat.S_IMODE(status.st_mode)
        if status.st_uid == self.uid:
            bits = mode >> 6
        elif status.st_gid in self.groups:
            bits = mode >> 3
        else:
            bits = mode
        return bits & want == want


def _describe(path: Path, status: os.stat_result) -> str:
    return f"{path} ({stat.filemode(status.st_mode)}, uid {status.st_uid}, gid {status.st_gid})"


def blocked(path: Path, account: Account, *, want: int = READ) -> str | None:
    """Why ``account`` cannot reach ``path`` with ``want`` (one line), or None if it can.

    Every directory above ``path`` must be searchable. A missing ``path`` is judged by
    its directory: for READ only that it can be reached (the file is expected later,
    e.g. from ``crl-sync``); for WRITE that the directory is writable."""
    path = path.absolute()
    for directory in reversed(path.parents):
        try:
            status = directory.stat()
        except FileNotFoundError:
            return f"{directory} does not exist"
        if not account.may(status, SEARCH):
            return f"{account.name} may not enter {_describe(directory, status)}"
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    if not account.may(status, want):
        verb = "write" if want & WRITE else "read"
        return f"{account.name} may not {verb} {_describe(path, status)}"
    return None


def copy_for(source: Path, target: Path, *, mode: int, group: int | None) -> None:
    """Copy ``source`` to ``target`` with ``mode`` and (if not None) group ``group``.

    Atomic (temporary file, fsync, rename): Mosquitto reloading at that moment reads the
    old file or the new one. ``BrokerConfigError`` if the source cannot be read or the
    group cannot be given (not root, not a member)."""
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise BrokerConfigError(f"cannot read {source}: {exc.strerror or exc}") from exc
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            if group is not None:
                try:
                    os.fchown(handle.fileno(), -1, group)
                except PermissionError as exc:
                    raise BrokerConfigError(
                        f"cannot give {target} to group {group}: run as root (or as a member "
                        "of Mosquitto's group), or pass --user with your own user"
                    ) from exc
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def ensure_writable_dir(directory: Path, account: Account) -> None:
    """Make ``directory`` (0755, owned by ``account``) if missing; fail if ``account``
    cannot write in it (Mosquitto writes its pid file after dropping to its user)."""
    if not directory.exists():
        try:
            directory.mkdir(parents=True, mode=0o755)
            if os.geteuid() != account.uid:
                os.chown(directory, account.uid, account.gid)
        except OSError as exc:
            raise BrokerConfigError(
                f"cannot make {directory} for {account.name}: {exc.strerror or exc}"
            ) from exc
    reason = blocked(directory, account, want=WRITE | SEARCH)
    if reason is not None:
        raise BrokerConfigError(
            f"{reason}: Mosquitto writes its pid file there as {account.name}; "
            f"chown {account.name} {directory}, or choose another --pid-file"
        )


@dataclass(frozen=True)
class Installed:
    """What ``install`` wrote: the configuration (naming the copies) and notes to show."""

    path: Path
    config: MosquittoConfig
    notes: tuple[str, ...] = ()


def install(sources: MosquittoConfig, output: Path) -> Installed:
    """Write ``output``/mosquitto.conf and tether.acl for ``sources`` (whose cafile,
    certfile and keyfile are the files to copy), placing and checking every file it names
    for Mosquitto's user as the module docstring says. ``BrokerConfigError`` (one line,
    what to change) when Mosquitto's user could not read something: then the files it
    references in place are checked before anything is written."""
    user = sources.user or DEFAULT_USER
    account = Account.lookup(user)
    notes: list[str] = []
    if account is None:
        notes.append(f"there is no user {user!r} here: files are not given to it, nor checked "
                     "(pass --user with the user Mosquitto runs as)")
    output = output.absolute()
    path = output / CONFIG_NAME
    config = dataclasses.replace(
        sources, acl_file=output / ACL_NAME, cafile=output / CA_NAME,
        certfile=output / CERT_NAME, keyfile=output / KEY_NAME,
    )
    try:
        if not output.exists():
            output.mkdir(parents=True, mode=0o755)
            output.chmod(0o755)  # whatever the umask
        if account is not None:
            _check_readable(account, ("the output directory", output),
                            ("--crl-file", config.crl_file),
                            ("--password-file", config.password_file))
            if config.pid_file is not None:
                ensure_writable_dir(config.pid_file.parent, account)
        key_group = None if account is None or account.uid == os.geteuid() else account.gid
        copy_for(sources.cafile, config.cafile, mode=0o644, group=None)
        copy_for(sources.certfile, config.certfile, mode=0o644, group=None)
        copy_for(sources.keyfile, config.keyfile, mode=0o640, group=key_group)
        _write_text(config.acl_file, render_acl(topic_root=config.topic_root,
                                                cloud_username=config.cloud_username))
        _write_text(path, render_config(config))
    except OSError as exc:
        raise BrokerConfigError(f"cannot write to {output}: {exc.strerror or exc}") from exc
    if account is not None:  # what was just written, in case the directory was odd
        _check_readable(account, ("the configuration", path), ("the ACL", config.acl_file),
                        ("the CA", config.cafile), ("the certificate", config.certfile),
                        ("the key", config.keyfile))
    return Installed(path, config, tuple(notes))


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o644)


def _check_readable(account: Account, *named: tuple[str, Path | None]) -> None:
    for what, file in named:
        if file is None:
            continue
        reason = blocked(file, account, want=READ | SEARCH if file.is_dir() else READ)
        if reason is not None:
            raise BrokerConfigError(
                f"Mosquitto, running as {account.name}, could not read {what}: {reason}; "
                "choose a place it can reach (or pass --user with the user it runs as)"
            )
