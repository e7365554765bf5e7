"""The fleet simulator behind ``tether bench fleet``: thousands of simulated edge nodes in
one process, speaking the shadow contract (DESIGN §4) to a real broker and cloud.

``mqttcodec`` and ``mqttlite``: a small asyncio MQTT 3.1.1 client (paho needs a thread
or a socket loop per client); ``nodes``, ``apps``, ``catalog`` and ``shared``: one node's
side of the protocol, as the agent's sync and engine do it; ``fleet``: the nodes'
connections and timers; ``services`` and ``cloudrest``: the processes and REST calls
around them; ``running`` and ``phases``: the bench; ``results``: its figures.
"""
