"""A tiny user project for tests that run the real CLI in subprocesses: a model factory, a data function, a space
file and the teacher's weights in ``tmp_path``; returns the base ``search`` command."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import torch


def tiny_cli_project(tmp_path: Path, teacher: torch.nn.Module, space: str) -> list[str]:
    (tmp_path / "mymodels.py").write_text(
        textwrap.dedent("""\
        from autocompress.sources.demo_model import build_demo_resnet

        def tiny():
            return build_demo_resnet(width=8, seed=0)
    """)
    )
    (tmp_path / "mydata.py").write_text(
        textwrap.dedent("""\
        from autocompress.sources.workload import load_digits_splits

        def splits():
            return load_digits_splits(size=16)
    """)
    )
    (tmp_path / "space.yaml").write_text(space)
    torch.save(teacher.state_dict(), tmp_path / "teacher.pt")
    # --no-explain: these tests check the study, not the report's sensitivity profile (half of a tiny run's time).
    return [
        sys.executable,
        "-m",
        "autocompress",
        "search",
        "--model",
        "mymodels:tiny",
        "--weights",
        "teacher.pt",
        "--data",
        "mydata:splits",
        "--space",
        "space.yaml",
        "--no-explain",
    ]
