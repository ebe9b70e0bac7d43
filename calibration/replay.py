"""Real-engine runs for fidelity checks: replay a trace through transformers'
continuous-batching engine, or run a closed set as left-padded static batches through
``model.generate``; record per-request times, per-step batch composition and times, and the
engine's resolved configuration. Random weights built from a config: nothing is downloaded.

    python -m calibration.replay --plan calibration/validation/plan.yaml --out "$OUT" [--smoke]

Every case of the plan writes ``<out>/<gpu>/<case>/{requests.csv, steps.csv, case.json}``.
The engine's API moved between transformers releases; everything read from it goes through
``getattr`` with a fallback so a renamed field costs a column, not the run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
import traceback
from pathlib import Path

import torch
import yaml

from calibration.cb_engine import STEP_LOG, build_model, cb_config, install_hooks, resolved_config
from calibration.common import (
    make_env,
    prompt_with_prefix,
    provenance,
    random_prompt,
    read_trace,
    write_csv,
    write_provenance,
)
from calibration.forward_probe import COLUMNS as FORWARD_COLUMNS
from calibration.forward_probe import ForwardProbe
from calibration.forward_trace import COLUMNS as TRACE_COLUMNS
from calibration.forward_trace import ForwardTrace
from calibration.host_probe import host_probe
from calibration.host_sampler import Samplers
from calibration.static_harness import run_static
from calibration.step_probe import COLUMNS as PROBE_COLUMNS
from calibration.step_probe import PROBE
from calibration.warmup import WARMUP_NEW_TOKENS, WARMUP_PROMPT_TOKENS, WARMUP_REQUESTS


def run_cb(case: dict, lm, spec, env, out: Path) -> None:
    trace = read_trace(Path(case["trace"]), case.get("limit"))
    gen = torch.Generator().manual_seed(1)
    prompts = [prompt_with_prefix(r, spec.vocab_size, gen) for r in trace]
    gen_cfg, cb_cfg, knobs = cb_config(case)
    kwargs = dict(generation_config=gen_cfg)
    fprobe = ftrace = None
    if case.get("parts") == "trace" and not knobs.get("use_cuda_graph"):  # any device
        ftrace = ForwardTrace(STEP_LOG, int(case.get("trace_every", 8)))
        ftrace.install(lm)  # before the engine is built: it may bind lm.forward
    elif case.get("parts") and env.is_cuda and not knobs.get("use_cuda_graph"):
        fprobe = ForwardProbe(STEP_LOG)
        fprobe.install(lm)
    if cb_cfg is not None:
        kwargs["continuous_batching_config"] = cb_cfg
    # the paged-attention name differs between releases: try the documented ones in turn
    for attn in (case.get("attn_implementation"), "paged|sdpa", "sdpa_paged", "sdpa"):
        if attn is None:
            continue
        try:
            lm.set_attn_implementation(attn) if hasattr(lm, "set_attn_implementation") else None
            lm.config._attn_implementation = attn
            manager = lm.init_continuous_batching(**kwargs)
            break
        except (ValueError, KeyError) as e:
            print(f"attn {attn!r} refused: {e}", flush=True)
    else:
        raise RuntimeError("no paged attention implementation accepted")
    PROBE.install()  # after the engine imported its attention module
    manager.start()
    submitted: dict[str, float] = {}
    results: dict[str, object] = {}

    def collect(expected: int) -> None:
        while len(results) < expected:
            r = manager.get_result(timeout=1.0)
            if r is not None and r.request_id in submitted:
                results[r.request_id] = (r, time.perf_counter())

    # warm-up outside the timed window (first steps pay allocation and kernel selection)
    for i in range(WARMUP_REQUESTS):
        rid = f"warm{i}"
        submitted[rid] = 0.0
        manager.add_request(random_prompt(WARMUP_PROMPT_TOKENS, spec.vocab_size, gen),
                            request_id=rid, max_new_tokens=WARMUP_NEW_TOKENS, eos_token_id=-1,
                            record_timestamps=True)
    collect(WARMUP_REQUESTS)
    results.clear()
    submitted.clear()
    STEP_LOG.clear()
    collector = threading.Thread(target=collect, args=(len(trace),), daemon=True)
    collector.start()
    t0 = time.perf_counter()
    for i, (r, ids) in enumerate(zip(trace, prompts)):
        delay = t0 + r["arrival_s"] - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        rid = f"r{i}"
        submitted[rid] = time.perf_counter()
        manager.add_request(ids, request_id=rid, max_new_tokens=r["output_tokens"], eos_token_id=-1,
                            record_timestamps=True)
    collector.join(timeout=case.get("timeout_s", 300))
    resolved = resolved_config(manager)
    manager.stop(block=True)
    rows = []
    for i, r in enumerate(trace):
        rid = f"r{i}"
        res, got = results.get(rid, (None, float("nan")))
        ts = list(getattr(res, "timestamps", None) or [])
        span = getattr(res, "lifespan", (-1, -1)) or (-1, -1)
        rows.append((rid, r["arrival_s"], submitted[rid] - t0, r["prompt_tokens"], r["output_tokens"],
                     len(getattr(res, "generated_tokens", []) or []),
                     (span[0] - t0) if span[0] > 0 else float("nan"),
                     (ts[0] - t0) if ts else float("nan"),
                     (ts[-1] - t0) if ts else float("nan"),
                     (span[1] - t0) if span[1] > 0 else float("nan"), got - t0,
                     getattr(res, "error", None) or "",
                     " ".join(map(str, r["prefix_ids"])), r["prefix_block_tokens"]))
    write_csv(out / "requests.csv", ["request_id", "trace_arrival_s", "arrival_s", "prompt_tokens",
                                     "output_tokens", "generated_tokens", "start_s",
                                     "first_token_s", "last_token_s", "finish_s", "returned_s",
                                     "error", "prefix_ids", "prefix_block_tokens"], rows)
    steps = [(i, s["t_schedule"] - t0, s.get("t_end", float("nan")) - t0, len(s["reqs"]),
              sum(q for q, _ in s["reqs"]), sum(1 for q, _ in s["reqs"] if q == 1),
              sum(max(p, 0) + q for q, p in s["reqs"]), max((max(p, 0) + q for q, p in s["reqs"]), default=0),
              json.dumps(s["reqs"], separators=(",", ":")),
              s.get("t_scheduled", float("nan")) - t0, s.get("t_update", float("nan")) - t0,
              *(s.get(c, float("nan")) for c in PROBE_COLUMNS))
             for i, s in enumerate(STEP_LOG)]
    header = ["step", "schedule_s", "end_s", "num_requests", "query_tokens", "num_decode",
              "kv_tokens", "max_kv_tokens", "requests_q_pos", "scheduled_s", "update_s",
              *PROBE_COLUMNS]
    if fprobe is not None:
        steps = [row + ForwardProbe.columns(s, t0) for row, s in zip(steps, STEP_LOG)]
        header += FORWARD_COLUMNS
        del lm.forward  # the class's own forward again
        print(f"forward probe: {fprobe.calls} calls over {len(STEP_LOG)} steps", flush=True)
    if ftrace is not None:
        steps = [row + ForwardTrace.columns(s) for row, s in zip(steps, STEP_LOG)]
        header += TRACE_COLUMNS
        del lm.forward
        traced = sum("trace" in s for s in STEP_LOG)
        print(f"forward trace: {traced} of {len(STEP_LOG)} steps traced", flush=True)
    write_csv(out / "steps.csv", header, steps)
    info = dict(case=case, knobs_set=knobs, resolved=resolved, t0_perf_s=t0,
                forward_probe=None if fprobe is None else {"calls": fprobe.calls,
                                                           "cycles_per_s": fprobe.cycles_per_s},
                forward_trace=None if ftrace is None else {
                    "every": ftrace.every, "traced": traced},
                attn_implementation=getattr(lm.config, "_attn_implementation", None))
    (out / "case.json").write_text(json.dumps(info, indent=2, default=str) + "\n")


def _session_id() -> str:
    """When and on which boot of which machine this replay started."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        boot = "noboot"
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + boot


