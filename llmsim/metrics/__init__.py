"""Flat per-request and per-step records, and pure summary functions over them."""
