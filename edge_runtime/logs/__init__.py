"""Logs of this node's apps, read where each backend keeps them and streamed over MQTT."""
