"""GPU power and energy per step, read from NVML's energy counter while whole-model steps
replay from CUDA graphs (random weights, no download), plus the idle draw before and after.
Clocks and power limits are read, never set.

    python -m calibration.power --model llama-3.1-8b --out "$OUT/h200/llama-3.1-8b"

``power.csv``: phase, batch, new tokens per row, context per row, seconds per step, joules per
step, mean watts while replaying (the idle rows: batch 0, seconds = the window).
"""
from __future__ import annotations

import ctypes
import time
from pathlib import Path

import torch

from calibration import graph_steps
from calibration.common import (
    Env,
    as_graph,
    make_env,
    model_main,
    model_spec,
    write_csv,
)
from calibration.whole_model import build_model, layers_that_fit

HEADER = ["phase", "batch", "new_tokens", "context_tokens", "num_layers", "time_s", "energy_j",
          "power_w", "calls"]


class Nvml:
    """NVML through ctypes (no extra package): the total-energy counter (mJ since the driver
    loaded) and the power limit of GPU 0."""

    def __init__(self) -> None:
        self.lib = ctypes.CDLL("libnvidia-ml.so.1")
        if self.lib.nvmlInit_v2() != 0:
            raise RuntimeError("nvmlInit failed")
        self.handle = ctypes.c_void_p()
        if self.lib.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(self.handle)) != 0:
            raise RuntimeError("no NVML handle for GPU 0")

    def energy_j(self) -> float:
        mj = ctypes.c_ulonglong()
        if self.lib.nvmlDeviceGetTotalEnergyConsumption(self.handle, ctypes.byref(mj)) != 0:
            raise RuntimeError("NVML energy counter unsupported")
        return mj.value / 1e3

    def power_limit_w(self) -> float:
        mw = ctypes.c_uint()
        self.lib.nvmlDeviceGetEnforcedPowerLimit(self.handle, ctypes.byref(mw))
        return mw.value / 1e3


class WallMeter:
    """Smoke mode (no GPU): energy reads as zero, so the script's path still runs."""

    def energy_j(self) -> float:
        return 0.0

    def power_limit_w(self) -> float:
        return 0.0


def shapes(env: Env) -> list[tuple[str, int, int, int]]:
    if env.smoke:
        return [("prefill", 1, 16, 0), ("decode", 2, 1, 32), ("mixed", 1, 8, 32)]
    return ([("prefill", 1, q, 0) for q in (256, 1024, 4096, 8192)]
            + [("decode", b, 1, 1024) for b in (1, 8, 32, 128, 256)]
            + [("decode", 32, 1, 8192), ("mixed", 1, 512, 4096)])


def measure(fn, meter, seconds: float) -> tuple[int, float, float]:
    """(calls, wall seconds, joules) of calling ``fn`` back to back for about ``seconds``."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    fn()
    sync()
    e0, t0, calls = meter.energy_j(), time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        for _ in range(8):
            fn()
        calls += 8
        sync()
    return calls, time.perf_counter() - t0, meter.energy_j() - e0


def idle_row(meter, seconds: float) -> tuple:
    e0, t0 = meter.energy_j(), time.perf_counter()
    time.sleep(seconds)
    wall, e = time.perf_counter() - t0, meter.energy_j() - e0
    return ("idle", 0, 0, 0, 0, wall, e, e / wall, 0)


@torch.inference_mode()
def run(model: str, out: Path, smoke: bool, seconds: float = 5.0) -> list[Path]:
    env = make_env(smoke)
    meter = Nvml() if env.is_cuda else WallMeter()
    seconds = 0.05 if env.smoke else seconds
    spec = model_spec(model, env)
    rows = [idle_row(meter, 2 * seconds)]
    n_layers = layers_that_fit(spec, env)
    graph_steps.register_attention()
    cfg, lm = build_model(spec, env, n_layers, graph_steps.ATTENTION)
    for phase, b, q, c in shapes(env):
        step = graph_steps.make_step(lm, cfg, env, spec.vocab_size, phase, b, q, c)
        fn = as_graph(step) if env.is_cuda else step
        calls, wall, e = measure(fn, meter, seconds)
        rows.append((phase, b, q, c, n_layers, wall / calls, e / calls, e / wall, calls))
        print(f"{phase} b={b} q={q} c={c}: {wall / calls * 1e3:.2f} ms, {e / calls:.3f} J, "
              f"{e / wall:.0f} W", flush=True)
        step = fn = None
        if env.is_cuda:
            torch.cuda.empty_cache()
    del lm
    if env.is_cuda:
        torch.cuda.empty_cache()
    rows.append(idle_row(meter, 2 * seconds))
    out.mkdir(parents=True, exist_ok=True)
    return [write_csv(out / "power.csv", HEADER, rows),
            write_csv(out / "power_limit.csv", ["quantity", "value"],
                      [("enforced_power_limit_w", meter.power_limit_w())])]


def main() -> None:
    model_main(__doc__, run, option=("--seconds", float, 5.0, "replay window per shape"),
               provenance_name="power")


if __name__ == "__main__":
    main()
