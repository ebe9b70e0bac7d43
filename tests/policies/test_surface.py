"""The policy surface: one name per knob concept, declared roles checked at validation."""
from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

from llmsim.errors import InputError
from llmsim.policies import POLICIES, PolicyConfigBase
from llmsim.policies.base import ROLES
from llmsim.simulation import step_token_cap
from tests.conftest import REPO, tiny_scenario

OLD_NAMES = [("sarathi", "chunk_size", "max_num_batched_tokens"),
             ("distserve_prefill", "max_tokens_per_batch", "max_num_batched_tokens"),
             ("distserve_prefill", "max_batch_size", "max_num_seqs"),
             ("bucketserve", "max_tokens_per_batch", "max_num_batched_tokens"),
             ("hf_cb", "max_batch_tokens", "max_num_batched_tokens"),
             ("hf_cb", "max_requests_per_batch", "max_num_seqs"),
             ("omniserve", "max_chunk_tokens", "max_num_batched_tokens"),
             ("static", "max_batch_size", "max_num_seqs"),
             ("orca", "max_batch_size", "max_num_seqs"),
             ("uellm", "max_batch_size", "max_num_seqs")]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_every_policy_declares_its_roles_and_one_name_per_limit(policy):
    assert policy.roles and policy.roles <= set(ROLES)
    assert issubclass(policy.Config, PolicyConfigBase)
    fields = set(policy.Config.model_fields)
    for old, new in policy.Config.RENAMED.items():
        assert old not in fields and new in fields
    cfg = policy.Config()
    assert cfg.token_budget == getattr(cfg, "max_num_batched_tokens", None)
    assert cfg.row_cap == getattr(cfg, "max_num_seqs", None)


@pytest.mark.parametrize("kind,old,new", OLD_NAMES)
def test_old_knob_names_are_migrated_with_a_warning(kind, old, new):
    cls = next(p.Config for p in POLICIES if p.name == kind)
    with pytest.warns(FutureWarning, match=f"{old} is now called {new}"):
        cfg = cls.model_validate({"kind": kind, old: 64})
    assert getattr(cfg, new) == 64
    with pytest.raises(ValueError, match=f"give only {new}"):
        cls.model_validate({"kind": kind, old: 64, new: 32})


def test_the_activation_reserve_uses_every_policys_token_budget():
    """The memory plan sizes its activation reserve from the step token budget, whatever the
    policy (it missed hf_cb's and omniserve's under their old names)."""
    by = {p.name: p.Config for p in POLICIES}
    assert step_token_cap(by["hf_cb"](max_num_batched_tokens=512), 8192) == 512
    assert step_token_cap(by["omniserve"](max_num_batched_tokens=1024), 8192) == 1024
    assert step_token_cap(by["static"](), 8192) == 8192
    assert step_token_cap(by["vllm"](), 1024) == 2048


@pytest.mark.parametrize("sections,fragment", [
    ({"policy": {"kind": "distserve_prefill"}},
     "policy.kind: distserve_prefill runs only as prefill instances, not on colocated"),
    ({"policy": {"kind": "distserve_decode"}}, "policy.kind: distserve_decode runs only as decode"),
    ({"cluster": {"topology": "disaggregated", "prefill": {}, "decode": {}},
      "policy": {"kind": "vllm"}, "decode_policy": {"kind": "distserve_decode"}},
     "policy.kind: vllm runs only as colocated instances, not on the prefill side"),
    ({"cluster": {"topology": "disaggregated", "prefill": {}, "decode": {}},
      "policy": {"kind": "distserve_prefill"}, "decode_policy": {"kind": "distserve_prefill"}},
     "decode_policy.kind: distserve_prefill runs only as prefill instances, not on the decode"),
])
def test_a_policy_outside_its_roles_is_one_line(sections, fragment):
    with pytest.raises(InputError) as e:
        tiny_scenario(**sections)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_check_describes_each_side_of_a_disaggregated_cluster():
    proc = subprocess.run([sys.executable, "-m", "llmsim", "check",
                           "scenarios/bucketserve-mixed.yaml"], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "P 2 x TP1 bucketserve + D 2 x TP1 distserve_decode" in text
    assert "KV capacity prefill 12784, decode 12784 tokens" in text


def test_shipped_scenarios_use_the_current_names():
    from llmsim.scenario import load_scenario

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        for path in sorted((REPO / "scenarios").rglob("*.yaml")):
            if "sweeps" not in path.parts:
                try:
                    load_scenario(path)
                except InputError as e:  # a real trace absent here is not this test's concern
                    assert "not found" in str(e), e


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_a_policy_with_its_own_queues_counts_them_as_outstanding(policy):
    """The base counts waiting + swapped + running directly (routing asks it per arrival per
    instance): a policy that redefines its waiting or running views redefines that count."""
    defines = {n for klass in policy.__mro__[:-1] if klass.__name__ != "Policy"
               for n in vars(klass)}
    if {"num_waiting", "num_running"} & defines:
        assert "num_outstanding" in defines
