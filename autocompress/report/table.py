"""Explaining the result: the Pareto table in the terminal and CSV files next to the study."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from autocompress.study.pareto import PREFERENCES, Choice, choose
from autocompress.study.record import TrialRecord

__all__ = ["pareto_table", "write_csv"]

_COLUMNS = (
    "trial",
    "outcome",
    "role",
    "label",
    "policy",
    "val_accuracy",
    "accuracy_drop_pt",
    "latency_ms",
    "latency_iqr_ms",
    "latency_low_ms",
    "latency_high_ms",
    "latency_noise",
    "latency_before_finetune_ms",
    "budget_ms",
    "size_mb",
    "macs",
    "params",
    "feasible",
    "finetuned",
    "halved_at_rung",
    "int8_kernel",
    "isa",
    "total_s",
    "chosen",
)


def _nan(value: float | None, digits: int) -> float:
    return round(value, digits) if value is not None else float("nan")


def _row(r: TrialRecord, chosen: int | None) -> dict[str, object]:
    return {
        "trial": r.number,
        "outcome": r.outcome,
        "role": r.role,
        "label": r.label,
        "policy": r.summary,
        "val_accuracy": _nan(r.accuracy, 6),
        "accuracy_drop_pt": _nan(r.accuracy_drop_pt, 4),
        "latency_ms": _nan(r.latency_ms, 4),
        "latency_iqr_ms": _nan(r.latency.iqr_ms if r.latency else None, 4),
        "latency_low_ms": _nan(r.latency.low if r.latency else None, 4),
        "latency_high_ms": _nan(r.latency.high if r.latency else None, 4),
        "latency_noise": r.latency.noise if r.latency else "",
        "latency_before_finetune_ms": _nan(
            r.latency_before_finetune.median_ms if r.latency_before_finetune else None, 4
        ),
        "budget_ms": round(r.budget_ms, 4),
        "size_mb": _nan(r.size_mb, 4),
        "macs": r.macs,
        "params": r.params,
        "feasible": r.feasible,
        "finetuned": r.finetuned,
        "halved_at_rung": r.halted_at["rung"] + 1 if r.halted_at else "",  # successive halving stopped its KD there
        "int8_kernel": r.policy.quant.kernel if r.policy else "",
        "isa": r.fingerprint.get("isa", ""),
        "total_s": _nan(r.timings.get("total_s"), 3),
        "chosen": r.number == chosen,
    }


def write_csv(path: Path, records: Sequence[TrialRecord], choice: Choice | None) -> Path:
    """One row per record with every column of :data:`_COLUMNS`; the policy as JSON in ``policy_json``."""
    chosen = choice.record.number if choice else None
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*_COLUMNS, "policy_json"])
        writer.writeheader()
        for r in records:
            policy = r.policy.to_dict() if r.policy else {}
            writer.writerow({**_row(r, chosen), "policy_json": json.dumps(policy, sort_keys=True)})
    return path


def pareto_table(
    front: Sequence[TrialRecord], choice: Choice | None, *, budget_ms: float, teacher_torch_ms: float, console: Console
) -> None:
    """Print the Pareto front, fastest first, the chosen row marked ★ and the other rule's pick ☆ (``--prefer``)."""
    chosen = choice.record.number if choice else None
    other_rule = next((p for p in PREFERENCES if choice is not None and p != choice.prefer), None)
    other = choose(front, exclude=choice.passed_over, prefer=other_rule) if choice and other_rule else None
    alternative = other.record.number if other is not None and other.feasible else None
    caption = (
        f"★ chosen (--prefer {choice.prefer}); ☆ what --prefer {other_rule} would choose"
        if choice is not None and alternative not in (None, chosen)
        else None
    )
    table = Table(
        title=f"Pareto front (accuracy ↑, latency ↓) — budget {budget_ms:.3f} ms", caption=caption, show_lines=False
    )
    for name, justify in [
        ("", "left"),
        ("trial", "right"),
        ("policy", "left"),
        ("val acc", "right"),
        ("drop pt [95 %]", "right"),
        ("latency ms [interval]", "right"),
        ("× vs PyTorch", "right"),
        ("size MB", "right"),
        ("feasible", "center"),
    ]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in front:
        assert r.accuracy is not None and r.latency is not None
        table.add_row(
            "★" if r.number == chosen else "☆" if r.number == alternative else "",
            str(r.number),
            f"{r.summary}{' [' + r.label + ']' if r.label else ''}",
            f"{r.accuracy:.2%}",
            f"{r.accuracy_drop_pt:+.2f}"
            + (f" [{r.drop_interval_pt[0]:+.1f}, {r.drop_interval_pt[1]:+.1f}]" if r.drop_interval_pt else ""),
            f"{r.latency.median_ms:.3f} [{r.latency.low:.3f}, {r.latency.high:.3f}]",
            f"{teacher_torch_ms / r.latency.median_ms:.2f}",
            f"{r.size_mb or 0:.2f}",
            "yes" if r.feasible else "no",
        )
    console.print(table)
