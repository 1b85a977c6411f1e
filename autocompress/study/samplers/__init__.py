"""Optuna samplers behind a registry: ``--sampler NAME`` picks one.

Each built-in sampler is one module in this package that registers a factory with :func:`register_sampler`; the
package imports every such module the first time the registry is queried, so adding a sampler is one new module
(plus its tests). Other packages add theirs through the ``autocompress.samplers`` entry-point group (the entry
point names a module that registers on import).

Example — a sampler in ``autocompress/study/samplers/_qmc.py``::

    import optuna
    from autocompress.study.samplers._registry import register_sampler

    @register_sampler("qmc", help="quasi-Monte Carlo (Sobol) points: even coverage, no model")
    def qmc(*, seed: int, trials: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.QMCSampler(seed=seed)
"""

from __future__ import annotations

from autocompress.study.samplers._registry import (
    SamplerEntry,
    get_sampler,
    list_samplers,
    make_sampler,
    register_sampler,
)

__all__ = ["SamplerEntry", "get_sampler", "list_samplers", "make_sampler", "register_sampler"]
