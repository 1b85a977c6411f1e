"""Knowledge distillation: fine-tune the pruned student toward the original model's soft predictions.

Loss (Hinton, Vinyals & Dean 2015)::

    L = alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)

The ``T^2`` factor keeps the soft-target gradients on the same scale as the hard-label ones when T changes.
The teacher's logits are computed once per study (no data augmentation, so they never go stale) and looked up by
sample index, which makes a distillation step cost one student forward/backward only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from autocompress.compress.training import fit
from autocompress.policy import DistillPolicy

__all__ = ["DistillResult", "kd_loss", "distill"]


@dataclass(frozen=True)
class DistillResult:
    """What fine-tuning did: per-step losses and wall time."""

    losses: list[float]
    seconds: float

    @property
    def first_loss(self) -> float:
        return self.losses[0] if self.losses else float("nan")

    @property
    def last_loss(self) -> float:
        """Mean of the last 10 % of steps (a single step is noisy)."""
        tail = self.losses[-max(1, len(self.losses) // 10) :]
        return sum(tail) / len(tail) if tail else float("nan")


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


def distill(
    student: nn.Module,
    teacher_logits: torch.Tensor,
    train: Dataset,
    policy: DistillPolicy,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> DistillResult:
    """Fine-tune ``student`` in place for ``policy.steps`` steps.

    Args:
        student: the pruned model (trained in place).
        teacher_logits: ``[len(train), num_classes]`` logits of the original model on ``train``, in order.
        train: the training split the logits were computed on.
        policy: temperature, alpha, learning rate, steps, batch size.
        seed: shuffling seed.
        device: where the steps run (``cuda`` for an accelerator); the student comes back on the CPU.
    """
    if len(teacher_logits) != len(train):  # type: ignore[arg-type]
        raise ValueError(f"teacher_logits has {len(teacher_logits)} rows but train has {len(train)} items")  # type: ignore[arg-type]
    started = time.perf_counter()
    teacher_logits = teacher_logits.to(device)

    def loss_fn(logits: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        return kd_loss(logits, teacher_logits[indices], labels, temperature=policy.temperature, alpha=policy.alpha)

    losses = fit(
        student,
        train,
        loss_fn,
        steps=policy.steps,
        lr=policy.lr,
        batch_size=policy.batch_size,
        seed=seed,
        device=device,
    )
    return DistillResult(losses=losses, seconds=time.perf_counter() - started)
