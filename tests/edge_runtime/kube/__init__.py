"""Tests of the kube backend and of the fake Kubernetes API server it is tested against."""
