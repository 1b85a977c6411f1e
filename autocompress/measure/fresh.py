"""Re-measure an artifact in a fresh process: the figure that ships with a chosen model.

A figure taken inside the search process shares it with everything the search did before (allocator state, warm
caches, the other sessions it holds). The chosen model's promise is checked in a new Python process instead, with a
longer window, the teacher artifact timed side by side (its anchor first, then the candidate against it).

    python -m autocompress.measure.fresh CANDIDATE.onnx REFERENCE.onnx --shape 1,32,32 --threads 1 --batch-size 1 \\
        --protocol '{"window_s": 3.0, "max_window_s": 7.5}' --runtime onnxruntime --mode none

prints one JSON object ``{"candidate": Latency, "reference": Latency}``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from autocompress.errors import AutocompressError
from autocompress.measure.latency import Latency, LatencyMeter, Protocol
from autocompress.policy import QuantPolicy
from autocompress.runtimes import Artifact, get_runtime

__all__ = ["remeasure_fresh", "main"]

_TIMEOUT_S = 300


def remeasure_fresh(
    candidate: Artifact,
    reference: Artifact,
    input_shape: Sequence[int],
    *,
    threads: int,
    batch_size: int,
    protocol: Protocol,
) -> tuple[Latency, Latency]:
    """``(candidate, reference)`` figures taken side by side in a new Python process (see the module docstring).

    Each artifact runs on its own runtime (the same one but under ``--runtime auto``); only the precision mode
    travels with the paths (it sets OpenVINO's precision hint), the rest of the plan is baked into the files.
    """
    command = [
        sys.executable,
        "-m",
        "autocompress.measure.fresh",
        str(candidate.path),
        str(reference.path),
        "--runtime",
        candidate.runtime,
        "--mode",
        candidate.quant.mode,
        "--reference-mode",
        reference.quant.mode,
        "--reference-runtime",
        reference.runtime,
        "--shape",
        ",".join(str(int(v)) for v in input_shape),
        "--threads",
        str(threads),
        "--batch-size",
        str(batch_size),
        "--protocol",
        json.dumps(protocol.to_dict()),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=_TIMEOUT_S)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise AutocompressError(f"re-measuring {candidate.path} in a fresh process failed: {tail}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return Latency.from_dict(data["candidate"]), Latency.from_dict(data["reference"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autocompress.measure.fresh", description=__doc__.splitlines()[0])
    parser.add_argument("candidate", type=Path)
    parser.add_argument("reference", type=Path)
    parser.add_argument("--runtime", default="onnxruntime")
    parser.add_argument("--mode", default="none", help="the candidate's precision mode (QuantPolicy.mode)")
    parser.add_argument("--reference-mode", default="none")
    parser.add_argument("--reference-runtime", default=None, help="the reference's runtime (default: --runtime)")
    parser.add_argument("--shape", required=True, help="input shape without the batch axis, e.g. 1,32,32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument(
        "--protocol",
        default="{}",
        help="the Protocol's fields as JSON (Protocol.to_dict(); absent fields take their defaults)",
    )
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    protocol = Protocol(**json.loads(args.protocol))  # every field, so the fresh figure is taken as the search's was
    runtime = get_runtime(args.runtime)
    reference_runtime = get_runtime(args.reference_runtime or args.runtime)
    reference_artifact = Artifact(args.reference, QuantPolicy(mode=args.reference_mode), runtime=reference_runtime.name)
    settings = {"threads": args.threads, "batch_size": args.batch_size, "protocol": protocol}
    meter = LatencyMeter(reference_runtime, reference_artifact, shape, **settings)
    reference = meter.calibrate(factor=1.0)
    candidate = meter.measure(Artifact(args.candidate, QuantPolicy(mode=args.mode), runtime=runtime.name))
    print(json.dumps({"candidate": candidate.to_dict(), "reference": reference.to_dict()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
