"""What is being compressed: the teacher model and its data (train / val / test) in one :class:`Workload`.

The train split feeds distillation and int8 calibration, val drives the search, and test is touched only once, for
the chosen model and the teacher at the very end.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from autocompress.config import MIN_CLASSES, SearchConfig
from autocompress.errors import WorkloadError
from autocompress.sources.demo_model import build_demo_resnet
from autocompress.sources._splits import _labels_of
from autocompress.compress.training import fit, predict_logits
from autocompress.sources.weights import load_weights, save_weights

__all__ = [
    "Workload",
    "check_teacher_accuracy",
    "chance_accuracy",
    "load_digits_splits",
    "load_demo_workload",
    "load_workload",
    "low_accuracy_threshold",
    "DEMO_INPUT_SIZE",
]

logger = logging.getLogger(__name__)

DEMO_INPUT_SIZE = 32
_SPLIT_SEED = 0  # fixed: the split must not move when the user changes the search seed
DEMO_TEACHER_FILE = "demo_resnet_digits_v1.npz"  # plain arrays: nothing under results/ is ever unpickled
_DIGITS_PREPROCESS = "digits: pixels / 16, bilinear resize, standardised with the whole set's mean and std"


@dataclass
class Workload:
    """A teacher model and its data.

    Attributes:
        name: short identifier used in reports.
        model: the original (teacher) model, in eval mode.
        train: map-style dataset of ``(image tensor, label)`` for fine-tuning and calibration.
        val: held-out data that drives the search.
        test: held-out data used only for the final report.
        input_shape: ``(channels, height, width)`` of one image.
        num_classes: number of classes of the model's head.
        info: free-form facts about where model and data came from (written to ``metrics.json``).
    """

    name: str
    model: nn.Module
    train: Dataset
    val: Dataset
    test: Dataset
    input_shape: tuple[int, int, int]
    num_classes: int
    info: dict[str, Any] = field(default_factory=dict)

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        """A zero tensor of the model's input shape (tracing, export, latency)."""
        return torch.zeros(batch_size, *self.input_shape)


