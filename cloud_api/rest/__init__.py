"""The REST side of the cloud: the FastAPI app, its routes, dependencies, middleware, OpenAPI."""
