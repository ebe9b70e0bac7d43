"""The host's two speeds, read from the replay's step probe (calibration.host_regimes)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from calibration.fidelity import VALIDATION_ROOT
from calibration.host_regimes import regimes, run_regimes
from llmsim.errors import InputError
from tests.conftest import REPO

DIAGNOSTICS = REPO / "calibration" / "diagnostics" / "host_regimes"


def _write_run(d, slow_share: float, n: int = 200, cached: int = 5, seed: int = 0):
    """A probed run: ``n`` plan-building steps, ``slow_share`` of them with every host cost
    1.45x (plan build 40 -> 58 ms, the rest of a small step 30 -> 43.5 ms), in one streak."""
    rng = np.random.default_rng(seed)
    slow = np.arange(n) >= n - round(slow_share * n)
    factor = np.where(slow, 1.45, 1.0)
    plan = 0.040 * factor * rng.normal(1.0, 0.02, n)
    rest = 0.030 * factor * rng.normal(1.0, 0.02, n)
    # steps that reused a cached plan: a ~0.1 ms first SDPA call
    plan = np.concatenate([plan, np.full(cached, 1e-4)])
    rest = np.concatenate([rest, np.full(cached, 0.030)])
    start = np.cumsum(np.concatenate([[0.0], (plan + rest)[:-1]]))
    d.mkdir(parents=True)
    pd.DataFrame({"step": range(len(plan)), "schedule_s": start, "end_s": start + plan + rest,
                  "num_requests": 2, "query_tokens": 2, "sdpa_first_s": plan}
                 ).to_csv(d / "steps.csv", index=False)
    return d


@pytest.mark.parametrize("share", [0.0, 0.3, 0.85])
def test_slow_share_is_recovered_whatever_its_size(tmp_path, share):
    """Including a run that spent most of its steps slow (a middle quantile as the fast level
    would have called the slow mode fast there)."""
    r = run_regimes(_write_run(tmp_path / "h100" / "case", share))
    assert r["plan_steps"] == 200  # the cached-plan steps are no builds
    assert r["slow_share"] == pytest.approx(share, abs=0.01)
    assert r["fast_plan_ms"] == pytest.approx(40.0, rel=0.03)
    if share:
        assert r["slow_plan_median_ms"] == pytest.approx(58.0, rel=0.03)
        assert r["small_rest_slow_over_fast"] == pytest.approx(1.45, rel=0.04)
        assert r["slow_time_share"] > share  # slow steps are longer
    else:
        assert np.isnan(r["slow_plan_median_ms"])


def test_a_run_with_no_fast_step_is_read_against_its_gpus_other_runs(tmp_path):
    """On its own such a run looks all fast (its low quantile is slow already); against the
    fast level of the GPU's other runs it is all slow."""
    alone = run_regimes(_write_run(tmp_path / "h100" / "all_slow", 1.0))
    assert alone["slow_share"] == 0.0 and alone["fast_plan_ms"] == pytest.approx(58, rel=0.03)
    for i, share in enumerate((0.1, 0.3)):
        _write_run(tmp_path / "h100" / f"mixed{i}", share, seed=i + 1)
    _write_run(tmp_path / "h200" / "fast", 0.0, seed=5)
    df = regimes(tmp_path).set_index("run")
    assert df.loc["h100/all_slow", "slow_share"] == 1.0
    assert np.isnan(df.loc["h100/all_slow", "fast_plan_ms"])
    assert df.loc["h100/mixed1", "slow_share"] == pytest.approx(0.3, abs=0.01)
    assert df.loc["h200/fast", "slow_share"] == 0.0


def test_runs_without_the_probe_are_skipped_and_a_root_without_any_is_an_error(tmp_path):
    _write_run(tmp_path / "h100" / "probed", 0.3)
    old = tmp_path / "h100" / "old"
    old.mkdir()
    pd.DataFrame({"step": [0], "schedule_s": [0.0], "end_s": [0.1], "num_requests": [1],
                  "query_tokens": [1]}).to_csv(old / "steps.csv", index=False)
    with pytest.raises(InputError, match="sdpa_first_s"):
        run_regimes(old)
    assert list(regimes(tmp_path)["run"]) == ["h100/probed"]
    with pytest.raises(InputError, match="no replay run with the step probe"):
        regimes(old)


def test_committed_probed_runs_show_two_host_states():
    """The measured finding the fidelity note rests on: on every probed run the fast plan
    build sits near one level per run (H100 38.6-42.9 ms in three sessions, 41.6-52.1 ms in
    three later ones whose builds spread between the modes, 40.8-56.2 ms in session 11's two,
    64.5 ms on one later machine whose slow state took 80 ms; H200 36.8-40.9 ms, 39.9-46.3 ms
    in session 11's two), the slow state costs ~1.2-1.6x, the rest of a small step slows with
    it (the whole host, not only cuDNN), and the slow share ranges widely across runs of one
    plan case."""
    df = regimes(VALIDATION_ROOT)
    assert len(df) >= 77
    gpu = df["run"].str.split("/").str[0]
    assert df.loc[gpu == "h100", "fast_plan_ms"].between(38, 66).all()
    assert df.loc[gpu == "h200", "fast_plan_ms"].between(36, 47).all()
    ratio = df["slow_plan_median_ms"] / df["fast_plan_ms"]
    assert ratio.between(1.2, 1.65).all()  # 1.2 where a session's builds spread between modes
    assert df["small_rest_slow_over_fast"].median() > 1.25
    code = df[df["run"].str.startswith("h100/llama8b_pf_mbt1024_code")]["slow_share"]
    assert code.max() > 0.75 and code.min() < 0.3


def test_regimes_command(tmp_path):
    from tests.lab.test_lab_cli import lab

    proc = lab("regimes", str(DIAGNOSTICS), "--csv", str(tmp_path / "r.csv"))
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(tmp_path / "r.csv")
    assert set(df["run"].str.split("/").str[0]) == {"omp_threads1", "pinned_cpus0-3"}
    proc = lab("regimes", str(tmp_path))
    assert proc.returncode == 2 and "no replay run with the step probe" in proc.stderr
