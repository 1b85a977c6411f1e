"""Is the teacher fed the way it was trained? Score it under the usual normalisations before the search.

A wrong normalisation can leave a teacher far above chance: a 784 → 10 linear classifier trained on plain [0, 1]
digit pixels scores 95.0 % val with ``--normalize none`` and 27.5 % under the default 1-channel 0.5/0.5, over the
chance line (16.7 % on those 80 val images) of :func:`autocompress.sources.workload.check_teacher_accuracy`. So,
before the search, the teacher is scored on (at most :data:`MAX_IMAGES`) val images under the normalisation in use
and the usual alternatives — ``none``, ``0.5/0.5``, ``imagenet`` (3-channel data only) and the train split's own
per-channel mean/std — and a far better alternative stops the search with one line naming the ``--normalize`` to pass.

The workload's tensors are already normalised, so nothing is decoded again: ``x * std + mean`` (the normalisation
in use, per channel) gives back the [0, 1] pixels, and each alternative normalises those. That needs to know the
normalisation in use, which only the tool's own pipeline (image folders and torchvision datasets without a
``preprocess`` transform) records in ``workload.info["normalize"]``; any other workload is skipped, and the record
says why.

Example:
    >>> verify_preprocessing(workload)  # doctest: +SKIP
    WorkloadError: the teacher scores 27.5% val with --normalize 0.5/0.5 (the default for 1-channel images) but ...
    >>> check_preprocessing(workload_with_normalize_none, every=True).summary()  # doctest: +SKIP
    'checked on 80 val images: none (in use) 95.0%, 0.5/0.5 27.5%, data mean/std 58.8%'
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from autocompress.compress.training import _logits
from autocompress.config import Normalization, parse_normalize
from autocompress.errors import WorkloadError
from autocompress.sources._splits import _labels_of, _stratified_cap
from autocompress.sources.workload import Workload, chance_accuracy, low_accuracy_threshold

__all__ = [
    "MAX_IMAGES",
    "NormalizationScore",
    "PreprocessCheck",
    "check_preprocessing",
    "far_better",
    "suggest",
    "verify_preprocessing",
]

logger = logging.getLogger(__name__)

MAX_IMAGES = 1000  # val images scored per normalisation (and train images the data mean/std is computed from)
MIN_GAIN = 0.10  # an alternative must score at least 10 points higher ...
MIN_ERROR_RATIO = 2.0  # ... make at most half the errors of the normalisation in use ...
MIN_Z = 3.0  # ... and its gain must be 3 standard errors
_SAME = 1e-3  # mean/std closer than this to the one in use are the same normalisation: not scored twice
_PREFER_NAMED = 0.01  # a named alternative within 1 point of the best one is suggested instead (it is what was meant)
DATA_LABEL = "data mean/std"


@dataclass(frozen=True)
class NormalizationScore:
    """The teacher's val accuracy under one normalisation.

    Attributes:
        label: ``none``, ``0.5/0.5``, ``imagenet``, ``data mean/std`` or the ``--normalize`` value in use.
        normalize: the ``--normalize`` value that reproduces it (for ``data mean/std``: its numbers, rounded to 4
            decimals).
        accuracy: top-1 on the checked val images, a fraction in [0, 1].
        in_use: whether this is the normalisation the workload was loaded with.
    """

    label: str
    normalize: str
    accuracy: float
    in_use: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "normalize": self.normalize, "accuracy": self.accuracy, "in_use": self.in_use}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NormalizationScore:
        return cls(
            label=str(data["label"]),
            normalize=str(data["normalize"]),
            accuracy=float(data["accuracy"]),
            in_use=bool(data.get("in_use", False)),
        )


@dataclass(frozen=True)
class PreprocessCheck:
    """What :func:`check_preprocessing` found (written to the study's ``preprocess_check`` attribute).

    Attributes:
        ran: whether the teacher was scored; ``False`` when the tool does not know the workload's normalisation.
        reason: why the check was skipped (empty when it ran).
        normalize: the ``--normalize`` value in use (``None`` when skipped).
        normalize_source: ``given with --normalize`` or ``the default for N-channel images``.
        images: how many val images each normalisation was scored on.
        scores: the normalisation in use first, then the alternatives, each with its val accuracy.
        suggested: the ``--normalize`` value to pass when an alternative is :func:`far_better`, else ``None``.
        note: why the alternatives were not scored, when they were not (empty otherwise).
        seconds: how long the check took.
    """

    ran: bool
    reason: str = ""
    normalize: str | None = None
    normalize_source: str | None = None
    images: int = 0
    scores: tuple[NormalizationScore, ...] = ()
    suggested: str | None = None
    note: str = ""
    seconds: float = 0.0

    @property
    def in_use(self) -> NormalizationScore | None:
        """The score of the normalisation in use (``None`` when skipped)."""
        return next((s for s in self.scores if s.in_use), None)

    @property
    def best(self) -> NormalizationScore | None:
        """The highest-scoring normalisation; the one in use wins ties."""
        return max(self.scores, key=lambda s: (s.accuracy, s.in_use), default=None)

    @property
    def suggestion(self) -> NormalizationScore | None:
        """The far better alternative to switch to, if any."""
        return next(
            (s for s in self.scores if self.suggested is not None and s.normalize == self.suggested and not s.in_use),
            None,
        )

    def checked(self) -> str:
        """``none 94.5%, 0.5/0.5 15.5%, data mean/std 81.7%``: every score, in order."""
        return ", ".join(f"{s.label} {s.accuracy:.1%}" for s in self.scores)

    def summary(self) -> str:
        """One line for the search log."""
        if not self.ran:
            return f"skipped ({self.reason})"
        scores = ", ".join(f"{s.label}{' (in use)' if s.in_use else ''} {s.accuracy:.1%}" for s in self.scores)
        return f"checked on {self.images} val images: {scores}{f' ({self.note})' if self.note else ''}"

    def error_message(self) -> str:
        """The one-line error :func:`verify_preprocessing` raises (empty when nothing is far better)."""
        used, better = self.in_use, self.suggestion
        if used is None or better is None:
            return ""
        what = " (the train split's own per-channel mean/std)" if better.label == DATA_LABEL else ""
        return (
            f"the teacher scores {used.accuracy:.1%} val with --normalize {self.normalize} "
            f"({self.normalize_source}) but {better.accuracy:.1%} with --normalize {better.normalize}{what}, "
            f"so it was most likely trained on pixels normalised that way: pass --normalize {better.normalize} "
            f"(checked on {self.images} val images: {self.checked()})"
        )

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "ran": self.ran,
            "reason": self.reason,
            "normalize": self.normalize,
            "normalize_source": self.normalize_source,
            "images": self.images,
            "val_accuracy": {s.label: s.accuracy for s in self.scores},
            "scores": [s.to_dict() for s in self.scores],
            "best": best.label if best else None,
            "suggested": self.suggested,
            "note": self.note,
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessCheck:
        return cls(
            ran=bool(data["ran"]),
            reason=str(data.get("reason", "")),
            normalize=data.get("normalize"),
            normalize_source=data.get("normalize_source"),
            images=int(data.get("images", 0)),
            scores=tuple(NormalizationScore.from_dict(s) for s in data.get("scores", ())),
            suggested=data.get("suggested"),
            note=str(data.get("note", "")),
            seconds=float(data.get("seconds", 0.0)),
        )


def far_better(candidate: float, in_use: float, count: int, *, chance: float = 0.0) -> bool:
    """Whether val accuracy ``candidate`` is so far above ``in_use`` (both on the same ``count`` images) that the
    teacher must have been trained with the candidate's normalisation.

    All four must hold, each guarding against one way of being wrong:

    - a gain of at least 10 points (:data:`MIN_GAIN`): small gains are what a model robust to the input scale shows
      anyway, and a false alarm stops the search;
    - the errors at least halve (``1 - in_use >= 2 * (1 - candidate)``, :data:`MIN_ERROR_RATIO`): an untrained
      linear model moved 5.5 % → 14.5 % between normalisations, and one trained for 5 steps on plain pixels scored
      57 % with them but 73.5 % standardised (errors 43 % → 26.5 %, ratio 1.6) — a better score, not a sign of
      another training normalisation. A wrong normalisation breaks a teacher: 15.5 % vs 94.5 % (ratio 15);
    - the gain is at least 3 standard errors (:data:`MIN_Z`), ``SE = sqrt((a(1-a) + u(1-u)) / count)`` (unpaired, so
      on the safe side for two scores on the same images): on a few dozen val images large gaps are noise;
    - the candidate clears :func:`~autocompress.sources.workload.low_accuracy_threshold` of ``chance``: switching to
      another normalisation must give a real classifier.

    Examples (10 balanced classes): 15.5 % → 94.5 % on 200 images: yes. 85 % → 95 % on 1,000: yes. 60 % → 75 % on
    1,000 (errors 40 % → 25 %): no. 50 % → 80 % on 30 images (30 points < 3 SE = 35): no; on 100 images: yes.
    90 % → 96 %: no (6 points).
    """
    gain = candidate - in_use
    se = math.sqrt((candidate * (1 - candidate) + in_use * (1 - in_use)) / count) if count else math.inf
    return (
        gain >= MIN_GAIN - 1e-12
        and (1 - in_use) >= MIN_ERROR_RATIO * (1 - candidate) - 1e-12
        and gain >= MIN_Z * se
        and candidate >= low_accuracy_threshold(chance, count)
    )


def suggest(scores: tuple[NormalizationScore, ...], count: int, *, chance: float = 0.0) -> str | None:
    """The ``--normalize`` to switch to: the best alternative that is :func:`far_better` than the one in use.

    A named one (``none``, ``0.5/0.5``, ``imagenet``) within 1 point of the best is preferred to the data's own
    mean/std: a teacher scoring 94.5 % with ``none`` and 95.0 % standardised was trained on plain pixels, and
    ``--normalize none`` says so. ``None`` when nothing is far better.
    """
    used = next((s for s in scores if s.in_use), None)
    if used is None:
        return None
    better = [s for s in scores if not s.in_use and far_better(s.accuracy, used.accuracy, count, chance=chance)]
    if not better:
        return None
    top = max(better, key=lambda s: s.accuracy)
    named = [s for s in better if s.label != DATA_LABEL and s.accuracy >= top.accuracy - _PREFER_NAMED]
    return max(named, key=lambda s: s.accuracy).normalize if named else top.normalize


def check_preprocessing(
    workload: Workload, *, max_images: int = MAX_IMAGES, batch_size: int = 128, every: bool = False
) -> PreprocessCheck:
    """Score the teacher on val under the normalisation in use and the usual alternatives; never raises for a mismatch.

    Runs on CPU in eval mode without gradients, on at most ``max_images`` val images (a stratified, fixed subset),
    in batches of ``batch_size``: one pass over those images for the normalisation in use, and one per alternative
    (3 more at most, 2 for 1-channel data) only where an alternative could still be :func:`far_better`, i.e. when the
    teacher scores at most 90 % with the normalisation in use. So a good teacher costs one val pass (about 1 s for the
    demo's teacher on 360 images, 2 cores); the data mean/std reads at most ``max_images`` train images, no forward.

    Args:
        workload: the workload; ``info["normalize"]`` (written by the image-folder and torchvision loaders) names
            the normalisation its tensors carry. Without it the check is skipped.
        max_images: cap on the val (and train) images used.
        batch_size: images per forward pass.
        every: score the alternatives even when none of them can be far better (for reports and tests).

    Returns:
        A :class:`PreprocessCheck`; ``suggested`` is set when an alternative is :func:`far_better`.
    """
    started = time.perf_counter()
    skipped = _skip_reason(workload)
    if skipped:
        return PreprocessCheck(ran=False, reason=skipped)
    info = workload.info
    used = parse_normalize(str(info["normalize"]))
    source = str(info.get("normalize_source", "given with --normalize"))
    channels = int(workload.input_shape[0])
    used_mean, used_std = (torch.tensor(v).view(1, -1, 1, 1) for v in used.for_channels(channels))
    images = _Capped(workload.val, max_images)
    count = len(images)
    score = partial(_score, workload.model, images, used_mean, used_std, channels=channels, batch_size=batch_size)

    in_use = NormalizationScore(label=str(used), normalize=str(used), accuracy=score([None])[0] / count, in_use=True)
    if in_use.accuracy > 1.0 - MIN_GAIN + 1e-9 and not every:
        return PreprocessCheck(
            ran=True,
            normalize=str(used),
            normalize_source=source,
            images=count,
            scores=(in_use,),
            note=f"alternatives not scored: {in_use.accuracy:.1%} leaves no room for one "
            f"{MIN_GAIN * 100:g} points higher",
            seconds=time.perf_counter() - started,
        )

    alternatives = [("none", parse_normalize("none")), ("0.5/0.5", Normalization((0.5,), (0.5,)))]
    if channels == 3:
        alternatives.append(("imagenet", parse_normalize("imagenet")))
    data_norm = _train_normalization(workload.train, max_images, used_mean, used_std)
    if data_norm is not None:
        alternatives.append((DATA_LABEL, data_norm))
    kept: list[tuple[str, Normalization]] = []
    for label, norm in alternatives:  # the one in use (and a data mean/std equal to a preset) is not scored twice
        if not any(_same(norm, other, channels) for other in (used, *(n for _, n in kept))):
            kept.append((label, norm))
    hits = score([norm for _, norm in kept])
    scores = (
        in_use,
        *(
            NormalizationScore(label=label, normalize=str(norm), accuracy=h / count)
            for (label, norm), h in zip(kept, hits)
        ),
    )
    chance, _ = chance_accuracy(workload)
    return PreprocessCheck(
        ran=True,
        normalize=str(used),
        normalize_source=source,
        images=count,
        scores=scores,
        suggested=suggest(scores, count, chance=chance),
        seconds=time.perf_counter() - started,
    )


def verify_preprocessing(workload: Workload, *, max_images: int = MAX_IMAGES, every: bool = False) -> PreprocessCheck:
    """:func:`check_preprocessing`, then refuse a teacher that a far better normalisation exists for.

    Call it before the chance check (:func:`~autocompress.sources.workload.check_teacher_accuracy`), which stays the
    last line of defence for what this cannot check. ``--allow-low-teacher-accuracy`` does not silence it: a teacher
    that scores far higher under another normalisation is fed the wrong pixels, and the fix (pass that
    ``--normalize``) costs nothing. An explicit ``--normalize`` is checked too: it may be the wrong one.

    Raises:
        WorkloadError: one line with the accuracy in use, the better one, the ``--normalize`` to pass and every
            score checked.
    """
    check = check_preprocessing(workload, max_images=max_images, every=every)
    if check.suggested is not None:
        raise WorkloadError(check.error_message())
    logger.info("teacher preprocessing %s", check.summary())
    return check


def _skip_reason(workload: Workload) -> str:
    """Why the normalisation cannot be checked, or ``""`` when it can."""
    info = workload.info
    preprocess = str(info.get("preprocess") or "")
    if "normalize" not in info:
        if str(info.get("data", "")).startswith("digits"):
            return (
                "--data digits is standardised with the whole set's own mean and std, not with --normalize; "
                "the demo teacher is trained on exactly that"
            )
        if preprocess:
            return (
                f"the images are preprocessed by {preprocess.removeprefix('default: ')} (a preprocess transform, "
                "e.g. the --weights transforms), not with --normalize"
            )
        return (
            "the data comes ready-made (a dataset function or the Python API), so the tool does not know how it "
            "was normalised"
        )
    if len(workload.val) == 0:  # type: ignore[arg-type]
        return "the val split is empty"
    return ""


class _Capped:
    """A stratified subset of at most ``cap`` items of a dataset (fixed seed: the same images every run), read in
    batches: at 224 px, 1,000 float32 images are 0.6 GB, so they are never all in memory at once."""

    def __init__(self, dataset: Dataset, cap: int) -> None:
        labels = _labels_of(dataset)
        self.dataset = dataset
        self.indices = _stratified_cap(labels, cap, seed=0)
        self.labels = torch.as_tensor(labels)[torch.as_tensor(self.indices, dtype=torch.long)]

    def __len__(self) -> int:
        return len(self.indices)

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(images, labels)`` of ``batch_size`` items at a time, in subset order."""
        for start in range(0, len(self.indices), batch_size):
            idx = self.indices[start : start + batch_size]
            if isinstance(self.dataset, TensorDataset):
                images = self.dataset.tensors[0][torch.as_tensor(idx, dtype=torch.long)]
            else:
                images = torch.stack([torch.as_tensor(self.dataset[int(i)][0]) for i in idx])
            yield images, self.labels[start : start + len(idx)]


def _train_normalization(
    train: Dataset, cap: int, used_mean: torch.Tensor, used_std: torch.Tensor, *, batch_size: int = 128
) -> Normalization | None:
    """Per-channel mean/std of the train split's [0, 1] pixels (at most ``cap`` images), rounded to 4 decimals;
    accumulated batch by batch in float64 (sums of x and x²)."""
    if len(train) == 0:  # type: ignore[arg-type]
        return None
    total = squares = None
    count = 0
    for images, _ in _Capped(train, cap).batches(batch_size):
        raw = images.double() * used_std.double() + used_mean.double()
        batch_sum, batch_squares = raw.sum(dim=(0, 2, 3)), raw.square().sum(dim=(0, 2, 3))
        total = batch_sum if total is None else total + batch_sum
        squares = batch_squares if squares is None else squares + batch_squares
        count += raw.numel() // raw.shape[1]
    assert total is not None and squares is not None
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0.0).sqrt()
    if float(std.min()) < 1e-4:  # constant pixels: no usable standardisation
        return None
    means, stds = tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)
    if len(set(means)) == 1 and len(set(stds)) == 1:  # grayscale copied to 3 channels: say it with one number
        means, stds = means[:1], stds[:1]
    return parse_normalize(f"{','.join(map(str, means))}/{','.join(map(str, stds))}")


