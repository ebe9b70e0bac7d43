"""Workloads: trace readers, synthetic generators, and the request builder."""
