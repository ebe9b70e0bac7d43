"""KV cache mechanism: unit cases plus a hypothesis state machine over random verb sequences."""
from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from llmsim.cluster.kv_cache import KVCache, KVCacheError
from tests.conftest import make_kv


def test_allocate_rounds_up_to_blocks_and_free_returns_them():
    kv = make_kv(num_blocks=10, block_size=4)
    kv.allocate(1, 5)
    assert kv.num_blocks_of(1) == 2 and kv.num_free_blocks == 8 and kv.num_used_tokens == 5
    kv.free(1)
    assert kv.num_free_blocks == 10 and kv.num_used_tokens == 0


def test_append_takes_a_block_only_when_the_last_one_is_full():
    kv = make_kv(num_blocks=10, block_size=4)
    kv.allocate(1, 4)
    assert kv.num_blocks_of(1) == 1
    kv.append(1)
    assert kv.num_blocks_of(1) == 2
    kv.append(1, 3)
    assert kv.num_blocks_of(1) == 2
    kv.append(1)
    assert kv.num_blocks_of(1) == 3


def test_watermark_blocks_admission_but_not_growth():
    kv = KVCache(num_blocks=100, block_size=1, watermark=0.1)
    assert kv.can_allocate(90) and not kv.can_allocate(91)
    kv.allocate(1, 90)
    assert kv.can_append(1, 10) and not kv.can_append(1, 11)


def test_reservation_makes_appends_free():
    kv = make_kv(num_blocks=10, block_size=4)
    kv.allocate(1, 3, reserve_tokens=20)
    assert kv.num_blocks_of(1) == 5
    kv.append(1, 17)
    assert kv.num_blocks_of(1) == 5 and kv.num_free_blocks == 5


def test_over_allocation_raises():
    kv = make_kv(num_blocks=2, block_size=4)
    with pytest.raises(KVCacheError):
        kv.allocate(1, 9)
    kv.allocate(1, 8)
    with pytest.raises(KVCacheError):
        kv.append(1)
    with pytest.raises(KVCacheError):
        kv.allocate(1, 1)


def test_swap_round_trip_keeps_tokens():
    kv = make_kv(num_blocks=10, block_size=4, num_host_blocks=3)
    kv.allocate(1, 9)
    kv.swap_out(1)
    assert kv.is_swapped(1) and not kv.holds(1) and kv.num_free_blocks == 10
    assert kv.num_free_host_blocks == 0
    kv.swap_in(1)
    assert kv.num_tokens_of(1) == 9 and kv.num_free_host_blocks == 3
    kv.allocate(2, 8)
    kv.allocate(3, 4)
    assert not kv.can_swap_out(2) or kv.num_blocks_of(2) <= 3


def test_max_uniform_appends_matches_stepwise_appends():
    kv = make_kv(num_blocks=12, block_size=4)
    for rid, n in ((1, 3), (2, 4), (3, 7)):
        kv.allocate(rid, n)
    k = kv.max_uniform_appends([1, 2, 3], 50)
    probe = make_kv(num_blocks=12, block_size=4)
    for rid, n in ((1, 3), (2, 4), (3, 7)):
        probe.allocate(rid, n)
    steps = 0
    while all(probe.can_append(r) for r in (1, 2, 3)) and steps < 50:
        # the joint check: appending all three must fit together
        need = probe.blocks_needed_for_appends([1, 2, 3], 1)
        if need > probe.num_free_blocks:
            break
        for r in (1, 2, 3):
            probe.append(r)
        steps += 1
    assert k == steps


