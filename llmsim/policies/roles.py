"""What a policy adds to run on one side of a disaggregated cluster, or to gate best-effort
routing. The base ``Policy`` is only ``enqueue`` / ``schedule`` / ``on_step_end``; a policy that
declares the ``prefill`` or ``decode`` role implements that side's protocol (checked when its
instance is built)."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from llmsim.cluster.kv_cache import KVCache
from llmsim.request import Request, RequestStatus


@runtime_checkable
class PrefillSide(Protocol):
    def take_handoffs(self) -> list[Request]:
        """Requests whose prompt is done and whose decode runs elsewhere."""
        ...

    def forget(self, r: Request) -> None:
        """The decode side took ``r`` (its KV was freed here by the instance)."""
        ...


@runtime_checkable
class DecodeSide(Protocol):
    def can_accept(self, r: Request, kv: KVCache) -> bool:
        """Whether to pull a prefilled request's KV now."""
        ...

    def accept(self, r: Request, kv: KVCache) -> None:
        """Reserve KV for an incoming request; its transfer starts now."""
        ...

    def receive(self, r: Request, kv: KVCache) -> None:
        """The KV landed: the request decodes here from now on."""
        ...


@runtime_checkable
class GatesBestEffort(Protocol):
    def admits_best_effort(self, r: Request, kv: KVCache) -> bool:
        """Whether a best-effort arrival may use this GPU when CPU-only engines could take it
        instead (policies with LS/BE classes)."""
        ...


class PullsKV:
    """The decode side's default mechanics (a mixin for a ``Policy`` that keeps ``running``):
    pull when the KV fits, hold the request neither queued nor runnable until it lands."""

    def can_accept(self, r: Request, kv: KVCache) -> bool:
        return kv.can_allocate(r.num_computed_tokens + 1)

    def accept(self, r: Request, kv: KVCache) -> None:
        kv.allocate(r.request_id, r.num_computed_tokens)
        r.status = RequestStatus.SWAPPED

    def receive(self, r: Request, kv: KVCache) -> None:
        r.status = RequestStatus.RUNNING
        self._insert_running(r)  # type: ignore[attr-defined]  # Policy's
