"""The replay's warm-up before every continuous-batching case (``replay.run_cb``): requests the
engine serves outside the timed window, so its first steps' allocations and kernel choices are
not timed. The simulator needs the same numbers: in CUDA-graph mode the warm-up's steps capture
graphs that the case then replays (``step_logs.warmup_graph_shapes``)."""
WARMUP_REQUESTS, WARMUP_PROMPT_TOKENS, WARMUP_NEW_TOKENS = 4, 64, 8
