"""BatchNorm statistics re-estimation: fresh running means and variances for a pruned, fine-tuned model.

Pruning removes channels, so every BatchNorm after a cut sees inputs whose statistics differ from the ones it
recorded on the teacher, and a short distillation leaves its running estimates behind: each step moves them by
``momentum`` towards the batch's statistics, and torchvision's MobileNetV3 uses 0.01, so after 50 KD steps
``0.99**50 ≈ 61 %`` of each estimate is still the teacher's; what did move averages batches seen through weights
that have changed since (with the usual 0.1, the estimate spans the last ~10 steps). Measured on Fashion-MNIST at
64 px: re-estimating the statistics on train images raised val accuracy from 33.0 % to 77.2 % (resnet18, 20 %
pruned) and from 17.2 % to 44.2 % (mobilenet_v3_large, 10 % pruned).

:func:`recalibrate_batchnorm` forgets the running statistics and recomputes them as a plain (cumulative) average
over a seeded sample of train images, with only the BatchNorm layers in train mode; the weights do not change.
"""

from __future__ import annotations

import itertools
import logging

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

__all__ = ["BN_IMAGES", "batchnorm_layers", "recalibrate_batchnorm"]

logger = logging.getLogger(__name__)

BN_IMAGES = 1024
"""Train images BatchNorm statistics are re-estimated on by default (:func:`recalibrate_batchnorm` takes fewer when
the split is smaller): forward passes over 1,024 images cost about as much as five KD steps of 64 (a step's forward
and backward take about three forwards), and they average the statistics over 16 batches."""

_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def batchnorm_layers(model: nn.Module) -> list[nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d]:
    """The BatchNorm layers of ``model`` that keep running statistics (``track_running_stats=True``); those that
    do not always normalise with the batch's own statistics and have nothing to re-estimate."""
    return [m for m in model.modules() if isinstance(m, _BATCHNORM) and m.track_running_stats]


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module,
    dataset: Dataset,
    *,
    images: int,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    seed: int = 0,
) -> int:
    """Re-estimate the running mean and variance of every BatchNorm layer of ``model`` on ``images`` train images.

    Each layer's statistics are reset and its ``momentum`` set to ``None`` (a cumulative average: after ``k``
    batches the running mean is the mean of the ``k`` batch means), then the model runs forward, without gradients,
    with only its BatchNorm layers in train mode (Dropout, stochastic depth and auxiliary heads stay in eval: they
    must not change what the BatchNorm layers see). Afterwards each layer gets its own momentum back and every
    module its own train/eval mode; if a pass fails, the old statistics are put back too.

    Tiny example: 1,024 images in batches of 64 → 16 batches; a layer's running mean is the mean of the 16 batch
    means, its running variance the mean of the 16 unbiased batch variances. A last, shorter batch would count as
    much as a full one in that average, so it is left out when there is at least one full batch (1,000 images in
    batches of 64: 15 batches, 960 images used).

    Args:
        model: the model (changed in place: its BatchNorm buffers only).
        dataset: map-style ``(image, label)`` dataset, e.g. the train split (a store's ``__getitems__`` reads each
            batch in one go).
        images: how many images to sample (at most ``len(dataset)``; 0 does nothing).
        batch_size: images per forward pass.
        device: where the passes run (``None``: where the model's parameters are); the model goes back to the device
            it was on.
        seed: which images are drawn (the same seed, the same images).

    Returns:
        The number of images the statistics were computed on (0 for a model without BatchNorm).

    Example:
        >>> used = recalibrate_batchnorm(student, workload.train, images=1024, seed=0)  # doctest: +SKIP
    """
    if images < 0:
        raise ValueError(f"The number of `images` must be >= 0, but got {images}.")
    if batch_size <= 0:
        raise ValueError(f"`batch_size` must be positive, but got {batch_size}.")
    layers = batchnorm_layers(model)
    count = min(images, len(dataset))  # type: ignore[arg-type]
    if not layers or count == 0:
        return 0
    home = next(itertools.chain(model.parameters(), model.buffers())).device  # a BN layer has buffers at least
    device = home if device is None else torch.device(device)
    indices = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:count].tolist()  # type: ignore[arg-type]
    loader = DataLoader(dataset, batch_size=batch_size, sampler=indices, drop_last=count > batch_size)
    modes = {module: module.training for module in model.modules()}
    saved = [(layer.momentum, _statistics(layer)) for layer in layers]
    model.to(device)
    ok = False
    try:
        model.eval()
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None
            layer.train()
        used = 0
        for batch in loader:
            batch_images = batch[0] if isinstance(batch, (list, tuple)) else batch
            model(batch_images.to(device))
            used += len(batch_images)
        ok = True
    finally:
        for layer, (momentum, statistics) in zip(layers, saved):
            layer.momentum = momentum
            if not ok:
                for name, value in statistics.items():
                    getattr(layer, name).copy_(value)
        for module, training in modes.items():
            module.training = training
        model.to(home)
    logger.debug("re-estimated %d BatchNorm layers on %d images", len(layers), used)
    return used


def _statistics(layer: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of a BatchNorm layer's running buffers (to put back if a pass fails)."""
    return {
        name: getattr(layer, name).clone()
        for name in ("running_mean", "running_var", "num_batches_tracked")
        if getattr(layer, name, None) is not None
    }