def load_digits_splits(*, size: int = DEMO_INPUT_SIZE) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
    """scikit-learn's 8x8 handwritten digits, upsampled to ``size x size``, split 60/20/20 stratified.

    The split is fixed (seed 0) so that teachers, studies and tests all see the same held-out images.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.long)
    if size != 8:
        images = nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    images = (images - images.mean()) / images.std()
    indices = np.arange(len(labels))
    train_idx, rest_idx = train_test_split(indices, test_size=0.4, stratify=labels.numpy(), random_state=_SPLIT_SEED)
    val_idx, test_idx = train_test_split(rest_idx, test_size=0.5, stratify=labels.numpy()[rest_idx], random_state=_SPLIT_SEED)

    def subset(idx: np.ndarray) -> TensorDataset:
        t = torch.as_tensor(np.sort(idx))
        return TensorDataset(images[t].contiguous(), labels[t].contiguous())

    return subset(train_idx), subset(val_idx), subset(test_idx)


def _accuracy(model: nn.Module, dataset: TensorDataset) -> float:
    logits = predict_logits(model, dataset)
    return float((logits.argmax(1) == dataset.tensors[1]).float().mean())


def load_demo_workload(
    cache_dir: Path, *, epochs: int = 20, progress: Callable[[str], None] | None = None
) -> Workload:
    """The embedded demo: :class:`~autocompress.sources.demo_model.DemoResNet` trained on digits, cached in ``cache_dir``.

    The first call trains the teacher (about a minute on 2 cores) and saves its weights; later calls load them.
    """
    say = progress or logger.info
    train, val, test = load_digits_splits()
    model = build_demo_resnet(num_classes=10, seed=_SPLIT_SEED)
    weights = cache_dir / DEMO_TEACHER_FILE
    if weights.exists():
        load_weights(model, weights)
        model.eval()
    else:
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
        cache_dir.mkdir(parents=True, exist_ok=True)
        save_weights(model, weights)
        meta = {"train_seconds": round(time.perf_counter() - started, 1), "epochs": epochs,
                "val_accuracy": _accuracy(model, val), "test_accuracy": _accuracy(model, test)}
        weights.with_suffix(".json").write_text(json.dumps(meta, indent=2))
        say(f"demo teacher trained in {meta['train_seconds']} s: val accuracy {meta['val_accuracy']:.2%}, "
            f"test accuracy {meta['test_accuracy']:.2%}")
    return Workload(
        name="demo",
        model=model,
        train=train,
        val=val,
        test=test,
        input_shape=(1, DEMO_INPUT_SIZE, DEMO_INPUT_SIZE),
        num_classes=10,
        info={"model": "demo (DemoResNet, width 32)", "data": "digits (sklearn load_digits, 32x32, 60/20/20 split)",
              "preprocess": _DIGITS_PREPROCESS, "train_size": len(train), "val_size": len(val), "test_size": len(test)},
    )


def load_workload(config: SearchConfig, *, progress: Callable[[str], None] | None = None) -> Workload:
    """Resolve ``--model`` / ``--data`` (and the options that go with them) into a :class:`Workload`.

    Model sources: ``demo``, ``torchvision:NAME``, ``package.module:factory`` (see :mod:`autocompress.sources`).
    Data sources: ``digits``, ``imagefolder:PATH``, ``torchvision:NAME:ROOT``, ``package.module:fn``.
    """
    if config.normalize is not None and config.data == "digits":
        raise WorkloadError(
            f"--normalize {config.normalize} : --data digits is standardised by its own mean/std, so --normalize does "
            "not apply; it sets the normalisation of imagefolder: and torchvision: data"
        )
    if config.model == "demo":
        if config.data != "digits":
            raise WorkloadError(
                f"--model demo is trained on digits and only works with --data digits, got --data {config.data!r}; "
                "pass your own model with --model torchvision:NAME --weights PATH or --model package.module:factory"
            )
        return load_demo_workload(config.cache_dir, progress=progress)

    from autocompress.sources.data import DataSplits, load_data
    from autocompress.sources.models import (
        check_num_classes,
        load_model,
        weights_transform,
    )

    if config.model.startswith("torchvision:") and config.weights is None:
        raise WorkloadError(
            f"--model {config.model} has random weights without --weights; pass --weights PATH with a state_dict "
            "trained on your data (the search compresses a trained model, it does not train one)"
        )
    if config.data == "digits":
        train, val, test = load_digits_splits(size=config.input_size or DEMO_INPUT_SIZE)
        splits = DataSplits(train=train, val=val, test=test, input_shape=tuple(train[0][0].shape), num_classes=10,  # type: ignore[arg-type]
                            info={"data": "digits (sklearn load_digits)", "preprocess": _DIGITS_PREPROCESS, "train_size": len(train), "val_size": len(val), "test_size": len(test)})
    else:
        # The split seed is fixed, not the search seed: held-out images must stay the same across studies.
        splits = load_data(config.data, input_size=config.input_size, channels=config.channels, seed=_SPLIT_SEED,
                           download=config.download, max_samples=config.max_samples,
                           preprocess=weights_transform(config.model, config.weights), normalize=config.normalize)
    if splits.num_classes < MIN_CLASSES:
        raise WorkloadError(
            f"--data {config.data} : the data has {splits.num_classes} class; a classifier needs at least "
            f"{MIN_CLASSES} classes (labels 0 .. N-1 with N >= {MIN_CLASSES})"
        )
    model = load_model(config.model, num_classes=config.num_classes or splits.num_classes, weights=config.weights,
                       trust_checkpoint=config.trust_checkpoint, small_input=config.small_input)
    model.eval()
    check_num_classes(model, splits.num_classes, splits.input_shape, class_names=splits.info.get("classes"))
    return Workload(
        name=config.model,
        model=model,
        train=splits.train,
        val=splits.val,
        test=splits.test,
        input_shape=splits.input_shape,
        num_classes=splits.num_classes,
        info={"model": config.model, "weights": str(config.weights) if config.weights else None, **splits.info},
    )


def chance_accuracy(workload: Workload) -> tuple[float, int]:
    """What guessing scores on ``workload.val``: the share of its most frequent class, and the number of images.

    Always answering the most frequent class scores that share, and no other guess does better on average; on
    balanced data it is ``1 / num_classes``.
    """
    labels = _labels_of(workload.val)
    if len(labels) == 0:
        return 1.0 / max(workload.num_classes, 1), 0
    counts = np.bincount(labels, minlength=workload.num_classes)
    return max(float(counts.max()) / len(labels), 1.0 / max(workload.num_classes, 1)), int(len(labels))


def low_accuracy_threshold(chance: float, count: int) -> float:
    """The val accuracy a teacher must reach to count as better than guessing.

    ``chance + margin`` with ``margin = min(max(0.5 * chance, 2 * SE), 0.1, (1 - chance) / 2)``, where ``SE`` is the
    standard error of a guesser that is right with probability ``chance`` on ``count`` images. So, on balanced data:
    10 classes → 15 % (1.5 / num_classes); 2 classes → 60 %; 1000 classes on 5,000 images → 0.19 %. The 2 SE term keeps
    a lucky guesser on a small val split below the line; the 0.1 cap keeps a weak but real binary model above it;
    the half-headroom cap keeps the line reachable on skewed data (95 % majority → 97.5 %).
    """
    se = math.sqrt(chance * (1.0 - chance) / count) if count else 0.0
    return chance + min(max(0.5 * chance, 2.0 * se), 0.1, (1.0 - chance) / 2.0)


def check_teacher_accuracy(val_accuracy: float, workload: Workload, *, allow_low: bool) -> None:
    """Refuse a teacher whose val accuracy is near chance, before any trial is spent on it.

    A trained model that scores like guessing on its own data almost always sees inputs unlike those it was trained
    on — most often another normalisation (e.g. trained on plain ``ToTensor()`` pixels, searched with ImageNet
    mean/std) — and compressing it would only reproduce noise. The line is :func:`low_accuracy_threshold`. A teacher
    fed another normalisation can still score above it (27.5 % vs 95.0 % for a linear model on digits); that is
    :func:`autocompress.sources.preprocess_check.verify_preprocessing`'s job, which runs first: this stays the last line of
    defence, e.g. for data whose normalisation the tool does not know.

    Args:
        val_accuracy: the teacher's top-1 on ``workload.val`` (a fraction in [0, 1]).
        workload: the workload; ``info["preprocess"]`` / ``info["normalize"]`` name the preprocessing in the message.
        allow_low: only log a warning (``--allow-low-teacher-accuracy``).

    Raises:
        WorkloadError: one line naming the accuracy, the chance level, the preprocessing used and the fixes.
    """
    chance, count = chance_accuracy(workload)
    threshold = low_accuracy_threshold(chance, count)
    if val_accuracy >= threshold:
        return
    head = (f"the teacher's val accuracy is {val_accuracy:.1%}, near chance ({workload.num_classes} classes; always "
            f"guessing the most frequent one scores {chance:.1%} on the {count} val images, a trained model should "
            f"reach at least {threshold:.1%})")
    if allow_low:
        logger.warning("%s; searching anyway (--allow-low-teacher-accuracy)", head)
        return
    info = workload.info
    preprocess = str(info.get("preprocess") or "as the datasets return the images").removeprefix("default: ")
    if "normalize" in info:
        cause = (f"the images were normalised with --normalize {info['normalize']} "
                 f"({info.get('normalize_source', 'given with --normalize')}; preprocessing: {preprocess}), probably not "
                 "what the model was trained on; pass its normalisation: --normalize none for plain ToTensor() pixels "
                 "in [0, 1], --normalize imagenet, or --normalize MEAN/STD (e.g. 0.5/0.25 or "
                 "0.485,0.456,0.406/0.229,0.224,0.225)")
    else:
        cause = (f"the data is probably preprocessed unlike the model's training data (preprocessing: {preprocess}); "
                 "feed it the way the model was trained")
    raise WorkloadError(f"{head}: {cause}; or pass --allow-low-teacher-accuracy to search anyway")
