"""The ``kube`` backend: apps as Kubernetes objects in one namespace (DESIGN §8).

Pure core, thin shell -- read in this order:

* ``naming``: object names, labels and annotations (how Tether finds its objects again);
* ``podspecs`` and ``rendering``: an ``AppBundle`` as plain manifests (the plan);
* ``observing``: live objects back into ``ObservedApp`` statuses;
* ``cluster``: the few typed API calls, every failure a ``BackendError``;
* ``backend``: ``KubeBackend``, which renders, applies, prunes, removes and observes.
"""

from __future__ import annotations

from edge_runtime.backends.kube.backend import KubeBackend, client_from_environment
from edge_runtime.backends.kube.rendering import render

__all__ = ["KubeBackend", "client_from_environment", "render"]
