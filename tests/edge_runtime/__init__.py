"""Tests of the edge agent (edge_runtime); kube/ holds the kube backend's own tests."""
