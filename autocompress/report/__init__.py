"""What the user gets after a search: the exported folder and everything that explains it.

- :mod:`.export`: the chosen model's folder (artifact, PyTorch program, policy, metrics; no pickles).
- :mod:`.table`: the Pareto table in the terminal and the study's CSV files.
- :mod:`.html`: ``report.html`` and its PNG charts (:mod:`.charts`), with :mod:`.explain`'s sensitivity profile
  and technique breakdown.
- :mod:`.dashboard`: optuna-dashboard on the study's storage.
- :mod:`.progress`: the live progress bar of ``autocompress search``.

Import from the modules; this package re-exports nothing.
"""

__all__: list[str] = []
