"""The benchmarks' result tables, as markdown: floats to 3 significant digits, missing as "-"."""
from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        if v is None or v != v:  # None or NaN
            return "-"
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def records_table(rows: Sequence[dict]) -> str:
    """Rows given as mappings of one shape (the first row's keys are the columns)."""
    return markdown_table(list(rows[0]), [list(r.values()) for r in rows])
