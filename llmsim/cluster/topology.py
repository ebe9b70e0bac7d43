"""Topologies build instances and decide where an arriving request goes.

``Colocated``: every instance runs prefill and decode; a router picks one per request. A
disaggregated prefill/decode topology plugs in here with its own ``dispatch`` (later issue).
"""
from __future__ import annotations

from llmsim.cluster.instance import Instance, never_fits
from llmsim.cluster.router import Router
from llmsim.policies.roles import GatesBestEffort
from llmsim.request import Request, ServiceClass


class Colocated:
    """``cpu_instances``: CPU-only engines that take a best-effort arrival when no GPU instance
    admits it (Llumnix-style overflow: GPU headroom stays reserved for LS). In a fleet of
    instance groups whose KV pools differ, a request too long for the smaller pools goes only
    where it fits (rejected, for its reason, only if it fits nowhere)."""

    def __init__(self, instances: list[Instance], router: Router,
                 cpu_instances: list[Instance] | None = None) -> None:
        self.gpu_instances = instances
        self.cpu_instances = cpu_instances or []
        self.instances = instances + self.cpu_instances
        self.router = router
        router.watch(instances)
        # every instance can hold a request of this many tokens (then no check per arrival)
        self._fits_all = min(((i.kv.num_blocks - i.kv.watermark_blocks) * i.kv.block_size
                              for i in instances), default=0)

    def dispatch(self, r: Request) -> None:
        gpus = self.gpu_instances
        if r.prompt_tokens + r.output_tokens > self._fits_all:
            fit = [i for i in gpus if not never_fits(r, i.max_model_len, i.kv)]
            if fit and len(fit) < len(gpus):
                gpus = fit
        if self.cpu_instances and r.service_class == ServiceClass.BEST_EFFORT:
            admits = [i for i in gpus if not isinstance(i.policy, GatesBestEffort)
                      or i.policy.admits_best_effort(r, i.kv)]
            if not admits:
                cpus = self.cpu_instances
                cpus[self.router.pick(cpus, r)].enqueue(r)
                return
            gpus = admits
        gpus[self.router.pick(gpus, r)].enqueue(r)

    @property
    def num_instances(self) -> int:
        return len(self.instances)
