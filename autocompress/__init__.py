"""autocompress: find the best pruning + distillation + int8 policy for a PyTorch classifier under a latency budget."""

from __future__ import annotations

from autocompress.api import SearchOutcome, search
from autocompress.errors import (
    AutocompressError,
    ConfigError,
    MissingDependencyError,
    UnsupportedModelError,
    WorkloadError,
)
from autocompress.policy import DistillPolicy, Policy, PrunePolicy, QuantPolicy

__all__ = [
    "AutocompressError",
    "ConfigError",
    "DistillPolicy",
    "MissingDependencyError",
    "Policy",
    "PrunePolicy",
    "QuantPolicy",
    "SearchOutcome",
    "UnsupportedModelError",
    "WorkloadError",
    "search",
]

__version__ = "0.1.0"
