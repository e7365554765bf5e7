"""The REST API, one module per resource; each route authorizes, calls a service, returns."""
