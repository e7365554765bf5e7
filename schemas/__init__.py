"""The contract between Tether's cloud and its edge nodes, as pure code.

Everything here is data in, data out: the shadow algebra (merge, delta, version,
limits), topic names and the MQTT access rule, names, and error codes. It does no I/O
and imports nothing of the project, so that the broker, the cloud and the edge can all
build on it and meet only through what it defines.
"""
