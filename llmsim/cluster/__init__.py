"""Cluster mechanisms: KV cache, memory model, instances, routers, topologies."""
