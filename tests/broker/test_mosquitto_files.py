"""Where ``tether broker mosquitto-config`` puts the files Mosquitto reads, and who may read them.

No broker here: modes, groups, the reachability check and its one-line refusals. That a
real Mosquitto running as its user accepts the result is ``test_mosquitto_as_its_user``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from broker.cli import app
from broker.errors import BrokerConfigError
from broker.mosquitto import MosquittoConfig
from broker.mosquitto_files import READ, SEARCH, WRITE, Account, blocked, copy_for, install
from tests.broker.mosquitto_users import as_ourselves, mosquitto_account, reachable_dir
from tests.broker.tls_clients import Pki

SOMEONE = Account("someone", uid=40001, gid=40001, groups=frozenset({40001, 40002}))


def stat_of(mode: int, uid: int, gid: int) -> os.stat_result:
    return os.stat_result((stat.S_IFREG | mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))


@pytest.mark.parametrize(
    ("mode", "uid", "gid", "want", "allowed"),
    [
        (0o600, 40001, 0, READ, True),       # owner
        (0o060, 40001, 40002, READ, False),  # owner bits decide for the owner, not group bits
        (0o640, 0, 40002, READ, True),       # a supplementary group
        (0o640, 0, 40003, READ, False),      # not its group, other has nothing
        (0o604, 0, 40003, READ, True),       # other
        (0o700, 0, 0, SEARCH, False),        # a 0700 directory of root's
        (0o755, 0, 0, WRITE, False),
        (0o755, 40001, 0, WRITE | SEARCH, True),
    ],
)
def test_an_account_gets_the_bits_of_its_class(
    mode: int, uid: int, gid: int, want: int, allowed: bool
) -> None:
    assert SOMEONE.may(stat_of(mode, uid, gid), want) is allowed


def test_blocked_names_the_first_directory_it_cannot_enter() -> None:
    with reachable_dir() as public:
        private = public / "private"
        (private / "inner").mkdir(parents=True)
        (private / "inner" / "f").write_text("x")
        for path, mode in ((private, 0o755), (private / "inner", 0o755), (private / "inner" / "f", 0o644)):
            path.chmod(mode)
        assert blocked(private / "inner" / "f", SOMEONE) is None
        private.chmod(0o700)
        reason = blocked(private / "inner" / "f", SOMEONE)
        owner = private.stat()
        assert reason == (f"someone may not enter {private} "
                          f"(drwx------, uid {owner.st_uid}, gid {owner.st_gid})")
        root = Account("root", uid=0, gid=0, groups=frozenset({0}))
        assert blocked(private / "inner" / "f", root) is None


def test_a_missing_file_is_judged_by_its_directory() -> None:
    with reachable_dir() as public:
        assert blocked(public / "later.pem", SOMEONE) is None  # crl-sync writes it later
        assert blocked(public / "no-dir" / "later.pem", SOMEONE) == f"{public / 'no-dir'} does not exist"
        reason = blocked(public / "later.pem", SOMEONE, want=WRITE)
        assert reason is None  # nothing to write yet: its directory is judged by SEARCH


def test_copies_replace_atomically_with_the_mode_asked(tmp_path: Path) -> None:
    source, target = tmp_path / "a", tmp_path / "b"
    source.write_text("one")
    copy_for(source, target, mode=0o640, group=None)
    assert target.read_text() == "one" and stat.S_IMODE(target.stat().st_mode) == 0o640
    source.write_text("two")
    inode = target.stat().st_ino
    copy_for(source, target, mode=0o644, group=None)
    assert target.read_text() == "two" and target.stat().st_ino != inode
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temporary left
    with pytest.raises(BrokerConfigError, match=f"cannot read {tmp_path / 'nope'}"):
        copy_for(tmp_path / "nope", target, mode=0o644, group=None)


def sources(pki: Pki, **extra: object) -> MosquittoConfig:
    return MosquittoConfig(acl_file=Path("unused"), cafile=pki.cafile, certfile=pki.certfile,
                           keyfile=pki.keyfile, **extra)  # type: ignore[arg-type]


def test_the_tls_files_are_copied_for_mosquitto_out_of_private_directories(
    tmp_path: Path,
) -> None:
    """The cloud's 0700 directories stay as they are; the copies are what Mosquitto reads."""
    account = mosquitto_account()
    pki = Pki.create(tmp_path / "cloud" / "broker-tls")
    (tmp_path / "cloud").chmod(0o700)
    with reachable_dir() as public:
        installed = install(sources(pki, pid_file=public / "run" / "m.pid"), public / "conf")
        conf = public / "conf"
        modes = {p.name: (stat.S_IMODE(p.stat().st_mode), p.stat().st_gid) for p in conf.iterdir()}
        assert modes["ca.crt"][0] == modes["server.crt"][0] == 0o644
        assert modes["server.key"] == (0o640, account.gid)  # root and mosquitto only
        assert modes["mosquitto.conf"][0] == modes["tether.acl"][0] == 0o644
        assert stat.S_IMODE(conf.stat().st_mode) == 0o755
        assert (conf / "server.key").read_bytes() == pki.keyfile.read_bytes()
        text = installed.path.read_text()
        for line in (f"cafile {conf}/ca.crt", f"certfile {conf}/server.crt",
                     f"keyfile {conf}/server.key", f"acl_file {conf}/tether.acl",
                     f"pid_file {public}/run/m.pid"):
            assert line in text.splitlines()
        run = (public / "run").stat()
        assert (run.st_uid, stat.S_IMODE(run.st_mode)) == (account.uid, 0o755)  # it writes there
        assert installed.notes == ()
        for path in (conf / "server.key", conf / "mosquitto.conf", public / "run" / "m.pid"):
            assert blocked(path, account, want=READ) is None


