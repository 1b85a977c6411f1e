"""Nothing under results/ is unpickled: trial weights are plain-array .npz files, and a planted pickle is refused."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from autocompress.errors import WorkloadError
from autocompress.sources.demo_model import build_demo_resnet
from autocompress.sources.weights import load_weights, save_weights

PWNED = Path("/tmp/autocompress-pwned-marker")


class _Exploit:
    """Unpickling this runs ``Path.touch`` on PWNED: the classic malicious-pickle payload, harmless here."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (PWNED,))


def test_round_trip_restores_every_tensor(tmp_path: Path) -> None:
    model = build_demo_resnet(width=8, seed=0)
    path = save_weights(model, tmp_path / "w.npz")
    other = load_weights(build_demo_resnet(width=8, seed=1), path)
    for (name, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("payload", ["raw pickle", "npz with an object array"])
def test_malicious_pickle_is_refused_and_never_run(tmp_path: Path, payload: str) -> None:
    PWNED.unlink(missing_ok=True)
    path = tmp_path / "student_weights.npz"
    if payload == "raw pickle":
        path.write_bytes(pickle.dumps(_Exploit()))
    else:
        import numpy as np

        with path.open("wb") as fh:
            np.savez(fh, **{"stem.0.weight": np.array([_Exploit()], dtype=object)})
    with pytest.raises(WorkloadError, match="refused"):
        load_weights(build_demo_resnet(width=8, seed=0), path)
    assert not PWNED.exists(), "the pickle payload ran"


def test_weights_of_another_structure_are_refused(tmp_path: Path) -> None:
    path = save_weights(build_demo_resnet(width=8, seed=0), tmp_path / "w.npz")
    with pytest.raises(WorkloadError, match="does not fit the model rebuilt from its policy"):
        load_weights(build_demo_resnet(width=16, seed=0), path)
