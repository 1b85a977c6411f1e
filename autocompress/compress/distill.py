"""Knowledge distillation: fine-tune the pruned student toward the original model's soft predictions.

Loss (Hinton, Vinyals & Dean 2015)::

    L = alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)

The ``T^2`` factor keeps the soft-target gradients on the same scale as the hard-label ones when T changes.
The teacher's logits are kept per training image (:class:`TeacherLogits`): computed on the training device the first
time a KD step draws an image, then looked up by sample index, so a study pays one teacher forward per image its
fine-tuning actually reaches (not a pass over a large train split before the first step) and a later step costs one
student forward/backward only. With ``augment`` (:func:`random_resized_crop_flip`: every image of a batch gets its
own random crop, resized back, and a coin-flip mirror) each step's images are new, so the teacher runs on every
augmented batch instead and nothing is cached.

After the steps, the student's BatchNorm running statistics are re-estimated on train images
(:func:`~autocompress.compress.batchnorm.recalibrate_batchnorm`): pruning changed what each layer sees, and after a
short run at BatchNorm's small momentum the running statistics still lag the weights (on the demo, 50 % pruned, 20
steps: val 76 % with them, 97 % re-estimated; ``benchmarks/bn_recalibration.md``).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from autocompress.compress.batchnorm import BN_IMAGES, recalibrate_batchnorm
from autocompress.compress.training import fit
from autocompress.policy import DistillPolicy

__all__ = ["BN_IMAGES", "DistillResult", "TeacherLogits", "distill", "kd_loss", "random_resized_crop_flip"]


@dataclass(frozen=True)
class DistillResult:
    """What fine-tuning did: per-step losses, the BatchNorm re-estimation and wall time.

    Attributes:
        losses: the loss of every step.
        seconds: wall time of the whole fine-tuning, BatchNorm re-estimation included.
        bn_images: train images the BatchNorm statistics were re-estimated on (0: not done, or no BatchNorm).
        bn_seconds: the part of ``seconds`` the re-estimation took.
    """

    losses: list[float]
    seconds: float
    bn_images: int = 0
    bn_seconds: float = 0.0

    @property
    def first_loss(self) -> float:
        return self.losses[0] if self.losses else float("nan")

    @property
    def last_loss(self) -> float:
        """Mean of the last 10 % of steps (a single step is noisy)."""
        tail = self.losses[-max(1, len(self.losses) // 10) :]
        return sum(tail) / len(tail) if tail else float("nan")


class TeacherLogits:
    """The teacher's logits on the train split, computed batch by batch when a KD step first needs them, kept on the
    CPU for every later trial of the study.

    Tiny example: 30,000 train images, a trial of 100 steps of 64 draws 6,400 of them: the teacher runs on those
    6,400 (on the training device, in the step's own batches) and the next trial reuses them, computing only the
    images it draws for the first time.

    Args:
        teacher: the original model (left untouched: a copy runs on an accelerator).
        size: number of train images.
    """

    def __init__(self, teacher: nn.Module, size: int) -> None:
        self.teacher = teacher
        self.size = size
        self._logits: torch.Tensor | None = None
        self._known = torch.zeros(size, dtype=torch.bool)
        self._on_device: dict[str, nn.Module] = {}

    @classmethod
    def from_tensor(cls, logits: torch.Tensor) -> TeacherLogits:
        """Logits computed already (``[size, num_classes]``, in train order)."""
        known = cls(nn.Identity(), len(logits))
        known._logits = logits.detach().float().cpu()
        known._known[:] = True
        return known

    @property
    def computed(self) -> int:
        """How many train images have their logits (the teacher's work so far)."""
        return int(self._known.sum())

    @torch.no_grad()
    def fill(self, images: torch.Tensor, indices: torch.Tensor) -> None:
        """Compute the logits of the images of this batch that have none yet (on the batch's device)."""
        missing = ~self._known[indices.cpu()]
        if not bool(missing.any()):
            return
        rows = missing.to(images.device)
        logits = self._model(images.device)(images[rows]).float().cpu()
        if self._logits is None:
            self._logits = torch.zeros(self.size, logits.shape[1])
        where = indices.cpu()[missing]
        self._logits[where] = logits
        self._known[where] = True

    @torch.no_grad()
    def of_images(self, images: torch.Tensor) -> torch.Tensor:
        """The teacher's logits of ``images`` as they are (augmented ones: computed every time, never cached)."""
        return self._model(images.device)(images).float()

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """The logits of ``indices`` (all computed), on their device."""
        assert self._logits is not None and bool(self._known[indices.cpu()].all()), "fill() the batch first"
        return self._logits[indices.cpu()].to(indices.device, non_blocking=True)

    def _model(self, device: torch.device) -> nn.Module:
        if device.type == "cpu":
            return self.teacher.eval()
        if str(device) not in self._on_device:  # one copy per accelerator, kept: moving it every trial costs seconds
            self._on_device[str(device)] = copy.deepcopy(self.teacher).to(device).eval()
        return self._on_device[str(device)]


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """Hinton distillation loss; see the module docstring."""
    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=1),
        F.log_softmax(teacher_logits / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    ) * (temperature**2)
    hard = F.cross_entropy(student_logits, labels)
    return alpha * soft + (1.0 - alpha) * hard


def random_resized_crop_flip(
    *, seed: int, scale: tuple[float, float] = (0.35, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A batch augmentation: each image gets its own random crop (``scale`` of its area, aspect ``ratio``, as
    torchvision's RandomResizedCrop draws them), resized back to its size, and is mirrored with probability 1/2.
    Seeded: the same ``seed`` gives the same crops.

    Tiny example: a 224x224 image, area scale 0.5 and ratio 1 → a 158x158 crop at a random place, resized to 224x224.
    """
    import torchvision.transforms.v2.functional as TF

    generator = torch.Generator().manual_seed(seed)
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))

    def draw(height: int, width: int) -> tuple[int, int, int, int]:
        area = height * width
        for _ in range(10):
            target = area * (scale[0] + (scale[1] - scale[0]) * float(torch.rand(1, generator=generator)))
            aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * float(torch.rand(1, generator=generator)))
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
                left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
                return top, left, h, w
        return 0, 0, height, width  # no fit in 10 draws (extreme aspect): the whole image

    def augment(images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        out = torch.empty_like(images)
        for i in range(images.shape[0]):
            top, left, h, w = draw(height, width)
            crop = TF.resized_crop(images[i], top, left, h, w, [height, width], antialias=True)
            out[i] = TF.horizontal_flip(crop) if float(torch.rand(1, generator=generator)) < 0.5 else crop
        return out

    return augment


def distill(
    student: nn.Module,
    teacher_logits: TeacherLogits | torch.Tensor,
    train: Dataset,
    policy: DistillPolicy,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    augment: bool = False,
    recalibrate_bn: bool = True,
) -> DistillResult:
    """Fine-tune ``student`` in place for ``policy.steps`` steps, then re-estimate its BatchNorm statistics.

    Args:
        student: the pruned model (trained in place).
        teacher_logits: the teacher's logits on ``train`` (:class:`TeacherLogits`, filled as steps draw images), or
            all of them as a ``[len(train), num_classes]`` tensor in train order.
        train: the training split.
        policy: temperature, alpha, learning rate, steps, batch size.
        seed: shuffling (and augmentation) seed.
        device: where the steps run (``cuda`` for an accelerator); the student comes back on the CPU.
        augment: random resized crops and flips of every batch (:func:`random_resized_crop_flip`), the teacher's
            logits computed on each augmented batch; needs a :class:`TeacherLogits` (the teacher itself).
        recalibrate_bn: after at least one step, re-estimate the BatchNorm running statistics on ``min(len(train),
            BN_IMAGES)`` unaugmented train images (seeded by ``seed``, on ``device``); see
            :func:`~autocompress.compress.batchnorm.recalibrate_batchnorm`.
    """
    if isinstance(teacher_logits, torch.Tensor):
        if augment:
            raise ValueError("augment needs the teacher (a TeacherLogits), not logits of the unaugmented images")
        teacher_logits = TeacherLogits.from_tensor(teacher_logits)
    if teacher_logits.size != len(train):  # type: ignore[arg-type]
        raise ValueError(f"teacher_logits has {teacher_logits.size} rows but train has {len(train)} items")  # type: ignore[arg-type]
    started = time.perf_counter()
    targets = teacher_logits
    current: dict[str, torch.Tensor] = {}

    def teacher_on_batch(images: torch.Tensor, indices: torch.Tensor) -> None:
        current["logits"] = targets.of_images(images)

    def loss_fn(logits: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        teacher = current["logits"] if augment else targets.lookup(indices)
        return kd_loss(logits, teacher, labels, temperature=policy.temperature, alpha=policy.alpha)

    losses = fit(
        student,
        train,
        loss_fn,
        steps=policy.steps,
        lr=policy.lr,
        batch_size=policy.batch_size,
        seed=seed,
        before_step=teacher_on_batch if augment else targets.fill,
        transform=random_resized_crop_flip(seed=seed) if augment else None,
        device=device,
    )
    bn_images, bn_seconds = 0, 0.0
    if recalibrate_bn and losses:  # 0 steps means "no fine-tuning": the student stays exactly as it was given
        bn_started = time.perf_counter()
        bn_images = recalibrate_batchnorm(
            student, train, images=BN_IMAGES, batch_size=policy.batch_size, device=device, seed=seed
        )
        bn_seconds = time.perf_counter() - bn_started
    return DistillResult(
        losses=losses, seconds=time.perf_counter() - started, bn_images=bn_images, bn_seconds=bn_seconds
    )
