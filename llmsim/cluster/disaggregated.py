"""Disaggregated prefill/decode topology (DistServe, BucketServe): policies.md §7.1, §7.4.

A request goes to a prefill instance (router), runs its prompt there, and waits with its KV on
the prefill GPU until the decode instance it is offered to pulls it (the decode policy decides
when); its KV then crosses the interconnect and the request decodes there. Transfers out of one
prefill instance share its link, so overlapping transfers queue (contention). With the transfer
switched off, KV moves instantly, as in DistServe's own simulator.
"""
from __future__ import annotations

import simpy
from pydantic import Field

from llmsim.cluster.clock import defer
from llmsim.cluster.instance import Instance
from llmsim.cluster.router import Router
from llmsim.config_base import StrictModel
from llmsim.request import Request


class KVTransferConfig(StrictModel):
    enabled: bool = Field(True, description="false: instant transfer (simdistserve)")
    bandwidth_gbps: float | None = Field(None, gt=0, description="per GPU pair, GB/s; "
                                                                 "default the GPU's NVLink")
    latency_s: float = Field(1e-5, ge=0)


class Disaggregated:
    def __init__(self, env: simpy.Environment, prefill: list[Instance], decode: list[Instance],
                 router: Router, kv_bytes_per_token: int, bandwidth_gbps: float,
                 config: KVTransferConfig) -> None:
        self.env, self.prefill, self.decode, self.router = env, prefill, decode, router
        self.kv_bytes_per_token, self.cfg = kv_bytes_per_token, config
        # TP shards move in parallel: one link per GPU pair of the narrower TP group.
        self.bytes_per_s = bandwidth_gbps * 1e9
        self.links = {id(p): simpy.Resource(env, capacity=1) for p in prefill}
        for p in prefill:
            p.on_handoff = self.handoff
        for d in decode:
            d.start_transfer = self.start_transfer
        self.instances = prefill + decode
        router.watch(prefill)
        # inputs of one instant, delivered in request order: the order in which same-instant
        # steps end follows event insertion, which differs between fused and step-by-step runs
        self._offers: list[tuple[int, Instance, Request]] = []
        self._landings: list[tuple[int, Instance, Instance, Request]] = []

    @property
    def num_instances(self) -> int:
        return len(self.instances)

    def dispatch(self, r: Request) -> None:
        self.prefill[self.router.pick(self.prefill, r)].enqueue(r)

    def handoff(self, source: Instance, r: Request) -> None:
        if not self._offers:  # after every step that ends now (clock.py)
            defer(self.env, self._offer_all)
        self._offers.append((r.request_id, source, r))

    def _offer_all(self) -> None:
        offers, self._offers = sorted(self._offers, key=lambda o: o[0]), []
        for _, source, r in offers:
            target = min(self.decode, key=lambda d: (d.num_outstanding, d.instance_id))
            target.offer(r, source)

    def start_transfer(self, r: Request, source: Instance, target: Instance) -> None:
        r.kv_transfer_start_s = self.env.now
        self.env.process(self._transfer(r, source, target))

    def _transfer(self, r: Request, source: Instance, target: Instance):
        if self.cfg.enabled:
            with self.links[id(source)].request() as link:
                yield link
                yield self.env.timeout(self.cfg.latency_s + r.num_computed_tokens
                                       * self.kv_bytes_per_token / self.bytes_per_s)
        r.kv_transfer_end_s = self.env.now
        if not self._landings:
            defer(self.env, self._land_all)
        self._landings.append((r.request_id, source, target, r))

    def _land_all(self) -> None:
        landings, self._landings = sorted(self._landings, key=lambda x: x[0]), []
        for _, source, target, r in landings:
            source.release(r)
            target.receive(r)
