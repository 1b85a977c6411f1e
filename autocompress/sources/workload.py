"""What is being compressed: the teacher model and its data (train / val / test) in one :class:`Workload`.

:func:`load_workload` resolves ``--model`` and ``--data`` through the source registries
(:mod:`autocompress.sources._base`): the data source and the model source check the options first, a model that
comes with its own data (the demo) hands over its whole workload, and otherwise the data is loaded, then the model
built for its class count and checked against one image.

The train split feeds distillation and int8 calibration, val drives the search, and test is touched only once, for
the chosen model and the teacher at the very end.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np

from autocompress.config import MIN_CLASSES, SearchConfig, parse_normalize
from autocompress.errors import WorkloadError
from autocompress.sources._base import DataOptions, match_data_source, match_model_source
from autocompress.sources._data_digits import DIGITS_SIZE, load_digits_splits
from autocompress.sources._model_demo import DEMO_TEACHER_FILE, load_demo_workload
from autocompress.sources._splits import _labels_of
from autocompress.sources._types import Workload
from autocompress.sources.data import load_data
from autocompress.sources.models import check_num_classes, load_model

__all__ = [
    "DEMO_INPUT_SIZE",
    "DEMO_TEACHER_FILE",
    "Workload",
    "chance_accuracy",
    "check_teacher_accuracy",
    "load_demo_workload",
    "load_digits_splits",
    "load_workload",
    "low_accuracy_threshold",
]

logger = logging.getLogger(__name__)

DEMO_INPUT_SIZE = DIGITS_SIZE
_SPLIT_SEED = 0  # fixed: the split must not move when the user changes the search seed


def load_workload(config: SearchConfig, *, progress: Callable[[str], None] | None = None) -> Workload:
    """Resolve ``--model`` / ``--data`` (and the options that go with them) into a :class:`Workload`.

    Model sources: ``demo``, ``torchvision:NAME``, ``package.module:factory``; data sources: ``digits``,
    ``imagefolder:PATH``, ``torchvision:NAME:ROOT``, ``package.module:fn`` (and any source registered since; see
    :func:`autocompress.sources.list_model_sources` and :func:`autocompress.sources.list_data_sources`).
    """
    data_source, model_source = match_data_source(config.data), match_model_source(config.model)
    # The split seed is fixed, not the search seed: held-out images must stay the same across studies.
    options = DataOptions(
        input_size=config.input_size,
        channels=config.channels,
        seed=_SPLIT_SEED,
        download=config.download,
        max_samples=config.max_samples,
        normalize=parse_normalize(config.normalize) if config.normalize is not None else None,
    )
    data_source.check(config.data, options)  # before a model with its own data takes over: --data digits --normalize
    model_source.check(config)
    bundled = model_source.bundled_workload(config, progress=progress)
    if bundled is not None:
        return bundled
    splits = load_data(
        config.data,
        input_size=options.input_size,
        channels=options.channels,
        seed=options.seed,
        download=options.download,
        max_samples=options.max_samples,
        preprocess=model_source.preprocess(config.model, config.weights),
        normalize=options.normalize,
        cache_dir=config.cache_dir,
    )
    if splits.num_classes < MIN_CLASSES:
        raise WorkloadError(
            f"--data {config.data} : the data has {splits.num_classes} class; a classifier needs at least "
            f"{MIN_CLASSES} classes (labels 0 .. N-1 with N >= {MIN_CLASSES})"
        )
    model = load_model(
        config.model,
        num_classes=config.num_classes or splits.num_classes,
        weights=config.weights,
        trust_checkpoint=config.trust_checkpoint,
        small_input=config.small_input,
    )
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
    return max(float(counts.max()) / len(labels), 1.0 / max(workload.num_classes, 1)), len(labels)


def low_accuracy_threshold(chance: float, count: int) -> float:
    """The val accuracy a teacher must reach to count as better than guessing.

    ``chance + margin`` with ``margin = min(max(0.5 * chance, 2 * SE), 0.1, (1 - chance) / 2)``, where ``SE`` is the
    standard error of a guesser that is right with probability ``chance`` on ``count`` images. So, on balanced data:
    10 classes → 15 % (1.5 / num_classes); 2 classes → 60 %; 1000 classes on 5,000 images → 0.19 %. The 2 SE term
    keeps a lucky guesser on a small val split below the line; the 0.1 cap keeps a weak but real binary model above
    it; the half-headroom cap keeps the line reachable on skewed data (95 % majority → 97.5 %).
    """
    se = math.sqrt(chance * (1.0 - chance) / count) if count else 0.0
    return chance + min(max(0.5 * chance, 2.0 * se), 0.1, (1.0 - chance) / 2.0)


def check_teacher_accuracy(val_accuracy: float, workload: Workload, *, allow_low: bool) -> None:
    """Refuse a teacher whose val accuracy is near chance, before any trial is spent on it.

    A trained model that scores like guessing on its own data almost always sees inputs unlike those it was trained
    on — most often another normalisation (e.g. trained on plain ``ToTensor()`` pixels, searched with ImageNet
    mean/std) — and compressing it would only reproduce noise. The line is :func:`low_accuracy_threshold`. A teacher
    fed another normalisation can still score above it (27.5 % vs 95.0 % for a linear model on digits); that is
    :func:`autocompress.sources.preprocess_check.verify_preprocessing`'s job, which runs first: this stays the last line
    of defence, e.g. for data whose normalisation the tool does not know.

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
    head = (
        f"the teacher's val accuracy is {val_accuracy:.1%}, near chance ({workload.num_classes} classes; always "
        f"guessing the most frequent one scores {chance:.1%} on the {count} val images, a trained model should "
        f"reach at least {threshold:.1%})"
    )
    if allow_low:
        logger.warning("%s; searching anyway (--allow-low-teacher-accuracy)", head)
        return
    info = workload.info
    preprocess = str(info.get("preprocess") or "as the datasets return the images").removeprefix("default: ")
    if "normalize" in info:
        cause = (
            f"the images were normalised with --normalize {info['normalize']} "
            f"({info.get('normalize_source', 'given with --normalize')}; preprocessing: {preprocess}), probably "
            "not what the model was trained on; pass its normalisation: --normalize none for plain ToTensor() "
            "pixels in [0, 1], --normalize imagenet, or --normalize MEAN/STD (e.g. 0.5/0.25 or "
            "0.485,0.456,0.406/0.229,0.224,0.225)"
        )
    else:
        cause = (
            f"the data is probably preprocessed unlike the model's training data (preprocessing: {preprocess}); "
            "feed it the way the model was trained"
        )
    raise WorkloadError(f"{head}: {cause}; or pass --allow-low-teacher-accuracy to search anyway")
