"""Trace readers (real files from ../shared when present) and row-level validation errors."""
from __future__ import annotations

import numpy as np
import pytest

from llmsim.errors import InputError
from llmsim.workload.traces import read_trace
from tests.conftest import REPO


def test_azure_conv_reads_all_rows_relative_to_first(shared_traces):
    df = read_trace(shared_traces / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv", "azure")
    assert len(df) == 19366
    assert df["arrival_s"].iloc[0] == 0.0
    assert 3450 < df["arrival_s"].iloc[-1] < 3550  # ~58.4 minutes (PROVENANCE.md)
    assert df["arrival_s"].is_monotonic_increasing
    assert df["prompt_tokens"].mean() == pytest.approx(1154.7, abs=0.1)


def test_mooncake_timestamps_are_milliseconds(shared_traces):
    df = read_trace(shared_traces / "mooncake_fast25" / "conversation_trace.jsonl", "mooncake")
    assert len(df) == 12031
    assert df["arrival_s"].iloc[-1] == pytest.approx(3536.999)


def test_burstgpt_fixture(shared_traces):
    df = read_trace(shared_traces / "burstgpt_head" / "BurstGPT_without_fails_1_head.csv", "burstgpt")
    assert len(df) == 282
    assert df["arrival_s"].iloc[1] == 40.0  # 45 s - 5 s


def test_sharegpt_lengths_drop_empty_prompts(shared_traces):
    df = read_trace(shared_traces / "sharegpt_v3_lengths" / "sharegpt_v3_first_turn_lengths.csv.gz",
                    "sharegpt_lengths")
    assert len(df) == 11135 - 7 and (df["prompt_tokens"] > 0).all()


def test_shipped_traces_are_valid_llmsim_traces():
    for path in (REPO / "traces").rglob("*.csv"):
        df = read_trace(path, "llmsim")
        assert len(df) > 0


@pytest.mark.parametrize("body,msg", [
    ("arrival_s,prompt_tokens,output_tokens\n0,10,5\n1,-3,5\n", "row 3: prompt_tokens"),
    ("arrival_s,prompt_tokens,output_tokens\n0,10,5\n1,,5\n", "row 3: prompt_tokens"),
    ("arrival_s,prompt_tokens,output_tokens\n0,10,5\n1,10,0\n", "row 3: output_tokens"),
    ("arrival_s,prompt_tokens,output_tokens\n0,10,5\n2,10,5\n1,10,5\n", "row 4: arrival_s goes backwards"),
    ("arrival_s,prompt_tokens,output_tokens\n0,10,5\nnan,10,5\n", "row 3: arrival_s is missing"),
    ("arrival_s,prompt_tokens\n0,10\n", "missing column(s) output_tokens"),
    ("arrival_s,prompt_tokens,output_tokens\n", "no requests"),
    ("arrival_s,prompt_tokens,output_tokens,service_class\n0,1,1,gold\n", "row 2: service_class"),
    ("arrival_s,prompt_tokens,output_tokens,predicted_output_tokens\n0,1,1,4\n0,1,1,0\n",
     "row 3: predicted_output_tokens must be an integer"),
    ("arrival_s,prompt_tokens,output_tokens,predicted_output_tokens\n0,1,1,2.5\n",
     "row 2: predicted_output_tokens must be an integer"),
])
def test_bad_rows_name_the_row(tmp_path, body, msg):
    path = tmp_path / "t.csv"
    path.write_text(body)
    with pytest.raises(InputError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        read_trace(path, "llmsim")


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_trace(tmp_path / "nope.csv", "llmsim")


def test_azure_bad_timestamp(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,1,1\nyesterday,1,1\n")
    with pytest.raises(InputError, match="row 3: TIMESTAMP"):
        read_trace(p, "azure")


def test_optional_columns_round_trip(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("arrival_s,prompt_tokens,output_tokens,service_class,priority,ttft_slo_s\n"
                 "5,10,5,best_effort,2,0.5\n6,11,6,latency_sensitive,0,\n")
    df = read_trace(p, "llmsim")
    assert list(df["arrival_s"]) == [0.0, 1.0]
    assert df["service_class"].iloc[0] == "best_effort" and np.isnan(df["ttft_slo_s"].iloc[1])