def _same(a: Normalization, b: Normalization, channels: int) -> bool:
    (ma, sa), (mb, sb) = a.for_channels(channels), b.for_channels(channels)
    return all(abs(x - y) < _SAME for x, y in zip((*ma, *sa), (*mb, *sb)))


@torch.no_grad()
def _score(
    model: nn.Module,
    images: _Capped,
    used_mean: torch.Tensor,
    used_std: torch.Tensor,
    norms: list[Normalization | None],
    *,
    channels: int,
    batch_size: int,
) -> list[int]:
    """Correct answers of ``model`` under each normalisation (``None``: the tensors as they are), batch by batch.

    ``batch * used_std + used_mean`` gives back the [0, 1] pixels of a batch; only one batch of them is in memory.
    """
    stats = [
        None if n is None else tuple(torch.tensor(v).view(1, -1, 1, 1) for v in n.for_channels(channels)) for n in norms
    ]
    hits = [0] * len(norms)
    was_training = model.training
    model.eval()
    try:
        for batch, target in images.batches(batch_size):
            raw = batch * used_std + used_mean if any(st is not None for st in stats) else batch
            for k, st in enumerate(stats):
                x = batch if st is None else (raw - st[0]) / st[1]
                hits[k] += int((_logits(model(x)).argmax(1) == target).sum())
    finally:
        model.train(was_training)
    return hits
