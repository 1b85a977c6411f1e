"""The ``demo`` model source: the embedded demo teacher, trained on ``--data digits`` on first use and cached.

The model is :class:`~autocompress.sources.demo_model.DemoResNet`; it comes with its own data and trained weights,
so with ``--model demo`` the whole workload is :func:`load_demo_workload`: the digits splits at 32x32 and the
teacher cached under ``--output``/_cache (trained there on the first run, about a minute on 2 cores).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from torch import nn
from torch.utils.data import TensorDataset

from autocompress.compress.training import fit, predict_logits
from autocompress.config import SearchConfig
from autocompress.errors import WorkloadError
from autocompress.sources._base import ModelSource
from autocompress.sources._data_digits import _SPLIT_SEED, DIGITS_PREPROCESS, DIGITS_SIZE, load_digits_splits
from autocompress.sources._types import Workload
from autocompress.sources.demo_model import build_demo_resnet
from autocompress.sources.weights import load_weights, save_weights

__all__ = ["DEMO_TEACHER_FILE", "DemoModel", "load_demo_workload"]

# Records keep the name of the public module they were logged from before the split (the CLI prints it).
logger = logging.getLogger("autocompress.sources.workload")

DEMO_TEACHER_FILE = "demo_resnet_digits_v1.npz"  # plain arrays: nothing under results/ is ever unpickled


class DemoModel(ModelSource):
    """``demo``: only with ``--data digits``; its trained teacher is cached under ``--output``."""

    name = "demo"
    form = "demo"
    example = "demo"
    help = "the embedded demo teacher (a small ResNet), trained on --data digits on first use and cached"
    settings = ("--output",)

    def build(self, spec: str, *, num_classes: int | None, small_input: bool) -> nn.Module:
        """An untrained DemoResNet (``small_input`` is moot: it is made for 32x32 images)."""
        return build_demo_resnet(num_classes=num_classes or 10, seed=_SPLIT_SEED)

    def check(self, config: SearchConfig) -> None:
        if config.data != "digits":
            raise WorkloadError(
                f"--model demo is trained on digits and only works with --data digits, got --data {config.data!r}; "
                "pass your own model with --model torchvision:NAME --weights PATH or --model package.module:factory"
            )

    def bundled_workload(self, config: SearchConfig, *, progress: Callable[[str], None] | None) -> Workload:
        return load_demo_workload(config.cache_dir, progress=progress)


def load_demo_workload(cache_dir: Path, *, epochs: int = 20, progress: Callable[[str], None] | None = None) -> Workload:
    """The embedded demo: :class:`~autocompress.sources.demo_model.DemoResNet` trained on digits, cached in
    ``cache_dir``.

    The first call trains the teacher (about a minute on 2 cores) and saves its weights; later calls load them.
    """
    train, val, test = load_digits_splits()
    model = DemoModel().build("demo", num_classes=10, small_input=False)
    weights = cache_dir / DEMO_TEACHER_FILE
    if weights.exists():
        load_weights(model, weights)
    else:
        _train_demo_teacher(model, (train, val, test), weights, epochs=epochs, say=progress or logger.info)
    model.eval()
    return Workload(
        name="demo",
        model=model,
        train=train,
        val=val,
        test=test,
        input_shape=(1, DIGITS_SIZE, DIGITS_SIZE),
        num_classes=10,
        info={
            "model": "demo (DemoResNet, width 32)",
            "data": "digits (sklearn load_digits, 32x32, 60/20/20 split)",
            "preprocess": DIGITS_PREPROCESS,
            "train_size": len(train),
            "val_size": len(val),
            "test_size": len(test),
        },
    )


def _train_demo_teacher(
    model: nn.Module,
    splits: tuple[TensorDataset, TensorDataset, TensorDataset],
    weights: Path,
    *,
    epochs: int,
    say: Callable[[str], None],
) -> None:
    """Train ``model`` on the digits train split and save it at ``weights`` (+ a ``.json`` with its accuracies)."""
    train, val, test = splits
    say(f"training the demo teacher (DemoResNet on digits, {epochs} epochs; cached at {weights})")
    started = time.perf_counter()
    steps = epochs * (len(train) // 64)
    fit(
        model,
        train,
        lambda logits, labels, _: nn.functional.cross_entropy(logits, labels, label_smoothing=0.05),
        steps=steps,
        lr=0.05,
        optimizer="sgd",
        weight_decay=5e-4,
        seed=_SPLIT_SEED,
    )
    weights.parent.mkdir(parents=True, exist_ok=True)
    save_weights(model, weights)
    meta = {
        "train_seconds": round(time.perf_counter() - started, 1),
        "epochs": epochs,
        "val_accuracy": _accuracy(model, val),
        "test_accuracy": _accuracy(model, test),
    }
    weights.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    say(
        f"demo teacher trained in {meta['train_seconds']} s: val accuracy {meta['val_accuracy']:.2%}, "
        f"test accuracy {meta['test_accuracy']:.2%}"
    )


def _accuracy(model: nn.Module, dataset: TensorDataset) -> float:
    logits = predict_logits(model, dataset)
    return float((logits.argmax(1) == dataset.tensors[1]).float().mean())
