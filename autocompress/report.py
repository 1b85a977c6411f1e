"""Explaining the result: the Pareto table in the terminal and CSV files next to the study."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from autocompress.pareto import Candidate, Choice

__all__ = ["pareto_table", "write_csv"]

_COLUMNS = ("trial", "policy", "val_accuracy", "accuracy_drop_pt", "latency_ms", "latency_iqr_ms",
            "speedup_vs_teacher_torch", "size_mb", "macs", "params", "feasible", "finetuned", "baseline", "chosen")


def _row(c: Candidate, chosen: int | None) -> dict[str, object]:
    lat = c.attrs.get("latency", {})
    return {
        "trial": c.number,
        "policy": c.attrs.get("policy_summary", ""),
        "val_accuracy": round(c.accuracy, 6),
        "accuracy_drop_pt": round(c.attrs.get("accuracy_drop_pt", float("nan")), 4),
        "latency_ms": round(c.latency_ms, 4),
        "latency_iqr_ms": round(lat.get("iqr_ms", float("nan")), 4),
        "speedup_vs_teacher_torch": round(c.attrs.get("speedup_vs_teacher_torch", float("nan")), 3),
        "size_mb": round(c.attrs.get("size_mb", float("nan")), 4),
        "macs": c.attrs.get("macs"),
        "params": c.attrs.get("params"),
        "feasible": c.feasible,
        "finetuned": c.attrs.get("finetuned"),
        "baseline": c.attrs.get("baseline", ""),
        "chosen": c.number == chosen,
    }


def write_csv(path: Path, candidates: Sequence[Candidate], choice: Choice | None) -> Path:
    """One row per candidate with every column of :data:`_COLUMNS`; the policy as JSON in ``policy_json``."""
    chosen = choice.candidate.number if choice else None
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*_COLUMNS, "policy_json"])
        writer.writeheader()
        for c in candidates:
            writer.writerow({**_row(c, chosen), "policy_json": json.dumps(c.attrs.get("policy", {}), sort_keys=True)})
    return path


def pareto_table(front: Sequence[Candidate], choice: Choice | None, *, budget_ms: float, console: Console) -> None:
    """Print the Pareto front, fastest first, the chosen row marked."""
    chosen = choice.candidate.number if choice else None
    table = Table(title=f"Pareto front (accuracy ↑, latency ↓) — budget {budget_ms:.3f} ms", show_lines=False)
    for name, justify in [("", "left"), ("trial", "right"), ("policy", "left"), ("val acc", "right"), ("drop pt", "right"),
                          ("latency ms (IQR)", "right"), ("× vs PyTorch", "right"), ("size MB", "right"), ("feasible", "center")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for c in front:
        r = _row(c, chosen)
        table.add_row(
            "★" if r["chosen"] else "",
            str(c.number),
            f"{r['policy']}{' [' + str(r['baseline']) + ']' if r['baseline'] else ''}",
            f"{c.accuracy:.2%}",
            f"{r['accuracy_drop_pt']:+.2f}",
            f"{c.latency_ms:.3f} ({r['latency_iqr_ms']:.3f})",
            f"{r['speedup_vs_teacher_torch']:.2f}",
            f"{r['size_mb']:.2f}",
            "yes" if c.feasible else "no",
        )
    console.print(table)
