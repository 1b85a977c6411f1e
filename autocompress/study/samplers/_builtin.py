"""The samplers that come with Optuna: TPE (the default), NSGA-II, GP and random."""

from __future__ import annotations

import warnings

import optuna

from autocompress.study.samplers._registry import register_sampler

__all__ = ["gp", "nsga2", "random", "tpe"]


@register_sampler("tpe", help="multivariate, grouped TPE: models correlated ratios jointly (default)")
def tpe(*, seed: int | None, trials: int) -> optuna.samplers.BaseSampler:
    # multivariate + group: TPE models correlated ratios jointly and handles the conditional KD parameters.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, n_startup_trials=max(3, min(10, trials // 3))
        )


@register_sampler("nsga2", help="NSGA-II, a genetic algorithm for several objectives (population from --trials)")
def nsga2(*, seed: int | None, trials: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(20, trials // 3)))


@register_sampler("gp", help="Gaussian-process Bayesian optimisation (slower per proposal; few trials)")
def gp(*, seed: int | None, trials: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GPSampler(seed=seed)


@register_sampler("random", help="independent uniform sampling: the baseline every sampler should beat")
def random(*, seed: int | None, trials: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)
