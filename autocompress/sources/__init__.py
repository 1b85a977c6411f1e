"""Bring-your-own model and data: turn ``--model`` / ``--data`` specs into an ``nn.Module`` and train/val/test splits.

Every spec form is a registered source (:class:`ModelSource`, :class:`DataSource`; :mod:`autocompress.sources._base`)
that carries its name, form, help line and the options it reads; :func:`list_model_sources` and
:func:`list_data_sources` name them. Model specs: ``demo``, ``torchvision:NAME``, ``package.module:factory`` (plus
``--weights`` checkpoints, or ``torchvision:ENUM`` for torchvision's pretrained weights, whose preprocessing
:func:`weights_transform` returns for ``load_data(..., preprocess=...)``); see :mod:`autocompress.sources.models`.
Data specs: ``digits``, ``imagefolder:PATH``, ``torchvision:NAME:ROOT``, ``package.module:fn``; see
:mod:`autocompress.sources.data`. :mod:`autocompress.sources.workload` puts a model and its data together.

Adding a source is one module with one subclass, which registers itself when imported; a module of this package
named ``_model_<name>.py`` or ``_data_<name>.py`` is imported on first use. E.g. ``_data_npz.py``::

    class NpzData(DataSource):
        name, form, example = "npz", "npz:FILE", "npz:./digits.npz"
        help = "arrays x_train, y_train, x_val, y_val (and x_test, y_test) in one .npz file"

        def load(self, spec: str, options: DataOptions) -> DataSplits:
            ...
"""

from __future__ import annotations

from typing import Any

from autocompress.sources._base import (
    DataOptions,
    DataSource,
    ModelSource,
    data_spec_forms,
    get_data_source,
    get_model_source,
    list_data_sources,
    list_model_sources,
    match_data_source,
    match_model_source,
    model_spec_forms,
)
from autocompress.sources.data import DataSplits, load_data
from autocompress.sources.models import (
    TORCHVISION_WEIGHTS_PREFIX,
    check_num_classes,
    list_torchvision_models,
    load_model,
    weights_transform,
)

__all__ = [
    "TORCHVISION_WEIGHTS_PREFIX",
    "DataOptions",
    "DataSource",
    "DataSplits",
    "ModelSource",
    "check_num_classes",
    "data_spec_forms",
    "get_data_source",
    "get_model_source",
    "list_data_sources",
    "list_model_sources",
    "list_torchvision_models",
    "load_data",
    "load_model",
    "match_data_source",
    "match_model_source",
    "model_spec_forms",
    "weights_transform",
]


def __getattr__(name: str) -> Any:
    # The old constants, kept for callers: now model_spec_forms() / data_spec_forms(), read from the registry when
    # asked for (it loads the built-in sources on first use, not at import).
    if name == "MODEL_SPEC_FORMS":
        return model_spec_forms()
    if name == "DATA_SPEC_FORMS":
        return data_spec_forms()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
