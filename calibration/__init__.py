"""Calibration kit: torch GPU microbenchmarks whose CSVs feed ``llmsim.latency.profiled``.

torch is imported only here, never by the simulator package.
"""
