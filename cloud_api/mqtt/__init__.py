"""The cloud's MQTT side (DESIGN §11): the bridge and its publishing connection, the shadow
server that answers node topics, liveness, session kicking, the function relay, and the
``Publisher`` port (``transport``) through which everything else publishes.
"""
