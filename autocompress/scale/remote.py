"""A trial built on one host and measured on another: the deploy target serves every latency and accuracy figure.

**Why.** Fine-tuning wants a GPU; latency means something only on the CPU the model will run on. ``search
--build-only`` runs a study's trials on a build host (prune, distill on ``--device``, export the artifact) and never
times or scores anything itself: every measurement is a *request* that ``autocompress measure-worker`` serves on the
target host, with the study's own protocol (side by side with the teacher artifact, the core guard, the target's
anchor). The target also sets the study up (teacher reference, probe, baselines: the budget is the target's) and
finishes it (rescue, the fresh-process confirmation of the choice, export), exactly as ``search`` does.

**How requests travel.** Through the study's storage: a queue is an auxiliary study ``<study>.queue.measure``; a
request is one of its trials (user attribute ``request``: what to do, the artifact's paths and SHA-256, the
precision plan), RUNNING until the measure worker sets ``result`` and completes it (or fails it with ``error``).
The artifact's files themselves are not copied: ``--output`` must be a folder both hosts see at the same path (one
host, or a shared filesystem); the target checks each file's hash before it measures and says so when it cannot
see them.

    target$ python -m autocompress measure-worker --storage postgresql://... --study-name big --trials 30
    gpu$    python -m autocompress search --build-only --device cuda --storage postgresql://... --study-name big ...
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import optuna

from autocompress.errors import AutocompressError
from autocompress.measure.latency import Latency, NoiseTally
from autocompress.policy import QuantPolicy
from autocompress.runtimes import Artifact
from autocompress.scale.storage import QUEUE_INFIX, storage_of
from autocompress.scale.storage import trial_id as storage_trial_id
from autocompress.scale.workers import StorageLock, owner

__all__ = ["RemoteMeter", "MeasureQueue", "MeasureError", "artifact_request", "artifact_from_request", "QUEUE_PURPOSE"]

QUEUE_PURPOSE = "measure"
_TIMEOUT_S = 900.0  # a request nobody answered in this long fails its trial (no measure worker on the target?)


class MeasureError(AutocompressError):
    """A measurement the target could not take (its reason is the trial's fail reason)."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def artifact_request(artifact: Artifact) -> dict[str, Any]:
    """What the target needs to open ``artifact``: its runtime, precision plan, and every file with its hash."""
    files = [p.resolve() for p in artifact.all_files if p.is_file()]
    return {
        "path": str(artifact.path.resolve()),
        "runtime": artifact.runtime,
        "quant": dataclasses.asdict(artifact.quant),
        "files": {str(p): _sha256(p) for p in files},
    }


def artifact_from_request(data: Mapping[str, Any]) -> Artifact:
    """The artifact a request names, after checking that this host sees exactly the files the build host wrote."""
    for name, sha in dict(data["files"]).items():
        path = Path(name)
        if not path.is_file():
            raise MeasureError(
                f"{path} is not visible on this host: --output must be a folder the build host and "
                "the target both see at the same path (one host, or a shared filesystem)"
            )
        if _sha256(path) != sha:
            raise MeasureError(f"{path} differs from the file the build host wrote (SHA-256): a stale or partial copy")
    return Artifact(
        Path(data["path"]), QuantPolicy(**data["quant"]), runtime=data["runtime"]
    )  # fp32_layers: any sequence


class MeasureQueue:
    """The request queue of one study (module docstring): requesters :meth:`submit` and :meth:`wait`; the measure
    worker :meth:`claim` s and :meth:`answer` s."""

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        self.storage = storage_of(study)
        self.name = f"{study.study_name}{QUEUE_INFIX}{QUEUE_PURPOSE}"
        try:
            self.queue_id = self.storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], self.name)
        except optuna.exceptions.DuplicatedStudyError:
            self.queue_id = self.storage.get_study_id_from_name(self.name)

    # ------------------------------------------------------------------ the requester's side
    def submit(self, kind: str, payload: Mapping[str, Any]) -> int:
        trial_id = self.storage.create_new_trial(self.queue_id)
        self.storage.set_trial_user_attr(
            trial_id, "request", {"kind": kind, **payload, "by": owner(), "at": time.time()}
        )
        return trial_id

    def wait(self, trial_id: int, *, timeout_s: float = _TIMEOUT_S, poll_s: float = 0.1) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            trial = self.storage.get_trial(trial_id)
            if trial.state == optuna.trial.TrialState.COMPLETE:
                return dict(trial.user_attrs["result"])
            if trial.state == optuna.trial.TrialState.FAIL:
                raise MeasureError(f"the target could not measure it: {trial.user_attrs.get('error', 'no reason')}")
            if time.monotonic() >= deadline:
                with contextlib.suppress(Exception):  # nobody may pick it up after we gave up
                    self.storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
                claimed = trial.user_attrs.get("claimed")
                raise MeasureError(
                    f"no answer from a measure worker in {timeout_s:.0f} s"
                    + (
                        f" (claimed by {claimed.get('host')} pid {claimed.get('pid')})"
                        if claimed
                        else f": start `python -m autocompress measure-worker` on the target with this study's "
                        f"--storage and --study-name {self.study.study_name!r}"
                    )
                )
            time.sleep(poll_s)

    def ask(self, kind: str, payload: Mapping[str, Any], *, timeout_s: float = _TIMEOUT_S) -> dict[str, Any]:
        return self.wait(self.submit(kind, payload), timeout_s=timeout_s)

    # ------------------------------------------------------------------ the measure worker's side
    def pending(self) -> list[optuna.trial.FrozenTrial]:
        """Requests nobody has claimed, oldest first."""
        running = self.storage.get_all_trials(self.queue_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        return [t for t in running if "request" in t.user_attrs and "claimed" not in t.user_attrs]

    def claim(self, trial: optuna.trial.FrozenTrial) -> bool:
        """Claim one request (under the queue's storage lock, so two measure workers never take the same one)."""
        with StorageLock(self.study, "measure-claim", stale_s=60.0, poll_s=0.05):
            fresh = self.storage.get_trial(storage_trial_id(trial))
            if fresh.state != optuna.trial.TrialState.RUNNING or "claimed" in fresh.user_attrs:
                return False
            self.storage.set_trial_user_attr(storage_trial_id(trial), "claimed", owner())
        return True

    def answer(self, trial_id: int, result: Mapping[str, Any] | None = None, *, error: str | None = None) -> None:
        if error is not None:
            self.storage.set_trial_user_attr(trial_id, "error", error)
            self.storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
            return
        self.storage.set_trial_user_attr(trial_id, "result", dict(result or {}))
        self.storage.set_trial_state_values(trial_id, optuna.trial.TrialState.COMPLETE, values=[0.0])


class RemoteMeter:
    """A :class:`~autocompress.measure.latency.LatencyMeter` stand-in for a build host: every figure is taken by
    the measure worker on the target (module docstring). ``measure`` and ``score`` block until it answers."""

    def __init__(self, study: optuna.Study, *, timeout_s: float = _TIMEOUT_S) -> None:
        self.queue = MeasureQueue(study)
        self.timeout_s = timeout_s
        self.tally = NoiseTally()
        self.anchor_ms: float | None = None
        self.measured_by: dict[str, Any] | None = None  # the target host that answered last

    def _ask(self, kind: str, artifact: Artifact) -> dict[str, Any]:
        result = self.queue.ask(kind, {"artifact": artifact_request(artifact)}, timeout_s=self.timeout_s)
        self.measured_by = result.get("by")
        return result

    def measure(self, artifact: Artifact, **_: Any) -> Latency:
        """``artifact`` timed on the target side by side with the study's teacher artifact there."""
        result = self._ask("latency", artifact)
        self.anchor_ms = result.get("anchor_ms", self.anchor_ms)
        return self.tally.count(Latency.from_dict(result["latency"]))

    def score(self, artifact: Artifact) -> tuple[float, dict[str, int]]:
        """Val top-1 of ``artifact`` on the target's runtime and the precision each layer ran in there."""
        result = self._ask("accuracy", artifact)
        return float(result["top1"]), {str(k): int(v) for k, v in dict(result["precision"]).items()}

    def noise_summary(self) -> dict[str, Any]:
        return {
            **self.tally.summary(),
            "reference_anchor_ms": self.anchor_ms,
            "measured_on": "the target (measure worker)",
        }


def serve(
    queue: MeasureQueue,
    *,
    measure: Callable[[Artifact], Latency],
    score: Callable[[Artifact], tuple[float, dict[str, int]]],
    anchor: Callable[[], float | None],
    done: Callable[[], bool],
    say: Callable[[str], None],
    poll_s: float = 0.1,
) -> int:
    """Answer requests until ``done()`` holds and none is pending; returns how many were answered."""
    answered = 0
    for trial in _requests(queue, done=done, poll_s=poll_s):
        request = dict(trial.user_attrs["request"])
        try:
            artifact = artifact_from_request(request["artifact"])
            if request["kind"] == "latency":
                latency = measure(artifact)
                result: dict[str, Any] = {"latency": latency.to_dict(), "anchor_ms": anchor()}
            elif request["kind"] == "accuracy":
                top1, precision = score(artifact)
                result = {"top1": top1, "precision": precision}
            else:
                raise MeasureError(f"unknown request kind {request['kind']!r} (a newer build host?)")
        except Exception as exc:  # the requester's trial fails with this reason; the worker goes on
            queue.answer(storage_trial_id(trial), error=f"{type(exc).__name__}: {exc}")
            say(f"request {trial.number} ({request.get('kind')}) failed: {exc}")
            continue
        queue.answer(storage_trial_id(trial), {**result, "by": owner()})
        answered += 1
    return answered


def _requests(queue: MeasureQueue, *, done: Callable[[], bool], poll_s: float) -> Iterator[optuna.trial.FrozenTrial]:
    """Claimed requests, one at a time, until ``done()`` and nothing is pending."""
    idle_since = time.monotonic()
    while True:
        pending = queue.pending()
        for trial in pending:
            if queue.claim(trial):
                yield trial
        if pending:
            idle_since = time.monotonic()
            continue
        # Checking whether the study is done reads every trial: not on every poll.
        if time.monotonic() - idle_since >= 1.0:
            if done():
                return
            idle_since = time.monotonic()
        time.sleep(poll_s)
