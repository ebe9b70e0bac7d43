"""Topologies build instances and decide where an arriving request goes.

``Colocated``: every instance runs prefill and decode; a router picks one per request. A
disaggregated prefill/decode topology plugs in here with its own ``dispatch`` (later issue).
"""
from __future__ import annotations

from llmsim.cluster.instance import Instance
from llmsim.cluster.router import Router
from llmsim.request import Request


class Colocated:
    def __init__(self, instances: list[Instance], router: Router) -> None:
        self.instances = instances
        self.router = router

    def dispatch(self, r: Request) -> None:
        self.instances[self.router.pick(self.instances)].enqueue(r)

    @property
    def num_instances(self) -> int:
        return len(self.instances)
