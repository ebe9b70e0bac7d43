"""Policy metrics regression: seeded scenarios against golden values, and policy orderings.

A deliberate change: ``llmsim regress --update`` (prints what moved), then commit golden.json.
"""
from __future__ import annotations

import pytest

from llmsim.analysis.regress import CASES, check_orderings, compare, load_golden, run_cases
from llmsim.errors import InputError
from tests.conftest import REPO

PROGRESS: list[tuple[int, int]] = []


@pytest.fixture(scope="module")
def got():
    return run_cases(REPO, progress=lambda done, total: PROGRESS.append((done, total)))


def test_progress_is_reported_case_by_case(got):
    assert PROGRESS == [(i, len(CASES)) for i in range(1, len(CASES) + 1)]


def test_every_case_has_a_golden_record(got):
    assert set(load_golden(REPO)) == set(CASES)


def test_metrics_within_tolerance_of_golden(got):
    bad = [r for r in compare(got, load_golden(REPO)) if not r[4]]
    assert not bad, "metrics moved (llmsim regress --update if deliberate):\n" + "\n".join(
        f"  {c} {m}: golden {g:.6g} -> now {v:.6g}" for c, m, g, v, _ in bad)


def test_policy_orderings_hold(got):
    results = check_orderings(got)
    assert len(results) >= 6
    failed = [text for text, ok in results if not ok]
    assert not failed, failed


def test_compare_flags_a_moved_metric():
    golden = {"x": {"ttft_s.p50": 1.0, "padding_ratio": 0.5}}
    rows = compare({"x": {"ttft_s.p50": 1.05, "padding_ratio": 0.505}}, golden)
    assert [ok for *_, ok in rows] == [False, True]


def test_regress_outside_a_checkout_is_one_line(tmp_path):
    with pytest.raises(InputError, match="run llmsim regress in a checkout"):
        run_cases(tmp_path)
    with pytest.raises(InputError, match="--case: unknown nope"):
        run_cases(REPO, ["nope"])