class KVMachine(RuleBasedStateMachine):
    """Random sequences of verbs, each guarded by its can_* check, never break the books."""

    def __init__(self):
        super().__init__()
        self.kv = KVCache(num_blocks=40, block_size=4, watermark=0.05, num_host_blocks=12)
        self.next_id = 0
        self.model: dict[int, int] = {}  # request -> tokens (on GPU or host)

    @rule(n=st.integers(1, 60), reserve=st.integers(0, 80))
    def allocate(self, n, reserve):
        if self.kv.can_allocate(n, reserve):
            self.kv.allocate(self.next_id, n, reserve)
            self.model[self.next_id] = n
            self.next_id += 1
        else:
            assert self.kv.num_free_blocks - self.kv.blocks_for(max(n, reserve)) < self.kv.watermark_blocks

    def _pick(self, data, where):
        return data.draw(st.sampled_from(sorted(r for r in self.model if where(r))))

    @precondition(lambda self: any(self.kv.holds(r) for r in self.model))
    @rule(data=st.data(), n=st.integers(1, 10))
    def append(self, data, n):
        rid = self._pick(data, self.kv.holds)
        if self.kv.can_append(rid, n):
            self.kv.append(rid, n)
            self.model[rid] += n
        else:
            with pytest.raises(KVCacheError):
                self.kv.append(rid, n)

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def free(self, data):
        rid = data.draw(st.sampled_from(sorted(self.model)))
        self.kv.free(rid)
        del self.model[rid]

    @precondition(lambda self: any(self.kv.holds(r) for r in self.model))
    @rule(data=st.data())
    def swap_out(self, data):
        rid = self._pick(data, self.kv.holds)
        if self.kv.can_swap_out(rid):
            self.kv.swap_out(rid)

    @precondition(lambda self: any(self.kv.is_swapped(r) for r in self.model))
    @rule(data=st.data())
    def swap_in(self, data):
        rid = self._pick(data, self.kv.is_swapped)
        if self.kv.can_swap_in(rid):
            self.kv.swap_in(rid)
            assert self.kv.num_tokens_of(rid) == self.model[rid]

    @invariant()
    def books_balance(self):
        self.kv.check_invariants()
        on_gpu = sum(t for r, t in self.model.items() if self.kv.holds(r))
        assert self.kv.num_used_tokens == on_gpu


TestKVMachine = KVMachine.TestCase
TestKVMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_try_append_is_can_append_then_append():
    from llmsim.cluster.kv_cache import KVCache

    a, b = KVCache(3, 4), KVCache(3, 4)
    for kv in (a, b):
        kv.allocate(1, 4)
        kv.allocate(2, 7)
    for _ in range(6):
        ok = a.can_append(1)
        if ok:
            a.append(1)
        assert b.try_append(1) == ok
        assert (a.num_free_blocks, a.num_used_tokens) == (b.num_free_blocks, b.num_used_tokens)
    b.check_invariants()


def test_append_each_is_all_or_none():
    kv = make_kv(num_blocks=6, block_size=4)
    kv.allocate(1, 4)
    kv.allocate(2, 2)
    kv.append_each([1, 2], 4)  # 1 grows a block, 2 fits in its own
    assert (kv.num_tokens_of(1), kv.num_blocks_of(1), kv.num_tokens_of(2)) == (8, 2, 6)
    before = (kv.num_free_blocks, kv.num_used_tokens, kv.num_blocks_of(1), kv.num_blocks_of(2))
    with pytest.raises(KVCacheError, match="needs 5 blocks, 2 free"):
        kv.append_each([1, 2], 9)
    after = (kv.num_free_blocks, kv.num_used_tokens, kv.num_blocks_of(1), kv.num_blocks_of(2))
    assert after == before and kv.num_tokens_of(1) == 8
    kv.check_invariants()


def test_try_append_each_gives_what_appending_one_by_one_gives():
    """The decode-slot fast path: when every row fits, the same tables, free blocks and
    evictions (prefix caching) as ``try_append`` row by row; when not, nothing changes."""
    import copy
    import random

    rng = random.Random(3)
    for trial in range(150):
        kv = KVCache(rng.randint(8, 40), 4, watermark=0.0, prefix_caching=trial % 2 == 0)
        ids = []
        for rid in range(rng.randint(1, 8)):
            prefix = tuple(range(rid % 3, rid % 3 + rng.randint(0, 3)))
            n = rng.randint(1, 12)
            if kv.can_allocate(n, prefix=prefix):
                kv.allocate(rid, n, prefix=prefix)
                kv.commit_prefix(rid, n, prefix)
                ids.append(rid)
        for rid in ids[::3]:  # some cached blocks released: evictable
            kv.free(rid)
        ids = [r for r in ids if kv.holds(r)]
        one = copy.deepcopy(kv)
        each = all(one.try_append(r) for r in ids)
        before = copy.deepcopy(kv)
        got = kv.try_append_each(ids)
        assert got == each
        if got:
            assert [kv.num_tokens_of(r) for r in ids] == [one.num_tokens_of(r) for r in ids]
            assert [kv.num_blocks_of(r) for r in ids] == [one.num_blocks_of(r) for r in ids]
            assert kv.num_free_blocks == one.num_free_blocks
            if kv.prefix is not None:
                assert list(kv.prefix.evictable) == list(one.prefix.evictable)
        else:
            assert kv.num_free_blocks == before.num_free_blocks
            assert [kv.num_tokens_of(r) for r in ids] == [before.num_tokens_of(r) for r in ids]
        kv.check_invariants()
