"""Routers: pick the instance an arriving request is dispatched to."""
from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from llmsim.request import Request

RouterName = Literal["round_robin", "least_outstanding", "least_kv", "prefix_aware", "least_work"]
# prefix_aware keeps to instances within this much of the least load: (1 + share) x least + slack
BALANCE_SHARE, BALANCE_SLACK = 0.25, 2


class Routable(Protocol):
    instance_id: int
    speed: float  # relative; least_work weighs an instance's load by it

    @property
    def num_outstanding(self) -> int: ...

    def kv_usage_now(self) -> float: ...

    def cached_prefix_tokens(self, r: Request) -> int: ...


class Watchable(Routable, Protocol):
    on_load: Callable[[int], None] | None  # the instance reports its new num_outstanding here


def work_key(load: int, speed: float) -> float:
    """least_work's measure: the time to serve what an instance holds plus one more request, in
    units of its speed (join the shortest queue, weighted by speed)."""
    return (load + 1) / speed


class LoadIndex:
    """The least-loaded position in O(log n): a min-heap of (key, position) whose stale
    entries are dropped when they surface (a lookup over every instance on every arrival was
    a tenth of a 64-instance run). The key is the load, or with ``speeds`` the ``work_key``.
    Ties go to the lowest position, like a scan would."""

    def __init__(self, loads: list[int], speeds: list[float] | None = None) -> None:
        self.loads = list(loads)
        self.speeds = speeds
        self.keys: list[float] = [self._key(i, load) for i, load in enumerate(self.loads)]
        self._rebuild()

    def _key(self, position: int, load: int) -> float:
        return load if self.speeds is None else work_key(load, self.speeds[position])

    def _rebuild(self) -> None:
        self._heap = [(key, i) for i, key in enumerate(self.keys)]
        heapq.heapify(self._heap)

    def set(self, position: int, load: int) -> None:
        if load != self.loads[position]:
            self.loads[position] = load
            speeds = self.speeds  # inline: a call per load change is felt at fleet scale
            key = self.keys[position] = load if speeds is None else work_key(load, speeds[position])
            heapq.heappush(self._heap, (key, position))
            if len(self._heap) > 4 * len(self.loads) + 64:  # stale entries: memory stays O(n)
                self._rebuild()

    def least(self) -> int:
        heap, keys = self._heap, self.keys
        while heap[0][0] != keys[heap[0][1]]:
            heapq.heappop(heap)
        return heap[0][1]  # every position has a valid entry: the top valid one is the least


class Router:
    def __init__(self, name: RouterName) -> None:
        self.name = name
        self._next = 0
        self._watched: Sequence[Watchable] | None = None
        self._index: LoadIndex | None = None

    def watch(self, instances: Sequence[Watchable]) -> None:
        """Keep least_outstanding's (or least_work's) loads of ``instances`` in an index that
        the instances update as their load changes; ``pick`` over exactly this sequence then
        costs O(log n)."""
        if self.name not in ("least_outstanding", "least_work"):
            return
        speeds = [inst.speed for inst in instances] if self.name == "least_work" else None
        index = LoadIndex([inst.num_outstanding for inst in instances], speeds)
        for position, inst in enumerate(instances):
            inst.on_load = partial(index.set, position)
        self._watched, self._index = instances, index

    def pick(self, instances: Sequence[Routable], r: Request | None = None) -> int:
        """Index of the chosen instance for ``r``; ties go to the lowest index (deterministic).
        ``prefix_aware`` (as SGLang's and llm-d's cache-aware routers): among the instances whose
        load is within ``BALANCE_SHARE``/``BALANCE_SLACK`` of the least, the one holding the
        longest cached prefix of ``r``'s prompt, then the least loaded. ``least_work``: the
        least ``work_key`` (outstanding requests over the instance's speed: for a fleet of
        mixed GPUs; on one GPU kind it picks as least_outstanding does)."""
        if self.name == "prefix_aware" and r is not None:
            loads = [inst.num_outstanding for inst in instances]
            bound = min(loads) * (1 + BALANCE_SHARE) + BALANCE_SLACK
            return max((i for i in range(len(instances)) if loads[i] <= bound),
                       key=lambda i: (instances[i].cached_prefix_tokens(r), -loads[i], -i))
        if self.name == "round_robin":
            i = self._next % len(instances)
            self._next += 1
            return i
        if self.name in ("least_outstanding", "prefix_aware", "least_work"):
            if instances is self._watched and self._index is not None:
                return self._index.least()
            if self.name == "least_work":
                keys = [work_key(inst.num_outstanding, inst.speed) for inst in instances]
                return keys.index(min(keys))
            loads = [inst.num_outstanding for inst in instances]
            return loads.index(min(loads))
        return min(range(len(instances)),
                   key=lambda i: (instances[i].kv_usage_now(), instances[i].num_outstanding))
