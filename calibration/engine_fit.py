"""A real engine's own step cost, fitted from steps it logged.

Two engines of transformers 5.17 / torch 2.11:
- ``hf_cb``: the continuous-batching engine. Its ``paged|sdpa`` attention runs the whole batch
  as one masked SDPA call, so its cost grows with (query tokens x KV tokens in the batch).
  ``hf_cb_graph``: the same engine with CUDA graphs, priced on the padded shape its graphs run
  (``step_logs.padded``), a new graph captured per ``step_logs.graph_shape``;
  ``hf_cb_parts`` / ``hf_cb_graph_parts``: either assembled from measured parts.
- ``hf_generate``: ``model.generate`` on left-padded static batches (masked SDPA per row).

Both pay an attention *plan build* for every attention shape the process has not run before:
on H100/H200 torch prefers cuDNN for masked SDPA, and cuDNN builds an execution graph per new
(batch, query, KV) shape and caches it for the process (measured by
``calibration/generate_steps.py``: ~75 ms per new shape on H100, ~45 ms on H200, where a cached
decode step of 16 rows costs ~25 ms). The continuous-batching engine almost never repeats a
shape (its KV total grows every step); a static batch repeats one only where an earlier batch
had the same padded length. So a step's cost is a function (``step_forms``: ``linear`` or
``hinge``) of (requests, query tokens, KV tokens, attention pairs / 1e6, [shape not built
yet]), with ``attention_pairs`` = rows x query x KV of the SDPA call. Fitted by non-negative
least squares on relative error (every run the same weight, spread over its steps), then
rescaled so the fitted steps' total time is unbiased (a request's TPOT and E2E are sums of
steps). The plan cache is state of one engine process: ``for_instance`` gives each simulated
instance its own, and the instance reports which steps really ran (``advance``) so a decode
run cut short builds nothing it did not run. Both costs are host-CPU work and hosts of one GPU kind differ by up to ~30%:
``host_scale`` multiplies every step (``step_fit.host_scale()`` measures it from logged
steps). The fitting itself is ``calibration.step_fit``.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from calibration.step_fit import past
from calibration.step_forms import (
    NEW_SHAPE_INDEX,
    TERMS,
    coef_of,
    form_of,
    predict,
    scaled,
    width_of,
)
from calibration.step_logs import Shape, graph_shape, packed_shape, padded
from llmsim.errors import InputError
from llmsim.latency.base import LatencyConfigBase, LatencyModel, StepShape
from llmsim.latency.domain import Domain
from llmsim.latency.registry import register
from llmsim.models.specs import GPUSpec, ModelSpec

FIT_FILE = "engine_step_fit.json"
# the engine variant assembled from measured parts that stands in for each whole-step fit
PARTS_OF = {"hf_cb": "hf_cb_parts", "hf_cb_graph": "hf_cb_graph_parts"}
ENGINE_FITS = Path(__file__).resolve().parent / "engine_fits"  # <gpu>/<model>/ step logs + fits


def fits_root(cfg_dir: str | None = None) -> Path:
    return Path(cfg_dir) if cfg_dir else ENGINE_FITS


class EngineFitConfig(LatencyConfigBase):
    kind: Literal["engine_fit"] = "engine_fit"
    engine: Literal["hf_cb", "hf_cb_graph", "hf_cb_parts", "hf_cb_graph_parts",
                    "hf_generate"] = Field(
        "hf_cb", description="which engine's step log the fit came from: continuous batching "
                             "eager (hf_cb) or with CUDA graphs (hf_cb_graph), generate; or "
                             "assembled from measured parts: hf_cb_parts (eager), "
                             "hf_cb_graph_parts (graph mode)")
    fits_dir: str | None = Field(None, description="fitted engine models, default: calibration/engine_fits")
    plan_cache: Literal["cold", "warm"] = Field(
        "cold", description="cold: the engine process starts with no attention plans built; "
                            "warm: every shape was built before (a long-running server)")
    host_scale: float = Field(1.0, gt=0, description="multiplies every step: this host's speed "
                                                       "relative to the runs the fit came from")
    prebuilt_shapes: list[tuple[int, int, int]] = Field(
        default_factory=list, description="(rows, query, kv) attention shapes an earlier run in "
                                          "the same process already built")


def attention_shape(shape: StepShape) -> Shape:
    """The SDPA call a step makes: padded steps run ``rows`` rows of one padded length (a
    prefill row attends over its own prompt, a decode row over its context); unpadded steps are
    packed into one row of all query tokens over all KV tokens read."""
    if shape.padded:
        if shape.prefill_chunks:
            s = shape.prefill_chunks[0][0]
            return len(shape.prefill_chunks), s, s
        return shape.num_decode_seqs, 1, shape.decode_context_max
    _, q, kv = _totals(shape)
    return packed_shape(q, kv)


def _totals(shape: StepShape) -> tuple[int, int, int]:
    q = shape.num_prefill_tokens + shape.num_decode_seqs
    kv = sum(c + n for n, c in shape.prefill_chunks) + shape.decode_context_sum
    return len(shape.prefill_chunks) + shape.num_decode_seqs, q, kv


def shape_features(shape: StepShape) -> tuple[int, int, int, int]:
    """(requests, query tokens, KV tokens read incl. the new ones, attention pairs) of a step."""
    rows, q_row, kv_row = attention_shape(shape)
    return (*_totals(shape), rows * q_row * kv_row)


def _longest_row(shape: StepShape) -> int:
    """The KV of the step's longest row, its new tokens included."""
    return max(shape.decode_context_max, max((n + c for n, c in shape.prefill_chunks), default=0))


