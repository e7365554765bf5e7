"""The composition root: the only code that wires the broker, the cloud and the edge together.

``broker``, ``cloud_api`` and ``edge_runtime`` never import each other (DESIGN §1), yet
``tether up`` runs all three and ``tether cloud serve --embedded-broker`` runs two of them
in one process; the benchmarks and end-to-end tests need the same wiring. It lives here,
above the three layers, so ``tether.py`` stays a thin list of commands.
"""