def _probe(lm, spec, env) -> dict | None:
    """The host's speed, measured after the case (its plans stay as the case left them): see
    ``calibration/host_probe.py``. A failed probe costs the field, not the run."""
    try:
        if hasattr(lm, "set_attn_implementation"):
            lm.set_attn_implementation("sdpa")
        lm.config._attn_implementation = "sdpa"
        return host_probe(lm, spec, env)
    except Exception:
        traceback.print_exc()
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--only", nargs="*", help="case names to run")
    ap.add_argument("--budget-s", type=float, default=1e9)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--pack", type=Path, help="append each finished case to this .tar")
    ap.add_argument("--same-process", action="store_true",
                    help="run every case in this process (default: each in a fresh one)")
    a = ap.parse_args()
    plan = yaml.safe_load(a.plan.read_text())
    names = [c["name"] for c in plan["cases"] if not a.only or c["name"] in a.only]
    # one invocation on one machine is one session: llmsim fits a case on its session's other
    # runs (the host's speed differs between sessions by up to ~30%)
    os.environ.setdefault("LLMSIM_SESSION", _session_id())
    if not a.same_process and len(names) > 1:
        # torch caches an attention plan per shape for the life of a process (cuDNN SDPA on
        # Hopper): a case run after another would start with that one's plans built
        t_start = time.time()
        for name in names:
            if time.time() - t_start > a.budget_s:
                print("SKIP", name, "(budget)", flush=True)
                continue
            cmd = [sys.executable, "-m", "calibration.replay", "--plan", str(a.plan), "--out",
                   str(a.out), "--only", name, "--same-process"]
            cmd += (["--smoke"] if a.smoke else []) + (["--pack", str(a.pack)] if a.pack else [])
            subprocess.run(cmd, check=False)
        return
    env = make_env(a.smoke)
    print(f"torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
          f"affinity {len(os.sched_getaffinity(0))}", flush=True)
    gpu = "cpu" if not env.is_cuda else next(
        (g for g in ("h200", "h100") if g in torch.cuda.get_device_name(0).lower()), "gpu")
    hooks = install_hooks()
    t_start, models, ran = time.time(), {}, []
    for case in plan["cases"]:
        if a.only and case["name"] not in a.only:
            continue
        if a.smoke:
            case = {**case, **plan.get("smoke", {})}
        if time.time() - t_start > a.budget_s:
            print("SKIP", case["name"], "(budget)", flush=True)
            continue
        d = a.out / gpu / case["name"]
        d.mkdir(parents=True, exist_ok=True)
        t = time.time()
        try:
            if case["model"] not in models:
                models.clear()
                if env.is_cuda:
                    torch.cuda.empty_cache()
                models[case["model"]] = build_model(case["model"], env)
            spec, lm = models[case["model"]]
            sampler = Samplers(d / "host_samples.csv")
            try:
                with torch.inference_mode():
                    (run_cb if case["kind"] == "cb" else run_static)(case, lm, spec, env, d)
            finally:
                sampler.terminate()
        except Exception:
            traceback.print_exc()
            print("FAILED", case["name"], flush=True)
            continue
        # what ran before it in this process (its attention plans are cached): the simulator
        # starts this case's engine with them built
        info = json.loads((d / "case.json").read_text())
        info["process"] = {"after": list(ran)}
        info["host_probe"] = _probe(lm, spec, env)
        info["sampler_clock"] = sampler.clock
        info["session"] = os.environ["LLMSIM_SESSION"]
        (d / "case.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
        ran.append(case["name"])
        write_provenance(d / "provenance.json", provenance(
            env, "python -m calibration.replay --plan " + str(a.plan),
            {"case": case["name"], "model": case["model"], "hooks": hooks,
             "seconds": round(time.time() - t, 1)}))
        print(f"DONE {case['name']} in {time.time() - t:.0f}s", flush=True)
        if a.pack:  # append at once: a run cut short by its time limit keeps what finished
            with tarfile.open(a.pack, "a") as tar:
                tar.add(d, arcname=f"{gpu}/{case['name']}")


if __name__ == "__main__":
    main()
