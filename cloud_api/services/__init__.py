"""Database work, one module per resource: routes and the MQTT bridge call these functions,
so each query and each write is written once. They take a session and plain values and
raise the cloud's error tree (``cloud_api.errors``) or a ``schemas`` Rejection."""
