"""Several processes and hosts on one study, through Optuna's own storages.

- :mod:`.storage`: the one place that opens a storage and the only module that touches Optuna's private API.
- :mod:`.workers`: processes on one study: storage locks, trial slots, the host's timing guard.
- :mod:`.remote`: build on one host, measure on the target (a measure worker answers build hosts).

Import from the modules; this package re-exports nothing.
"""

__all__: list[str] = []
