"""Resuming a study honestly, and recovering the trial a killed process left RUNNING.

**What a trial means.** A trial's numbers are only comparable with the study's other trials if it was measured on
the same teacher, the same data and preprocessing, the same space, the same runtime settings and the same CPU. All of
that is summarised in a :func:`study_identity` stored with the study when it is created; a rerun whose identity
differs is refused with one line naming each difference and the fix. The teacher is identified by a hash of its
weights (not its file name), the data by its split sizes and a hash of labels and sample images (so a change of
``--normalize`` or ``--max-samples`` shows), the space by a hash of its content (an edited file with the same name).

**Killed processes.** A trial whose process was killed (SIGKILL, power loss) stays RUNNING in the storage forever.
Every trial records its owner (host, host id, pid and process uuid: :func:`autocompress.scale.workers.owner`) when it
starts; before each trial a RUNNING trial whose owner process on this host id is gone is marked FAIL with the reason,
and its parameters are enqueued again so the study still ends with the requested number of finished trials. Trials
owned by other hosts (or other containers with the same host name) are left to the storage's heartbeat (RDB storages
fail them after the grace period, Optuna's ``RetryHeartbeatStaleTrialCallback`` re-queues them).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import optuna
import torch
from torch.utils.data import Dataset

from autocompress.config import SearchConfig
from autocompress.errors import ConfigError
from autocompress.scale.storage import fail_trial
from autocompress.scale.workers import owner, owner_is_dead_here
from autocompress.sources.workload import Workload
from autocompress.study.record import INTERRUPTED
from autocompress.study.space import SearchSpace

__all__ = [
    "study_identity",
    "check_identity",
    "recover_interrupted",
    "owner_attrs",
    "INTERRUPTED",
    "OWNER_ATTR",
    "IDENTITY_ATTR",
]

IDENTITY_ATTR = "identity"
OWNER_ATTR = "owner"
# Options that do not change what a trial means: how many trials, how long, where, and which sampler proposes next.
_NOT_IDENTITY = {
    "trials",
    "timeout",
    "study_name",
    "storage",
    "output",
    "seed",
    "sampler",
    "download",
    "trust_checkpoint",
    "allow_low_teacher_accuracy",
    "weights",
    "device",
    "workers",
    "build_only",
    "prefer",  # the choice rule: applied when the study finishes, to whatever trials it holds
}
_SAMPLE_IMAGES = 32
# How to fix each kind of difference.
_FIX = {
    "teacher_sha256": "the teacher's weights changed",
    "data": "the data or its preprocessing changed",
    "space_sha256": "the search space file's content changed",
    "cpu": "the study was measured on another CPU",
    "runtimes": "the installed runtimes changed (--runtime auto searches what was installed at its start)",
}


def _sha256_model(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _data_summary(name: str, dataset: Dataset) -> str:
    """Size, label hash and a hash of the first images of one split: changes when the data or its preprocessing do."""
    n = len(dataset)  # type: ignore[arg-type]
    digest = hashlib.sha256(str(n).encode())
    for i in range(min(n, _SAMPLE_IMAGES)):
        image, label = dataset[i]
        digest.update(np.asarray(image, dtype=np.float32).tobytes())
        digest.update(str(int(label)).encode())
    return f"{name}:{n}:{digest.hexdigest()[:12]}"


def study_identity(
    workload: Workload, space: SearchSpace, config: SearchConfig, fingerprint: Mapping[str, Any]
) -> dict[str, Any]:
    """Everything that changes what a trial means, as a flat JSON-able dict (see the module docstring)."""
    options = {k: v for k, v in config.to_dict().items() if k not in _NOT_IDENTITY}
    return {
        **{f"option:{k}": v for k, v in options.items()},
        "teacher_sha256": _sha256_model(workload.model),
        "input_shape": list(workload.input_shape),
        "num_classes": workload.num_classes,
        "data": " ".join(_data_summary(n, getattr(workload, n)) for n in ("train", "val", "test")),
        "space_sha256": hashlib.sha256(json.dumps(dict(space.raw), sort_keys=True, default=str).encode()).hexdigest()[
            :16
        ],
        "cpu": f"{fingerprint.get('cpu')} ({fingerprint.get('isa')})",
        # --runtime auto: the runtimes and precisions searched (a runtime installed later would change the space)
        **({"runtimes": " ".join(f"{o.name}:{'/'.join(o.modes)}" for o in space.offers)} if space.offers else {}),
    }


def check_identity(stored: Mapping[str, Any], current: Mapping[str, Any], *, study_name: str) -> None:
    """Refuse a resume whose identity differs from the stored one; the message names every difference."""
    diffs = []
    for key in sorted(set(stored) | set(current)):
        old, new = stored.get(key), current.get(key)
        if old != new:
            label = key.removeprefix("option:").replace("_", "-")
            why = _FIX.get(key)
            if key.startswith("option:"):
                diffs.append(f"--{label} {old!r} → {new!r}")
            else:
                diffs.append(f"{why or label} ({old} → {new})")
    if diffs:
        raise ConfigError(
            f"study {study_name!r} was created with other settings: {'; '.join(diffs)}; its trials would not "
            "be comparable — rerun with the original model, data, space and options, or pick a new --study-name"
        )


def owner_attrs() -> dict[str, Any]:
    """Who runs a trial (written when the trial starts): :func:`autocompress.scale.workers.owner`."""
    return owner()


def recover_interrupted(
    study: optuna.Study, *, on_failed: Callable[[optuna.trial.FrozenTrial, str], None]
) -> list[int]:
    """Fail RUNNING trials whose owner process on this host is gone and enqueue their parameters again.

    ``on_failed(trial, reason)`` records the failure (the caller writes a failed TrialRecord). Returns the numbers of
    the recovered trials.
    """
    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        who = trial.user_attrs.get(OWNER_ATTR) or {}
        if not who or not owner_is_dead_here(who):
            continue
        reason = (
            f"{INTERRUPTED}: process {who.get('pid')} on {who.get('host')} ended during this trial; its policy "
            "was queued again"
        )
        try:
            on_failed(trial, reason)  # while the trial is still RUNNING: a finished trial's attributes are frozen
            fail_trial(study, trial)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process got there first
        retry_attrs = {k: v for k, v in trial.user_attrs.items() if k in ("role", "label")}
        retry_attrs["retry_of"] = trial.number
        study.enqueue_trial(dict(trial.params), user_attrs=retry_attrs, skip_if_exists=False)
        recovered.append(trial.number)
    return recovered
