"""Routers: pick the instance an arriving request is dispatched to."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

RouterName = Literal["round_robin", "least_outstanding", "least_kv"]


class Routable(Protocol):
    instance_id: int

    @property
    def num_outstanding(self) -> int: ...

    def kv_usage_now(self) -> float: ...


class Router:
    def __init__(self, name: RouterName) -> None:
        self.name = name
        self._next = 0

    def pick(self, instances: Sequence[Routable]) -> int:
        """Index of the chosen instance; ties go to the lowest index (deterministic)."""
        if self.name == "round_robin":
            i = self._next % len(instances)
            self._next += 1
            return i
        if self.name == "least_outstanding":
            loads = [inst.num_outstanding for inst in instances]
            return loads.index(min(loads))
        return min(range(len(instances)),
                   key=lambda i: (instances[i].kv_usage_now(), instances[i].num_outstanding))
