"""The operator's tools: the admin CLI, its views, its REST client, manifests and apply."""
