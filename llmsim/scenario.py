"""The scenario: typed config validated once, at the edge. The only YAML reader."""
from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from llmsim.config_base import StrictModel, walk_loc
from llmsim.errors import InputError
from llmsim.latency.base import LatencyConfigBase
from llmsim.latency.registry import config_class, latency_kinds
from llmsim.latency.roofline import RooflineConfig
from llmsim.models.specs import ModelSpec
from llmsim.policies import BY_NAME, POLICIES, PolicyConfig, PolicyConfigBase
from llmsim.policies.vllm import VLLMConfig
from llmsim.scenario_sections import (  # noqa: F401 (MAX_INSTANCES, config_path: from here too)
    MAX_INSTANCES,
    ClusterConfig,
    KVCacheConfig,
    SideConfig,
    SimulationConfig,
    SLOConfig,
    config_path,
    role_of,
)
from llmsim.workload.config import WorkloadConfig
from llmsim.workload.predictor import PredictorConfig
from llmsim.yaml_io import parse_yaml, read_text


def latency_config(data: Any) -> LatencyConfigBase:
    """The ``latency:`` section as the config of the registered cost model its ``kind`` names."""
    if isinstance(data, LatencyConfigBase):
        return data
    if not isinstance(data, dict):
        raise ValueError("expected a mapping with a kind")
    kind = data.get("kind", "roofline")
    try:
        cls = config_class(kind)
    except (KeyError, TypeError):
        raise ValueError(f"unknown kind {kind!r}; registered: "
                         f"{', '.join(latency_kinds())}") from None
    return cls.model_validate(data)


class Scenario(StrictModel):
    name: str = "scenario"
    seed: int = Field(0, ge=0, description="one seed for every random draw of the run")
    model: str | ModelSpec = "llama-3.1-8b"
    cluster: ClusterConfig = ClusterConfig()
    kv_cache: KVCacheConfig = KVCacheConfig()
    policy: PolicyConfig = VLLMConfig()
    decode_policy: PolicyConfig | None = Field(None, description="disaggregated: decode side")
    latency: SerializeAsAny[LatencyConfigBase] = Field(
        RooflineConfig(), description="the cost model: a registered kind and its knobs")
    workload: WorkloadConfig
    slo: SLOConfig = SLOConfig()
    predictor: PredictorConfig = PredictorConfig()
    simulation: SimulationConfig = SimulationConfig()
    base_dir: Path = Field(Path("."), exclude=True, description="where relative paths resolve")

    @field_validator("latency", mode="before")
    @classmethod
    def _latency_kind(cls, v: Any) -> LatencyConfigBase:
        return latency_config(v)

    @model_validator(mode="after")
    def _topology_is_complete(self) -> Scenario:
        c = self.cluster
        if c.groups is not None:
            # (set to other than 1: a dumped scenario states the defaults)
            fixed = [k for k in ("num_instances", "tp", "pp") if getattr(c, k) != 1]
            if c.topology != "colocated" or fixed:
                raise ValueError("cluster.groups: colocated instance groups replace "
                                 "cluster.num_instances/tp/pp" + (f" (remove cluster.{fixed[0]})"
                                 if fixed else "; a disaggregated cluster sets each side"))
        if c.topology == "disaggregated":
            if c.prefill is None or c.decode is None or self.decode_policy is None:
                raise ValueError("topology disaggregated needs cluster.prefill, cluster.decode "
                                 "and decode_policy")
        elif c.prefill is not None or c.decode is not None or self.decode_policy is not None:
            raise ValueError("cluster.prefill/decode and decode_policy need topology: disaggregated")
        for group, cfg in self.policies.items():
            _check_role(role_of(group), cfg)
        offload = getattr(self.policy, "offload", "none")
        if offload != "none" and c.host is None:
            raise ValueError(f"policy.offload={offload} needs cluster.host "
                             "(host cores and DRAM), or set policy.offload: none")
        if getattr(self.policy, "cap_from_prediction", False) and self.predictor.kind == "none":
            raise ValueError("policy.cap_from_prediction caps each group at its predicted "
                             "lengths: set predictor.kind (oracle, bucketed or trace)")
        if c.cpu_engines is not None and c.topology != "colocated":
            raise ValueError("cluster.cpu_engines needs topology: colocated")
        if self.kv_cache.prefix_caching:
            _check_prefix_caching(self.policies)
        else:
            for tier in ("host_prefix_cache_gib", "disk_prefix_cache_gib"):
                if getattr(self.kv_cache, tier):
                    raise ValueError(f"kv_cache.{tier}: a tier of the prefix cache; set "
                                     "kv_cache.prefix_caching: true")
        return self

    @property
    def sides(self) -> dict[str, SideConfig]:
        """The instance groups: ``colocated`` (or ``colocated.0``, ``colocated.1``, ... for
        ``cluster.groups``), or ``prefill`` and ``decode``; ``role_of`` names a group's role."""
        c = self.cluster
        if c.groups is not None:
            return {f"colocated.{i}": g for i, g in enumerate(c.groups)}
        if c.topology == "colocated":
            return {"colocated": SideConfig(num_instances=c.num_instances, tp=c.tp, pp=c.pp)}
        assert c.prefill is not None and c.decode is not None  # checked at validation
        return {"prefill": c.prefill, "decode": c.decode}

    @property
    def policies(self) -> dict[str, PolicyConfigBase]:
        """The policy of each group (``sides``)."""
        out: dict[str, PolicyConfigBase] = {}
        for g in self.sides:
            cfg = self.decode_policy if role_of(g) == "decode" else self.policy
            assert cfg is not None  # checked at validation
            out[g] = cfg
        return out

    @property
    def num_gpus(self) -> int:  # CPU-only engines use no GPU
        return sum(s.num_instances * s.tp * s.pp for s in self.sides.values())


