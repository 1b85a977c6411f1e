"""The ``digits`` data source: scikit-learn's 8x8 handwritten digits, shipped in its wheel (no download).

1,797 grayscale images of 10 classes, scaled to [0, 1], upsampled to ``--input-size`` (32 by default), standardised
with the whole set's mean and std, and split 60/20/20 (stratified, fixed seed) so that teachers, studies and tests
all see the same held-out images. The demo teacher (``--model demo``) is trained on it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from autocompress.errors import WorkloadError
from autocompress.sources._base import DataOptions, DataSource
from autocompress.sources._types import DataSplits

__all__ = ["DIGITS_PREPROCESS", "DIGITS_SIZE", "DigitsData", "load_digits_splits"]

DIGITS_SIZE = 32  # the demo teacher's input size
DIGITS_PREPROCESS = "digits: pixels / 16, bilinear resize, standardised with the whole set's mean and std"
_SPLIT_SEED = 0  # fixed: the split must not move when the user changes the search seed


def load_digits_splits(*, size: int = DIGITS_SIZE) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
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
    val_idx, test_idx = train_test_split(
        rest_idx, test_size=0.5, stratify=labels.numpy()[rest_idx], random_state=_SPLIT_SEED
    )

    def subset(idx: np.ndarray) -> TensorDataset:
        t = torch.as_tensor(np.sort(idx))
        return TensorDataset(images[t].contiguous(), labels[t].contiguous())

    return subset(train_idx), subset(val_idx), subset(test_idx)


class DigitsData(DataSource):
    """``digits``: reads ``--input-size`` only; the split is fixed and the images are standardised already."""

    name = "digits"
    form = "digits"
    example = "digits"
    help = "scikit-learn's handwritten digits (1,797 images, 10 classes, shipped), the demo's data"
    settings = ("--input-size",)

    def check(self, spec: str, options: DataOptions) -> None:
        if options.normalize is not None:
            raise WorkloadError(
                f"--normalize {options.normalize} : --data digits is standardised by its own mean/std, so --normalize "
                "does not apply; it sets the normalisation of imagefolder: and torchvision: data"
            )

    def load(self, spec: str, options: DataOptions) -> DataSplits:
        train, val, test = load_digits_splits(size=options.input_size or DIGITS_SIZE)
        shape = (int(train[0][0].shape[0]), int(train[0][0].shape[1]), int(train[0][0].shape[2]))
        return DataSplits(
            train=train,
            val=val,
            test=test,
            input_shape=shape,
            num_classes=10,
            info={
                "data": "digits (sklearn load_digits)",
                "preprocess": DIGITS_PREPROCESS,
                "train_size": len(train),
                "val_size": len(val),
                "test_size": len(test),
            },
        )
