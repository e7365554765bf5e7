"""Tell the node's function proxy where kube-run functions are, through announcement files.

The proxy finds function runtimes by the files under ``DATA_DIR/functions`` (see
``edge_runtime.functions.directory``). Native runtimes write their own; a pod cannot
write on the node, so the kube backend writes ``{app}/{function}/kube.json`` =
``{"url"}`` for each function whose Service has a ready pod (``observing.
function_endpoints``) and removes it when that is no longer so. Being files, they
outlive the agent: restarted offline, its proxy reaches the pods at once.

Only files named ``kube.json`` are ever written or removed here.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from edge_runtime.functions.directory import write_announcement
from schemas.names import is_valid_name

log = logging.getLogger(__name__)
ENDPOINT_FILENAME = "kube.json"

Endpoints = dict[tuple[str, str], str]


class EndpointAnnouncer:
    """Keeps the ``kube.json`` files under ``root`` equal to the endpoints it is given."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def sync(self, endpoints: Endpoints) -> None:
        """Write what changed, remove what is gone; an I/O error is logged, not raised (the
        next observe tries again, and the apps keep running either way)."""
        try:
            for (app, function), url in endpoints.items():
                if is_valid_name(app) and is_valid_name(function):
                    path = self.root / app / function / ENDPOINT_FILENAME
                    if _announced_url(path) != url:
                        write_announcement(path, url=url, pid=None)
            for path in self._announced():
                if (path.parent.parent.name, path.parent.name) not in endpoints:
                    _withdraw(path)
        except OSError as exc:
            log.warning("cannot update the function announcements in %s: %s", self.root, exc)

    def withdraw_app(self, app: str) -> None:
        """Remove the announcements of ``app`` (it is being removed)."""
        if not is_valid_name(app):
            return
        for path in sorted((self.root / app).glob(f"*/{ENDPOINT_FILENAME}")):
            _withdraw(path)

    def _announced(self) -> list[Path]:
        return sorted(self.root.glob(f"*/*/{ENDPOINT_FILENAME}"))


def _announced_url(path: Path) -> str | None:
    try:
        url = json.loads(path.read_bytes()).get("url")
    except (OSError, ValueError, AttributeError):
        return None
    return url if isinstance(url, str) else None


def _withdraw(path: Path) -> None:
    """Remove one announcement, and its function's and app's folders if now empty."""
    try:
        path.unlink(missing_ok=True)
        for folder in (path.parent, path.parent.parent):
            folder.rmdir()  # only when empty: native announcements may live beside
    except OSError:
        pass
