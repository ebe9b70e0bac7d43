"""The verdicts of benchmarks/paper_verdicts.py: what counts as a reproduced direction and a
magnitude within 1.5x, and that no llmsim number in it is typed in."""
from __future__ import annotations

import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from paper_verdicts import CLAIMS, verdict  # noqa: E402


def test_direction_and_magnitude():
    assert verdict(3.58, 2.24) == ("yes", "no")  # same side of 1, 1.6x short
    assert verdict(1.31, 1.06) == ("yes", "yes")
    assert verdict(1.37, 1.00) == ("no", "yes")  # a tie is not a direction
    assert verdict(9.85, 0.82) == ("no", "no")
    assert verdict(None, 1.5) == ("yes", "n/a")  # a direction-only claim: above 1
    assert verdict(None, 0.49) == ("no", "n/a")
    assert verdict(2.0, float("nan")) == ("n/a", "n/a")
    assert verdict(None, float("inf")) == ("yes", "n/a")  # the baseline never met the target
    assert verdict(0.5, float("inf")) == ("no", "no")


def test_every_llmsim_number_is_computed():
    assert len(CLAIMS) >= 9 and {c.paper for c in CLAIMS} == {
        "UELLM", "DistServe", "BucketServe", "OmniServe"}
    assert all(callable(c.llmsim) for c in CLAIMS)


def _script(name: str):
    """A generator script of scenarios/papers as a module (they are scripts, not a package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, REPO / "scenarios" / "papers" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _distserve_rule():
    return _script("make_distserve_trace")


def test_distserve_workload_rule_and_truncated_json():
    """Leading turns joined as the prompt, the next as the output; < 3 messages dropped, too
    short or too long pairs dropped; a JSON array cut mid-element yields its whole elements."""
    mod = _distserve_rule()
    turn = lambda n: {"value": "w " * n}  # noqa: E731
    convs = [{"conversations": [turn(10), turn(20)]},  # 2 messages: dropped
             {"conversations": [turn(10), turn(20), turn(30)]},
             {"conversations": [turn(1), turn(1), turn(1)]},  # both < 4 tokens: dropped
             {"conversations": [turn(1500), turn(600), turn(10)]}]  # k=1: 1501 + 601 >= 2048
    count = lambda s: len(s.split()) + 1  # noqa: E731  (a BOS token, as OPT adds)
    df = mod.pairs(convs, count, seed=0)
    assert list(df.columns) == ["arrival_s", "prompt_tokens", "output_tokens"]
    assert (df["arrival_s"] == 0).all()
    import random
    random.seed(0)
    k = random.randint(1, 2)  # the first draw: the second conversation's (the first is skipped)
    # k = 1 -> (10 + BOS, 20 + BOS); k = 2 -> (10 + 20 + BOS, 30 + BOS); the last is too long
    # for either k (1,501 + 601, or 2,101 prompt tokens)
    assert [tuple(r) for r in df[["prompt_tokens", "output_tokens"]].to_numpy()] == \
        [(11, 21) if k == 1 else (31, 31)]
    again = mod.pairs(convs, count, seed=0)
    assert again.equals(df)  # seeded
    text = '[{"conversations": []}, {"conversations": [{"value": "a"}]}, {"conversa'
    assert [len(c["conversations"]) for c in mod.conversations(text)] == [0, 1]
    shipped = (REPO / "traces" / "distserve_sharegpt_opt.csv")
    lengths = __import__("pandas").read_csv(shipped)
    assert len(lengths) > 10_000
    assert ((lengths.prompt_tokens + lengths.output_tokens) < 2048).all()


def _uellm_rule():
    return _script("make_uellm_trace")


def test_uellm_profile_runs_keep_whole_distinct_blocks():
    shape = "input ids shape:  torch.Size([1, {}])\n".format
    block = lambda ns: 'x = """\n' + "".join(shape(n) for n in ns) + '"""\n'  # noqa: E731
    text = block([1, 2, 3]) + block([4, 5]) + block([1, 2, 3]) + block([7, 8, 9])
    assert _uellm_rule().profile_runs(text, 3) == [[1, 2, 3], [7, 8, 9]]


def test_uellm_traces_rebuild_the_logged_groups():
    """The shipped traces share queries, profile and deadlines; SLO-ODBS over them forms the
    groups the authors' UELLM-all logs print (their longest profile each)."""
    import pandas as pd

    from llmsim.policies.uellm import UELLMConfig, slo_odbs_groups
    from llmsim.request import Request

    runs = [pd.read_csv(REPO / "traces" / "uellm_chatglm2" / f"run{k}.csv") for k in range(1, 9)]
    cols = ["prompt_tokens", "predicted_output_tokens", "deadline_s"]
    assert all(r[cols].equals(runs[0][cols]) for r in runs)
    assert len({tuple(r["output_tokens"]) for r in runs}) == 8  # eight sampled answer sets
    df = runs[0]
    reqs = [Request(i, 0.0, int(p), 1, deadline_at_s=float(d), predicted_output_tokens=int(q))
            for i, (p, q, d) in enumerate(zip(df.prompt_tokens, df.predicted_output_tokens,
                                               df.deadline_s))]
    cfg = UELLMConfig(w_len=0.5, threshold_tokens=15000, max_num_seqs=10)
    got = [max(r.predicted_output_tokens for r in g) for g in slo_odbs_groups(reqs, cfg)]
    logged = [53, 104, 145, 184, 198, 228, 162, 197, 362, 709]  # UELLM-all/1/1.txt
    assert len(got) == len(logged)
    assert sum(a == b for a, b in zip(got, logged)) >= 6
    assert abs(sum(got) - sum(logged)) / sum(logged) < 0.02


def test_distserve_humaneval_rule_and_its_trace():
    mod = _distserve_rule()
    count = lambda s: len(s.split()) + 1  # noqa: E731  (a BOS token, as OPT adds)
    problems = [{"prompt": "def f ( x ) :", "canonical_solution": "return x"},
                {"prompt": "w " * 1500, "canonical_solution": "v " * 600}]  # >= 2048: dropped
    df = mod.humaneval_pairs(problems, count)
    assert [tuple(r) for r in df[["prompt_tokens", "output_tokens"]].to_numpy()] == [(7, 3)]
    shipped = __import__("pandas").read_csv(REPO / "traces" / "distserve_humaneval_opt.csv")
    assert len(shipped) == 164 and (shipped.prompt_tokens + shipped.output_tokens < 2048).all()


@pytest.mark.slow  # two 5-minute OmniServe runs, ~8 s
def test_omniserve_runs_count_the_be_requests_they_start_and_finish():
    """The pipeline study's counts: a BE request starts at its first token and finishes after
    it; with one layer per GPU pass (no catch-up) an offloaded BE token takes many passes."""
    from omniserve_compare import run_one
    from omniserve_sensitivity import A100
    runs = {p: run_one(("yi34b", p, 2.0, 4, 300.0, A100["yi34b"]))
            for p in ("omniserve", "omniserve+catchup")}
    for r in runs.values():
        assert 0 < r["be_finished"] <= r["be_started"] <= int(3.043 * 300)
    assert runs["omniserve"]["be_tpot_p50_s"] > 5 * runs["omniserve+catchup"]["be_tpot_p50_s"]
