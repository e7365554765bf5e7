"""The embedded MQTT broker (amqtt) with Tether's authentication and topic ACL, and the
generator of production broker configuration. Imports schemas only.

- :mod:`broker.access`    who may connect and use which topic (pure: no MQTT import)
- :mod:`broker.plugins`   those decisions as amqtt plugins; the cloud-backed authenticator
- :mod:`broker.hardening` amqtt's ``Broker`` with the holes that matter to Tether closed
- :mod:`broker.embedded`  ``EmbeddedBroker`` and ``run_in_thread``: start, stop, port 0
- :mod:`broker.settings`  ``BrokerSettings`` (``TETHER_BROKER_*``)
- :mod:`broker.errors`    the package's error tree
- :mod:`broker.cli`       ``tether broker serve``

Nothing is re-exported here, so importing :mod:`broker` does not import amqtt.
"""
