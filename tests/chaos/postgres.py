"""A private PostgreSQL server for fault tests: initdb and pg_ctl in a temp dir, free port.

The machine's own server is shared and may never be restarted; this one is the test's,
so it can be restarted under load. Root may not run the server, so it runs as the
``postgres`` user (``runuser``), with trust authentication on its own socket dir and on
127.0.0.1.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Self

from tests.conftest import free_port


def postgres_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` holding initdb and pg_ctl, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found and shutil.which("runuser") else None


class PrivatePostgres:
    def __init__(self) -> None:
        binaries = postgres_bin()
        if binaries is None:
            raise FileNotFoundError("PostgreSQL server binaries are not installed (apt-get install postgresql)")
        self.bin = binaries
        self.port = free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="tether-pg-")
        self.dir = Path(self._tmp.name)
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *argv: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True,
                       timeout=60)

    def start(self) -> Self:
        self._as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self._ctl("start")
        return self

    def _ctl(self, action: str) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=on"
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"),
                          "-o", options, "-w", "-m", "fast", action)

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is cut, the server comes back."""
        self._ctl("restart")

    def close(self) -> None:
        try:
            self._ctl("stop")
        except subprocess.CalledProcessError:
            pass
        self._tmp.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