def _kv_growth(shape: StepShape) -> int:
    """How much a decode run's attention KV grows per step: per row (padded) or in all."""
    return 1 if shape.padded else shape.num_decode_seqs


@register
class EngineFitLatency(LatencyModel):
    kind = "engine_fit"
    Config = EngineFitConfig

    def __init__(self, model_spec: ModelSpec | str, gpu_spec: GPUSpec | str, tp: int,
                 cfg: EngineFitConfig) -> None:
        # the fit is keyed by names: a spec or its name will do
        model = model_spec if isinstance(model_spec, str) else model_spec.name
        gpu = gpu_spec if isinstance(gpu_spec, str) else gpu_spec.name
        if tp != 1:
            raise InputError(f"latency.kind engine_fit: fitted at TP 1 only (got tp={tp})")
        path = fits_root(cfg.fits_dir) / gpu / model / FIT_FILE
        if not path.exists():
            raise InputError(f"latency.kind engine_fit: no fitted engine profile for {gpu}/{model} "
                             f"({path}); run `llmsim-lab fit-engine`")
        fits = json.loads(path.read_text())
        engine, notes = cfg.engine, []
        if engine not in fits and PARTS_OF.get(engine) in fits:
            # no run of this variant to fit whole steps on: the model assembled from parts
            engine = PARTS_OF[engine]
            notes.append(f"no {cfg.engine} step fit for {gpu}/{model}: priced by {engine} "
                         f"(assembled from measured parts)")
        if engine not in fits:
            raise InputError(f"latency.engine: {cfg.engine!r} not in {path} ({sorted(fits)})")
        if form_of(fits[engine]) not in TERMS:
            raise InputError(f"{path}: {engine}.form {form_of(fits[engine])!r} is not "
                             f"one of {sorted(TERMS)}")
        fit = scaled(fits[engine], cfg.host_scale)
        self.form, self.width_s = form_of(fit), width_of(fit)
        coef = coef_of(fit)
        i_new = NEW_SHAPE_INDEX[self.form]
        self.new_shape_s = 0.0 if cfg.plan_cache == "warm" else float(coef[i_new])
        coef[i_new] = 0.0  # charged per shape by the plan cache below
        self.coef = coef
        # steps past the range the main fit saw are priced by the part fitted there (the
        # engine-grid runs), which keeps its own plan cost
        self._beyond = None
        if "beyond" in fit:
            b = fit["beyond"]
            bcoef = coef_of(b)
            new_b = 0.0 if cfg.plan_cache == "warm" else float(bcoef[NEW_SHAPE_INDEX[form_of(b)]])
            bcoef[NEW_SHAPE_INDEX[form_of(b)]] = 0.0
            self._beyond = (form_of(b), bcoef, width_of(b), new_b,
                            fit.get("fitted_domain", fit["domain"]))
        self.built: set[Shape] = {tuple(s) for s in cfg.prebuilt_shapes}
        self.engine = engine
        self.graph = engine in ("hf_cb_graph", "hf_cb_graph_parts")
        self.padded = bool(fit.get("graph_padded"))  # priced on the graph's padded shape
        self.path = path
        runs = fit.get("source_runs") or [fit.get("source", "")]
        donor = fit.get("parts", {}).get("host_from")  # its runs are the donor model's
        about = (f"{engine}: parts runs of {gpu}/{model}, replay host part from {len(runs)} "
                 f"graph run(s) of {gpu}/{donor}" if donor else
                 f"{len(runs)} logged {engine} run(s) of {gpu}/{model}")
        self._domain = Domain(fit["domain"], about, tuple(notes + fit.get("domain_notes", []))
                              ) if "domain" in fit else None

    def source(self) -> str:
        return (f"engine_fit {self.engine} ({self.form}): fitted to real engine steps "
                f"({self.path.parent.parent.name}/{self.path.parent.name}/{self.path.name})")

    def domain(self) -> Domain | None:
        return self._domain

    def for_instance(self) -> EngineFitLatency:
        """Each engine process has its own plan cache."""
        inst = copy.copy(self)
        inst.built = set(self.built)
        return inst


    def _cost(self, n, q, k, pairs):
        t = predict(self.form, self.coef, self.width_s, n, q, k, pairs / 1e6, 0.0)
        if self._beyond is None:
            return t
        form, coef, width, _, domain = self._beyond
        out = past(domain, n, q, k)
        if not np.any(out):
            return t
        return np.where(out, predict(form, coef, width, n, q, k, pairs / 1e6, 0.0), t)

    def _plan_s(self, n, q, k) -> float | np.ndarray:
        """The plan-build cost of a new shape: the main fit's, or the far part's past its range."""
        if self._beyond is None:
            return self.new_shape_s
        return np.where(past(self._beyond[4], n, q, k), self._beyond[3], self.new_shape_s)

    def step_time_s(self, shape: StepShape) -> float:
        n, q, k, pairs = shape_features(shape)
        if self.padded:
            q, k, pairs = padded(q, k)
        t = self._cost(n, q, k, pairs)
        if self.new_shape_s and self._key(shape) not in self.built:
            t = t + self._plan_s(n, q, k)
        return float(t)

    def _key(self, shape: StepShape) -> Shape:
        """What a new step must build: its attention plan (eager) or its graph (graph mode)."""
        if self.graph:
            _, q, kv = _totals(shape)
            return graph_shape(q, kv, _longest_row(shape))
        return attention_shape(shape)

    def _run_keys(self, shape: StepShape, num_steps: int) -> list[Shape]:
        if self.graph:  # a decode run keeps its query size; its KV may cross a padding step
            _, q, kv = _totals(shape)
            row = _longest_row(shape)
            return [graph_shape(q, kv + i * shape.num_decode_seqs, row + i)
                    for i in range(num_steps)]
        rows, q, kv = attention_shape(shape)
        grow = _kv_growth(shape)
        return [(rows, q, kv + i * grow) for i in range(num_steps)]

    def decode_run_step_times_s(self, shape: StepShape, num_steps: int) -> np.ndarray:
        n, q, k = _totals(shape)
        rows, q_row, kv_row = attention_shape(shape)
        i = np.arange(num_steps)
        grow = _kv_growth(shape)
        kv = k + i * shape.num_decode_seqs
        if self.padded:
            t = self._cost(n, *padded(q, kv))
        else:
            t = self._cost(n, q, kv, rows * q_row * (kv_row + i * grow))
        if self.new_shape_s:  # set lookups only when the engine has a plan cost at all
            run: set[Shape] = set()
            new = np.zeros(num_steps, dtype=bool)
            for j, key in enumerate(self._run_keys(shape, num_steps)):  # a shape builds once
                new[j] = key not in self.built and key not in run
                run.add(key)
            t = t + new * self._plan_s(n, q, kv)
        return t

    def advance(self, shape: StepShape, num_steps: int) -> None:
        if self.new_shape_s:
            self.built.update(self._run_keys(shape, num_steps))
