"""llmsim's calibration and validation lab (``llmsim-lab``), beside the simulator.

GPU microbenchmarks (torch, run on the device machines) whose CSVs become the measured profiles
shipped in ``llmsim/profiles``; fitted models of one real engine's step cost (``engine_fit``,
registered as a latency model); and llmsim scored against real engine runs. Depends on llmsim,
never the other way round; torch is imported only by the GPU scripts.
"""
