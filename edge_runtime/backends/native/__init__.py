"""The native backend: each service of an app as supervised local processes (DESIGN §8).

For nodes without Kubernetes: ``NativeBackend(data_dir)`` runs ``command + args`` (or,
for a function service, Tether's function runtime) with config, secret and certificate
volumes written as files, restarts what exits with backoff, and lets processes outlive
the agent so a restart adopts them instead of restarting them. Modules: ``rendering`` (bundle -> process specs, pure), ``files``
(mounted files and the applied state on disk), ``processes`` (start, find, stop),
``supervising`` (restart policy and status), ``backend`` (``NativeBackend``).
"""

from __future__ import annotations

from edge_runtime.backends.native.backend import NativeBackend
from edge_runtime.backends.native.supervising import RestartPolicy

__all__ = ["NativeBackend", "RestartPolicy"]
