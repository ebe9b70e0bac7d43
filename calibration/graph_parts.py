"""The engine in CUDA-graph mode priced from measured parts (``hf_cb_graph_parts``).

A replayed graph runs the same kernels the eager engine launches one by one, on the graph's
padded shape: queries padded to 64, the KV read from the cache padded to 16,384 and the step's
own tokens on top (``step_logs.padded``), every query attending over all of it. Their time
is the GPU part of the eager parts model (``step_parts``: the profiler traces' kernel time);
what a replay adds around them is a little host work (scheduling, batch preparation, the
update; no launches to issue): ``c0 + c_n n``, the only part fitted on graph runs, on their
replayed steps' wall time less the kernels'. A new graph costs the capture measured by the
shape-cost workload. Measured on the H200 graph runs (Llama-3.1-8B): that host part stays
within -3..+9 ms (median per run and step kind) from 16-row to 256-row decodes, 8,192-token
prefills and the chat workload's mixed steps, where the kernels alone, priced on the unpadded
shape, leave 12-32 ms unexplained.
"""
from __future__ import annotations

import numpy as np

from calibration.step_fit import _design, _weights, predict_fit
from calibration.step_forms import PARTS_TERMS, coef_of, width_of

MIN_REPLAYED = 20  # replayed graph steps needed to fit the host part


def graph_parts_fit(eager_parts: dict, steps: list[dict], capture_s: float | None) -> dict | None:
    """``hf_cb_graph_parts``: the GPU side of ``eager_parts`` (a ``parts`` fit) on padded shapes,
    a replay's host part ``c0 + c_n n`` fitted on the replayed graph ``steps`` (least squares of
    relative error, every run the same weight), a new graph ``capture_s`` (measured apart; None:
    the median excess of the steps that captured one). None with too few replayed steps."""
    from scipy.optimize import nnls

    replayed = [s for s in steps if not s["new_shape"]]
    if len(replayed) < MIN_REPLAYED:
        return None
    g = coef_of(eager_parts)
    gpu_only = {"form": "parts", "width_s": width_of(eager_parts), "graph_padded": True,
                "coef_s": [0.0] * 5 + list(g[5:])}  # the kernels' time alone
    t = np.array([s["duration_s"] for s in replayed])
    host_t = t - predict_fit(gpu_only, _design(replayed)[0])
    w = np.sqrt(_weights(replayed)) / t  # runs weigh the same
    x = np.stack([np.ones_like(t), [s["num_requests"] for s in replayed]], axis=1)
    c0, cn = nnls(x * w[:, None], host_t * w)[0]
    # no KV-side host term and no launches; the capture (index 3) is set below
    fit = {"form": "parts", "features": list(PARTS_TERMS), "width_s": width_of(eager_parts),
           "coef_s": [float(c0), float(cn), 0.0, 0.0, 0.0, *(float(c) for c in g[5:])],
           "graph_padded": True, "domain": eager_parts.get("domain")}
    new = [s for s in steps if s["new_shape"]]
    source = "shape-cost runs" if capture_s is not None else "median excess of capture steps"
    if capture_s is None:
        excess = np.array([s["duration_s"] for s in new]) - predict_fit(fit, _design(new)[0])
        capture_s = max(0.0, float(np.median(excess))) if new else 0.0
    fit["coef_s"][3] = float(capture_s)
    err = np.abs(predict_fit(fit, _design(steps)[0]) / np.array([s["duration_s"] for s in steps]) - 1)
    fit["parts"] = {"source": "eager parts' kernels on padded graph shapes, replay host fitted "
                              "on graph runs", "replayed_steps": len(replayed),
                    "capture_steps": len(new), "capture_source": source,
                    "fit_mape": float(err.mean()),
                    "host_s_p10_p50_p90": [float(v) for v in np.percentile(host_t, [10, 50, 90])]}
    return fit


def borrowed_graph_parts(eager_parts: dict, donor: dict, donor_model: str,
                         capture_s: float | None, layer_ratio: float) -> dict:
    """``hf_cb_graph_parts`` of a model no CUDA-graph run was made of: its own eager parts'
    kernels on padded shapes, the replay host part of ``donor`` (``donor_model``'s graph parts
    fit: the engine's scheduling and batch preparation around one graph launch do not depend on
    the model's weights), and a new graph's capture measured for this model where it was
    (``capture_s``), else the donor's scaled by the layer ratio (a capture re-runs and records
    every layer's kernels). The fit names what it borrowed in ``domain_notes``."""
    host = coef_of(donor)
    capture = capture_s if capture_s is not None else float(host[3]) * layer_ratio
    fit = {"form": "parts", "features": list(PARTS_TERMS), "width_s": width_of(eager_parts),
           "coef_s": [float(host[0]), float(host[1]), 0.0, capture, 0.0,
                      *(float(c) for c in coef_of(eager_parts)[5:])],
           "graph_padded": True, "domain": eager_parts.get("domain")}
    how = ("measured for this model" if capture_s is not None else
           f"{donor_model}'s x {layer_ratio:.3f} (layers)")
    fit["parts"] = {"source": f"eager parts' kernels on padded graph shapes, replay host part "
                              f"from {donor_model}'s graph runs", "host_from": donor_model,
                    "capture_source": how}
    fit["domain_notes"] = [f"no CUDA-graph run of this model: the replay's host part is "
                           f"{donor_model}'s and a graph capture is {how}"]
    return fit
