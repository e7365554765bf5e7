"""Backends carry out the engine's plan: ``kube`` (K3s/Kubernetes) and ``native`` (local processes)."""
