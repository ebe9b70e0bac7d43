"""What every policy's config shares: one name per concept, and old names migrated.

``max_num_batched_tokens`` is the token budget of one step and ``max_num_seqs`` the cap on the
requests a step (or the running set) holds, whatever the policy; ``None`` or absent means the
policy has no such limit. Knobs that had other names are accepted under them with a warning.
"""
from __future__ import annotations

import warnings
from typing import Any, ClassVar

from pydantic import model_validator

from llmsim.config_base import StrictModel


class PolicyConfigBase(StrictModel):
    kind: str
    # old knob name -> canonical name, per policy
    RENAMED: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _migrate_renamed(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not cls.RENAMED:
            return data
        data = dict(data)
        for old, new in cls.RENAMED.items():
            if old in data:
                if new in data:
                    raise ValueError(f"{old} is the old name of {new}: give only {new}")
                warnings.warn(f"policy {data.get('kind', '')}: {old} is now called {new}",
                              FutureWarning, stacklevel=2)
                data[new] = data.pop(old)
        return data

    @property
    def token_budget(self) -> int | None:
        """Tokens one step may hold (``max_num_batched_tokens``), if the policy caps them."""
        v = getattr(self, "max_num_batched_tokens", None)
        return int(v) if v is not None else None

    @property
    def row_cap(self) -> int | None:
        """Requests one step may hold (``max_num_seqs``), if the policy caps them."""
        v = getattr(self, "max_num_seqs", None)
        return int(v) if v is not None else None