def _check_role(role: str, cfg: PolicyConfigBase) -> None:
    """A policy runs only where it declares it can (``Policy.roles``)."""
    policy = BY_NAME[cfg.kind]
    if role in policy.roles:
        return
    field = "decode_policy" if role == "decode" else "policy"
    can = [p.name for p in POLICIES if role in p.roles]
    where = "colocated clusters" if role == "colocated" else f"the {role} side"
    runs_as = " or ".join(sorted(policy.roles))
    raise ValueError(f"{field}.kind: {cfg.kind} runs only as {runs_as} instances, not on "
                     f"{where} (policies for it: {', '.join(can)})")

def _check_prefix_caching(policies: dict[str, PolicyConfigBase]) -> None:
    """Only policies that admit requests through the prefix-aware KV verbs can use it."""
    for cfg in policies.values():
        if BY_NAME[cfg.kind].roles == frozenset({"decode"}):
            continue  # a decode side receives computed KV: the prefill side caches
        if not BY_NAME[cfg.kind].prefix_caching:
            can = sorted(p.name for p in POLICIES if p.prefix_caching)
            raise ValueError(f"kv_cache.prefix_caching: policy {cfg.kind} cannot use prefix "
                             f"caching yet (policies that can: {', '.join(can)})")
        if getattr(cfg, "preemption_mode", None) == "swap":
            raise ValueError("kv_cache.prefix_caching: shared prefix blocks stay on the GPU; "
                             "use policy.preemption_mode: recompute")

DEFAULT_SCENARIO = "quickstart.yaml"


def default_scenario_text() -> str:
    return resources.files("llmsim.scenarios").joinpath(DEFAULT_SCENARIO).read_text()


