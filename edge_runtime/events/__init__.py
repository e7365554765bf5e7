"""App events of this node: derived from what the backend reports, deduplicated, published."""
