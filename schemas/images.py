"""The one Tether image, by name: ``compose/Dockerfile`` builds it, the kube install
manifest runs the edge agent in it, and kube nodes run function runtimes in it.

One constant, so the three never name different images; its tag is the package version
(``tests/test_compose.py`` holds them together). Operators who mirror it elsewhere pass
their own name (``TETHER_CLOUD_EDGE_IMAGE`` on the cloud, ``TETHER_EDGE_FUNCTION_IMAGE`` on
a node).
"""

from __future__ import annotations

TETHER_IMAGE = "ghcr.io/tether-project/tether:0.1.0"
