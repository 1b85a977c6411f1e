"""The search, in the order a trial's data flows through it.

- :mod:`.space`: a YAML search space → one :class:`~autocompress.policy.Policy` per trial.
- :mod:`.trial`: policy → prune → artifact → latency gate → distill → artifact → measure → :class:`.record.TrialRecord`.
- :mod:`.record`: the typed record of one trial, written to and read from the study there only.
- :mod:`.reference`: the teacher measured once per study: the budget's yardstick.
- :mod:`.probe`: the reachable latency range before trial 1.
- :mod:`.session`: the study as phases: set up → run trials → finish.
- :mod:`.phases`: what runs around the sampler: near-miss promotion, layer refinement, rescue, confirmed choice.
- :mod:`.pareto`: the Pareto set, hypervolume and the one choice rule.
- :mod:`.resume`: a study's identity, resume checks, interrupted trials.
- :mod:`.samplers`: the registry of Optuna samplers (``--sampler``).

Import from the modules; this package re-exports nothing, so importing a record never loads the whole search.
"""

__all__: list[str] = []