def test_a_crl_mosquitto_cannot_reach_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    mosquitto_account()
    pki = Pki.create(tmp_path / "pki")
    with reachable_dir() as public:
        result = CliRunner().invoke(app, [
            "mosquitto-config", "--output", str(public / "conf"), "--cafile", str(pki.cafile),
            "--certfile", str(pki.certfile), "--keyfile", str(pki.keyfile),
            "--crl-file", str(tmp_path / "crl.pem")])
        assert result.exit_code == 1 and result.stdout == ""
        assert len(result.stderr.splitlines()) == 1
        assert "Mosquitto, running as mosquitto, could not read --crl-file" in result.stderr
        assert "mosquitto may not enter" in result.stderr
        assert list((public / "conf").iterdir()) == []


def test_an_unknown_user_is_a_note_not_an_error(tmp_path: Path) -> None:
    pki = Pki.create(tmp_path / "pki")
    result = CliRunner().invoke(app, [
        "mosquitto-config", "--output", str(tmp_path / "conf"), "--cafile", str(pki.cafile),
        "--certfile", str(pki.certfile), "--keyfile", str(pki.keyfile),
        "--user", "no-such-user-here"])
    assert result.exit_code == 0, result.output
    assert "there is no user 'no-such-user-here' here" in result.stderr
    assert "user no-such-user-here" in (tmp_path / "conf" / "mosquitto.conf").read_text()


def test_a_source_that_cannot_be_read_is_one_line(tmp_path: Path) -> None:
    pki = Pki.create(tmp_path / "pki")
    result = CliRunner().invoke(app, [
        "mosquitto-config", "--output", str(tmp_path / "conf"), "--cafile", str(tmp_path / "x"),
        "--certfile", str(pki.certfile), "--keyfile", str(pki.keyfile), *as_ourselves()])
    assert result.exit_code == 1 and result.stderr.strip() == (
        f"tether broker: cannot read {tmp_path / 'x'}: No such file or directory")
