"""Faults while running and writing: a results folder holds one run, whole, or the previous one
untouched; interrupts and full disks are one line; sweeps survive being killed."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import llmsim.metrics.output as output
import llmsim.simulation as simulation
from llmsim.analysis import sweep as sweep_mod
from llmsim.cli import app

SCENARIO = """\
name: f
seed: {seed}
model: llama-2-7b
cluster: {{gpu: a100-40gb, max_model_len: 2048}}
workload:
  kind: synthetic
  num_requests: {n}
  arrival: {{kind: poisson, rate_per_s: 20}}
  prompt_tokens: {{kind: uniform, min_tokens: 50, max_tokens: 400}}
  output_tokens: {{kind: uniform, min_tokens: 10, max_tokens: 200}}
"""


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(SCENARIO.format(seed=0, n=50))
    return tmp_path


def _run(*args):
    return CliRunner().invoke(app, ["run", "s.yaml", "--no-plots", *args])


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _no_stray(folder: Path) -> None:
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], list(folder.iterdir())


def test_a_second_run_replaces_the_first_whole(here):
    assert _run("--out", "r").exit_code == 0
    assert {p.name for p in (here / "r").iterdir()} == {
        "requests.csv", "steps.csv", "summary.json", "scenario.yaml"}
    (here / "r" / "latency_cdf.png").write_text("from an earlier run with plots")
    assert _run("--out", "r", "--set", "seed=1").exit_code == 0
    assert not (here / "r" / "latency_cdf.png").exists()  # nothing of the old run is left
    _no_stray(here)


@pytest.mark.parametrize("stage", ["simulation", "writing"])
def test_an_interrupt_leaves_the_previous_results(here, monkeypatch, stage):
    assert _run("--out", "r").exit_code == 0
    before = _snapshot(here / "r")
    if stage == "simulation":
        def boom(*a, **k):
            raise KeyboardInterrupt
        monkeypatch.setattr(simulation, "simulate", boom)
    else:
        real = output._write

        def half(res, d, plots):
            real(res, d, plots)
            (d / "requests.csv").write_text("request_id,arr")  # cut mid-row
            raise KeyboardInterrupt
        monkeypatch.setattr(output, "_write", half)
    res = _run("--out", "r", "--set", "seed=1")
    assert res.exit_code == 130
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted:") and "left as it was" in lines[0]
    assert _snapshot(here / "r") == before
    _no_stray(here)


@pytest.mark.parametrize("code,fragment", [(errno.ENOSPC, "no space left"),
                                           (errno.EACCES, "not writable"),
                                           (errno.EROFS, "not writable")])
def test_a_failed_write_is_one_line_and_changes_nothing(here, monkeypatch, code, fragment):
    assert _run("--out", "r").exit_code == 0
    before = _snapshot(here / "r")
    real = output._write

    def fail(res, d, plots):
        real(res, d, plots)
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(output, "_write", fail)
    res = _run("--out", "r", "--set", "seed=1")
    assert res.exit_code == 2 and res.exception is None or isinstance(res.exception, SystemExit)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and fragment in lines[0] and "left as it was" in lines[0], lines
    assert _snapshot(here / "r") == before
    _no_stray(here)


def test_an_unwritable_place_fails_before_the_run(here, monkeypatch):
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if mode & os.W_OK
                        else real(p, mode, **k))
    ran = []
    monkeypatch.setattr(simulation, "simulate", lambda *a, **k: ran.append(1))
    res = _run("--out", "r")
    assert res.exit_code == 2 and "not writable" in res.stderr and not ran
    assert not (here / "r").exists()


@pytest.mark.slow
def test_sigkill_while_writing_never_leaves_a_mixed_folder(tmp_path):
    """Kill -9 at several moments of a run that rewrites a folder: the folder is always one
    whole run (the old or the new), never parts of both."""
    (tmp_path / "s.yaml").write_text(SCENARIO.format(seed=0, n=3000))
    cmd = [sys.executable, "-m", "llmsim", "run", "s.yaml", "--out", "r"]
    subprocess.run(cmd + ["--no-plots"], cwd=tmp_path, check=True, capture_output=True)
    old = _snapshot(tmp_path / "r")
    for delay in (0.8, 1.2, 1.6, 2.0, 2.4):
        p = subprocess.Popen(cmd + ["--set", "seed=1"], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        now = _snapshot(tmp_path / "r")
        if now != old:  # it finished: a whole new run
            assert set(now) >= {"requests.csv", "steps.csv", "summary.json", "scenario.yaml"}
            assert "seed: 1" in now["scenario.yaml"].decode()
            assert len(pd.read_csv(tmp_path / "r" / "requests.csv")) == 3000
            json.loads(now["summary.json"])
            old = now


SWEEP = "scenario: s.yaml\ngrid:\n  seed: [0, 1, 2, 3, 4, 5]\n  policy.kind: [vllm, sarathi]\n"


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find worker processes")
@pytest.mark.parametrize("workers", [1, 2])
def test_a_killed_sweep_resumes_to_the_same_table_without_orphans(tmp_path, workers):
    (tmp_path / "s.yaml").write_text(SCENARIO.format(seed=0, n=400))
    (tmp_path / "sw.yaml").write_text(SWEEP)
    cmd = [sys.executable, "-m", "llmsim", "sweep", "sw.yaml", "--workers", str(workers)]
    subprocess.run(cmd + ["--out", "a"], cwd=tmp_path, check=True, capture_output=True)
    p = subprocess.Popen(cmd + ["--out", "b"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not list((tmp_path / "b").glob("runs/*/summary.json")):
        time.sleep(0.05)
    kids = _children(p.pid)
    p.send_signal(signal.SIGKILL)
    p.wait()
    time.sleep(1.5)
    alive = [k for k in kids if Path(f"/proc/{k}").exists()
             and "Z" not in Path(f"/proc/{k}/stat").read_text().rsplit(")", 1)[1].split()[0]]
    assert not alive, f"orphan workers: {alive}"
    assert not (tmp_path / "b" / "sweep.parquet").exists()
    # a finished point whose summary was cut to nothing is simulated again, not trusted
    done = sorted((tmp_path / "b").glob("runs/*/summary.json"))
    done[0].write_text("")
    subprocess.run(cmd + ["--out", "b"], cwd=tmp_path, check=True, capture_output=True)
    a = pd.read_parquet(tmp_path / "a" / "sweep.parquet").drop(columns="provenance.wall_s")
    b = pd.read_parquet(tmp_path / "b" / "sweep.parquet").drop(columns="provenance.wall_s")
    pd.testing.assert_frame_equal(a, b)  # every metric; only each run's wall time may differ


def test_duplicate_grid_points_run_once(here):
    (here / "dup.yaml").write_text("scenario: s.yaml\ngrid:\n  seed: [0, 0, 1]\n")
    cfg, base = sweep_mod.load_sweep(here / "dup.yaml")
    table, ran = sweep_mod.run_sweep(cfg, base, here / "out", workers=2)
    assert ran == 2 and len(table) == 3
    assert table.iloc[0].drop("axis.seed").equals(table.iloc[1].drop("axis.seed"))


def test_a_zero_byte_summary_is_not_a_finished_point(here):
    (here / "sw.yaml").write_text("scenario: s.yaml\ngrid:\n  seed: [0]\n")
    cfg, base = sweep_mod.load_sweep(here / "sw.yaml")
    table, _ = sweep_mod.run_sweep(cfg, base, here / "out", workers=1)
    (summary,) = (here / "out").glob("runs/*/summary.json")
    summary.write_text("")
    table2, ran = sweep_mod.run_sweep(cfg, base, here / "out", workers=1)
    assert ran == 1
    metrics = [c for c in table.columns if c != "provenance.wall_s"]  # the one that may differ
    pd.testing.assert_frame_equal(table[metrics], table2[metrics])


def test_what_a_killed_writer_left_is_cleared_by_the_next_run(here):
    dead = 2**22 + 12345  # above the default pid_max: no such process
    stale = [here / f".r.writing-{dead}-abc", here / f".r.old-{dead}-abcdefgh"]
    for p in stale:
        p.mkdir()
        (p / "requests.csv").write_text("partial")
    keep = here / f".r.writing-{os.getpid()}-live"  # a live writer's folder is not touched
    keep.mkdir()
    assert _run("--out", "r").exit_code == 0
    assert not any(p.exists() for p in stale) and keep.exists()
