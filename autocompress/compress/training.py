"""One small training loop shared by teacher training and knowledge distillation.

Written by hand because what we need is ~40 lines (seeded shuffling, index-aware batches so distillation can look up
cached teacher logits, a cosine schedule and a fixed step budget); a trainer framework would add a dependency and
hide those details.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from autocompress.hardware.cpu import process_cores

__all__ = ["BatchHook", "BatchTransform", "IndexedDataset", "fit", "predict_logits", "training_setup"]

logger = logging.getLogger(__name__)

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``loss_fn(student_logits, labels, sample_indices) -> scalar loss``."""

BatchTransform = Callable[[torch.Tensor], torch.Tensor]
"""``transform(images) -> images``: train-time augmentation of a batch, on the training device."""

BatchHook = Callable[[torch.Tensor, torch.Tensor], None]
"""``before_step(images, sample_indices)``, called with each batch on the training device before the forward pass
(distillation fills the teacher's logits of images it has not seen yet)."""


class IndexedDataset(Dataset):
    """Wraps a map-style ``(image, label)`` dataset so each item also carries its index."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        image, label = self.dataset[index]
        return image, int(label), index


def fit(
    model: nn.Module,
    dataset: Dataset,
    loss_fn: LossFn,
    *,
    steps: int,
    lr: float,
    batch_size: int = 64,
    seed: int = 0,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    on_step: Callable[[int, float], None] | None = None,
    before_step: BatchHook | None = None,
    transform: BatchTransform | None = None,
    device: torch.device | str = "cpu",
    mixed_precision: bool | None = None,
) -> list[float]:
    """Train ``model`` in place for exactly ``steps`` optimizer steps with a cosine learning-rate decay.

    On another ``device`` (``cuda``) the model is moved there for training and back to the CPU afterwards; the loss
    function and ``before_step`` get the batch's tensors on that device, after ``transform`` (augmentation). On
    CUDA, batches are read by DataLoader workers into pinned memory, images and weights are channels-last (the layout
    tensor cores run convolutions in) and, with ``mixed_precision`` (``None``: on where the GPU has bf16), the forward
    pass runs under bf16 autocast while the weights and the optimizer stay float32.

    Returns:
        The loss of every step (tests use it to check that distillation actually learns).
    """
    if steps <= 0:
        return []
    device = torch.device(device)
    model.to(device)
    try:
        return _fit(
            model,
            dataset,
            loss_fn,
            steps=steps,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            optimizer=optimizer,
            weight_decay=weight_decay,
            on_step=on_step,
            before_step=before_step,
            transform=transform,
            device=device,
            mixed_precision=_bf16_autocast(device) if mixed_precision is None else mixed_precision,
        )
    finally:
        model.to("cpu", memory_format=torch.contiguous_format)


def _fit(
    model: nn.Module,
    dataset: Dataset,
    loss_fn: LossFn,
    *,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    optimizer: str,
    weight_decay: float,
    on_step: Callable[[int, float], None] | None,
    before_step: BatchHook | None,
    transform: BatchTransform | None,
    device: torch.device,
    mixed_precision: bool,
) -> list[float]:
    generator = torch.Generator().manual_seed(seed)
    accelerated = device.type != "cpu"
    loader = DataLoader(
        IndexedDataset(dataset),
        batch_size=batch_size,
        shuffle=True,
        generator=generator,
        drop_last=len(dataset) > batch_size,
        num_workers=_loader_workers(device),
        pin_memory=accelerated,
    )  # type: ignore[arg-type]
    if accelerated:
        model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            params, lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True
        )
    else:
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1.0 + math.cos(math.pi * step / steps)))
    model.train()
    losses: list[float] = []
    while len(losses) < steps:
        for images, labels, indices in loader:
            if accelerated:
                images, labels, indices = (t.to(device, non_blocking=True) for t in (images, labels, indices))
                if images.dim() == 4:
                    images = images.contiguous(memory_format=torch.channels_last)
            if transform is not None:
                images = transform(images)
            if before_step is not None:
                before_step(images, indices)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed_precision):
                loss = loss_fn(_logits(model(images)), labels, indices).float()
            if not torch.isfinite(loss):
                # A diverged run would only produce garbage weights: stop and say why (the trial fails, the study
                # goes on).
                model.eval()
                raise FloatingPointError(
                    f"training loss is not finite ({float(loss.detach())}) at step {len(losses) + 1} "
                    f"with lr {lr:g}; this run diverged"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            losses.append(float(loss.detach()))
            if on_step is not None:
                on_step(len(losses), losses[-1])
            if len(losses) >= steps:
                break
    model.eval()
    return losses


def training_setup(device: torch.device | str) -> str:
    """Where and how :func:`fit` trains by default on ``device``, for records and reports (e.g. ``cuda:0, bf16
    autocast, channels-last``)."""
    device = torch.device(device)
    if device.type == "cpu":
        return "cpu"
    return ", ".join([str(device), *(["bf16 autocast"] if _bf16_autocast(device) else []), "channels-last"])


def _bf16_autocast(device: torch.device) -> bool:
    """bf16 autocast by default only on a GPU that runs bf16 natively; on the CPU training stays float32."""
    return device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def _loader_workers(device: torch.device) -> int:
    """DataLoader worker processes: none on the CPU (they would take cores from the training itself); on a GPU,
    up to 4, so that reading and normalising the next batches overlaps the GPU's step."""
    if device.type == "cpu":
        return 0
    return max(0, min(4, len(process_cores()) // 2))


def _logits(output: object) -> torch.Tensor:
    """Class scores from a forward pass; some models (GoogLeNet, Inception) add auxiliary heads in train mode."""
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits"):
        return output.logits  # type: ignore[no-any-return]
    if isinstance(output, (tuple, list)):
        return output[0]
    raise TypeError(f"model returned {type(output).__name__}; expected a logits tensor")


@torch.no_grad()
def predict_logits(
    model: nn.Module, dataset: Dataset, *, batch_size: int = 256, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Logits of ``model`` for every item of ``dataset``, in dataset order, computed on ``device`` and returned there
    (the model is moved back to the CPU)."""
    device = torch.device(device)
    model.eval()
    model.to(device)
    try:
        outputs = [model(images.to(device)) for images, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False)]  # type: ignore[arg-type]
    finally:
        model.to("cpu")
    return torch.cat(outputs)
