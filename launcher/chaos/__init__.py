"""Fault injection with the kernel's own tools, for the chaos tests and ``tether bench fleet``.

A node (an edge agent, or a group of simulated nodes) is put in a network namespace of
its own, joined to the root namespace by a veth pair; faults are made on that path with
``ip link`` (cut), nftables (black hole, partition, random loss) and ``tc tbf`` (a slow
link), and latency by the project's own delaying TCP relay (this kernel has no netem).
Only the namespace's own addresses and loopback are ever touched (DESIGN §11).
"""
