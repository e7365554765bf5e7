"""The embedded MQTT broker (amqtt) with Tether's authentication and topic ACL, and the
generator of production broker configuration. Imports schemas only."""