def _set_path(data: dict, dotted: str, value: Any) -> None:
    """``a.b.c=v`` into nested mappings (made as needed); an integer key indexes a list
    (``workload.streams.0.arrival.rate_per_s``), within its bounds."""
    keys = dotted.split(".")
    node: Any = data
    for i, k in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, list):
            if not k.lstrip("-").isdigit() or not -len(node) <= int(k) < len(node):
                raise InputError(f"--set {dotted}: {'.'.join(keys[:i]) or k} is a list of "
                                 f"{len(node)}; index it with 0..{len(node) - 1}")
            if last:
                node[int(k)] = value
                return
            node = node[int(k)]
            continue
        if not isinstance(node, dict):
            raise InputError(f"--set {dotted}: {keys[i - 1]} is not a mapping or a list")
        if last:
            node[k] = value
            return
        if node.get(k) is None:
            node[k] = {}
        node = node[k]


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    out = []
    for item in items:
        if "=" not in item:
            raise InputError(f"--set {item!r}: expected key.path=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        out.append((key.strip(), value))
    return out


def _format_error(e: ValidationError, source: str, prefix: str = "",
                  model: type[BaseModel] | None = None) -> str:
    errors = e.errors()
    # a value that may be a name or an inline spec (``str | ModelSpec``): when a mapping was
    # given, the spec's error is the one that says what is wrong
    inline = [x for x in errors if "str" not in x["loc"]]
    err = (inline or errors)[0]
    parts, known = walk_loc(model or Scenario, tuple(err["loc"]))
    loc = ".".join([prefix] * bool(prefix) + parts)
    shown_from = inline or errors
    more = f" (+{len(shown_from) - 1} more)" if len(shown_from) > 1 else ""
    if not loc and err["type"] == "value_error":  # a cross-field check: its message names fields
        return f"{source}: {err['msg'].removeprefix('Value error, ')}{more}"
    inp = err.get("input")
    shown = f"; got {inp!r}" if not isinstance(inp, dict) and err["type"] != "missing" else ""
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field" + _did_you_mean(str(err["loc"][-1]), known)
    return f"{source}: {loc or '(top level)'}: {msg}{shown}{more}"


def _did_you_mean(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=2, cutoff=0.6)
    if close:
        return f"; did you mean {' or '.join(close)}?"
    return f"; known: {', '.join(known)}" if known else ""


def scenario_from_dict(data: Any, source: str, base_dir: Path,
                       overrides: list[str] | None = None) -> Scenario:
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a mapping at the top level")
    for key, value in parse_overrides(overrides or []):
        _set_path(data, key, value)
    if isinstance(data.get("latency"), dict):  # validated apart: errors name latency.<field>
        try:
            data = {**data, "latency": latency_config(data["latency"])}
        except ValidationError as e:
            model = config_class(data["latency"].get("kind", "roofline"))
            raise InputError(_format_error(e, source, prefix="latency", model=model)
                             + _switch_hint(e, overrides)) from None
        except ValueError as e:
            raise InputError(f"{source}: latency.kind: {e}") from None
    try:
        sc = Scenario.model_validate(data)
    except ValidationError as e:
        raise InputError(_format_error(e, source) + _switch_hint(e, overrides)) from None
    return sc.model_copy(update={"base_dir": base_dir})


def _switch_hint(e: ValidationError, overrides: list[str] | None) -> str:
    """``--set policy.kind=X`` keeps the file's knobs of the old kind: say how to replace the
    whole section when one of them is what X does not know."""
    switched = [k for k, _ in parse_overrides(overrides or [])
                if k in ("policy.kind", "decode_policy.kind", "latency.kind")]
    if not switched or e.errors()[0]["type"] != "extra_forbidden":
        return ""
    section = switched[0].split(".")[0]
    return (f" (--set {switched[0]}=... keeps the file's other {section} knobs; replace the "
            f"section: --set '{section}={{kind: ..., <knob>: ...}}')")


def load_scenario(path: str | Path | None = None, overrides: list[str] | None = None) -> Scenario:
    """Read and validate a scenario file (``None``: the embedded quickstart)."""
    if path is None:
        text, source, base_dir = default_scenario_text(), "quickstart.yaml (embedded)", Path.cwd()
    else:
        p = Path(path)
        text, source, base_dir = read_text(p, "scenario file"), str(p), p.resolve().parent
    return scenario_from_dict(parse_yaml(text, source), source, base_dir, overrides)


def dump_scenario(sc: Scenario) -> str:
    return yaml.safe_dump(sc.model_dump(mode="json"), sort_keys=False)
