"""A TLS listener for a private broker: its port and the files it serves and verifies with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsListener:
    port: int
    cafile: Path
    """The CA client certificates are verified against (the cloud's)."""
    certfile: Path
    keyfile: Path

    @property
    def url(self) -> str:
        return f"mqtts://localhost:{self.port}"
