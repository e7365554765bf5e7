"""The cloud: REST admin API, store, shadow service and the MQTT bridge that serves the
shadow topics. Imports schemas only."""
