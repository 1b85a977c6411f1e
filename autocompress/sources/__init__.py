"""Bring-your-own model and data: turn ``--model`` / ``--data`` specs into an ``nn.Module`` and train/val/test splits.

Model specs: ``torchvision:NAME``, ``package.module:factory`` (plus ``--weights`` checkpoints, or ``torchvision:ENUM``
for torchvision's pretrained weights, whose preprocessing :func:`weights_transform` returns for
``load_data(..., preprocess=...)``); see :mod:`autocompress.sources.models`. Data specs: ``imagefolder:PATH``, ``torchvision:NAME:ROOT``, ``package.module:fn``;
see :mod:`autocompress.sources.data`. The built-in ``demo`` model and ``digits`` data live in
:mod:`autocompress.sources.workload`.
"""

from __future__ import annotations

from autocompress.sources.data import DATA_SPEC_FORMS, DataSplits, load_data
from autocompress.sources.models import (
    MODEL_SPEC_FORMS,
    TORCHVISION_WEIGHTS_PREFIX,
    check_num_classes,
    list_torchvision_models,
    load_model,
    weights_transform,
)

__all__ = [
    "DATA_SPEC_FORMS",
    "MODEL_SPEC_FORMS",
    "TORCHVISION_WEIGHTS_PREFIX",
    "DataSplits",
    "check_num_classes",
    "list_torchvision_models",
    "load_data",
    "load_model",
    "weights_transform",
]
