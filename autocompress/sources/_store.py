"""Decoded images on disk: each split is decoded once at the input size into one flat file that trials read back image
by image (:class:`ImageStore`), so a dataset never sits in RAM as float32.

Why: the search reads every split many times (each trial fine-tunes on train, calibrates, scores val), and decoding
plus resizing a JPEG costs milliseconds per image, so images are decoded once. Kept as float32 tensors they cost
0.6 MB per 224-px RGB image (18 GB for 30,000); kept as the uint8 pixels the default pipeline produces after its
resize and crop, a quarter of that, on disk. Reading one image back is a ``pread`` of its bytes, then the same
``/ 255`` and ``(x - mean) / std`` the eager pipeline applied, so the tensors are identical to it
(``tests/test_store.py``). The pages live in the operating system's page cache, shared by every worker process of a
study and given back under memory pressure, not in any process's own memory (an ``np.memmap`` would count them in
the process's resident set). A user ``preprocess`` returns finished float tensors; they are stored as float32.

A store is keyed by what went into it (the image files' paths, sizes and modification times or the dataset's array,
the indices, the shape and the pipeline), built under a file lock (parallel ``--workers`` decode once) into a
temporary file renamed into place, and reused by every later load with the same key (a resumed study, the report).

Example (``samples`` of ``(path, label)``):
    >>> store = open_store(cache_dir, key={...}, decoder=decoder, labels=labels, ...)  # doctest: +SKIP
    >>> image, label = store[0]  # float32 C x H x W, int
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from autocompress.errors import WorkloadError
from autocompress.hardware.cpu import process_cores

__all__ = ["ImageStore", "PixelDecoder", "StoreSpec", "open_store", "store_dir", "store_info"]

logger = logging.getLogger("autocompress.sources.data")

STORE_VERSION = 1  # bump when the file layout or the meaning of a key changes: older stores are rebuilt
_DTYPES = {"uint8": np.uint8, "float32": np.float32}
_PARALLEL_FROM = 512  # images: below this, worker start-up costs more than it saves
_MAX_DECODE_WORKERS = 8


class PixelDecoder(Dataset):
    """One split's images as the store keeps them: item ``i`` is ``(pixels, error)``.

    ``pixels`` is a ``C x H x W`` tensor of the store's dtype (uint8 before normalisation, or a preprocess's float32)
    and ``error`` is ``""``; a bad image gives ``(None, one-line message)`` instead of raising, because an exception
    raised in a DataLoader worker comes back wrapped in a multi-line traceback.
    """

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, str]:
        raise NotImplementedError


@dataclass(frozen=True)
class StoreSpec:
    """What one split's store holds.

    Attributes:
        name: readable prefix of the file name, e.g. ``imagefolder-train``.
        key: everything the pixels depend on (JSON-serialisable); its hash names the file.
        shape: ``(C, H, W)`` of one image.
        dtype: ``"uint8"`` (normalised on read with ``mean``/``std``) or ``"float32"`` (read as stored).
        mean: per-channel mean subtracted after scaling uint8 pixels to [0, 1]; unused for float32.
        std: per-channel std divided by after subtracting ``mean``.
    """

    name: str
    key: Mapping[str, Any]
    shape: tuple[int, int, int]
    dtype: str = "uint8"
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    @property
    def digest(self) -> str:
        text = json.dumps(
            {"version": STORE_VERSION, **self.key, "shape": self.shape, "dtype": self.dtype}, sort_keys=True
        )
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    @property
    def item_bytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(_DTYPES[self.dtype]).itemsize


class ImageStore(Dataset):
    """A map-style ``(float32 C x H x W, int label)`` dataset read from a store file, one image per access.

    Picklable (DataLoader workers reopen the file); ``targets`` gives the labels without reading any image.
    """

    def __init__(self, path: Path, spec: StoreSpec, labels: np.ndarray, *, info: Mapping[str, Any] | None = None):
        self.path = Path(path)
        self.spec = spec
        self.targets = np.asarray(labels, dtype=np.int64)
        self.info = dict(info or {})
        self._fd: int | None = None
        self._scale: tuple[torch.Tensor, torch.Tensor] | None = None
        if spec.dtype == "uint8":
            mean = torch.tensor(spec.mean or (0.0,) * spec.shape[0]).view(-1, 1, 1)
            std = torch.tensor(spec.std or (1.0,) * spec.shape[0]).view(-1, 1, 1)
            self._scale = (mean, std)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        images, labels = self._read([index])
        return images[0], labels[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        """A DataLoader batch in one go: the images' bytes read into one buffer, normalised as one tensor."""
        images, labels = self._read(indices)
        return list(zip(images.unbind(0), labels))

    def _read(self, indices: Sequence[int]) -> tuple[torch.Tensor, list[int]]:
        count, size = len(self.targets), self.spec.item_bytes
        rows = []
        for index in indices:
            index = int(index)
            if not -count <= index < count:
                raise IndexError(f"image {index} of a store of {count}")
            rows.append(index % count)
        dtype = _DTYPES[self.spec.dtype]
        buffer = np.empty((len(rows), size // np.dtype(dtype).itemsize), dtype=dtype)
        fd = self._file()
        for row, index in zip(buffer, rows):
            if os.preadv(fd, [row], index * size) != size:
                raise WorkloadError(f"{self.path} is shorter than its {count} images; delete it to decode it again")
        pixels = torch.from_numpy(buffer).view(len(rows), *self.spec.shape)
        labels = [int(self.targets[i]) for i in rows]
        if self._scale is None:
            return pixels, labels
        mean, std = self._scale
        # The eager pipeline's exact operations, element by element: float, / 255, then (x - mean) / std.
        return pixels.float().div_(255.0).sub_(mean).div_(std), labels

    def _file(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
            weakref.finalize(self, os.close, self._fd)
        return self._fd

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_fd"] = None  # a file descriptor does not cross a process boundary
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def store_dir(cache_dir: Path | None) -> Path:
    """``cache_dir / "data"``, or a temporary folder removed when the process exits when no cache is configured
    (the Python API without an output folder)."""
    if cache_dir is not None:
        return Path(cache_dir) / "data"
    global _TEMP_DIR
    if _TEMP_DIR is None:
        _TEMP_DIR = tempfile.TemporaryDirectory(prefix="autocompress-data-")
    return Path(_TEMP_DIR.name)


_TEMP_DIR: tempfile.TemporaryDirectory[str] | None = None


def open_store(
    folder: Path, spec: StoreSpec, *, decoder: PixelDecoder, labels: Sequence[int] | np.ndarray, what: str
) -> ImageStore:
    """The store of ``spec`` under ``folder``: reused when a complete one exists, else decoded by ``decoder``.

    Args:
        folder: where stores live (:func:`store_dir`).
        spec: shape, dtype, normalisation and key of the split.
        decoder: yields each image's pixels in store order (called only when the store must be built).
        labels: one label per image, in order.
        what: how errors name the data, e.g. ``imagefolder:./flowers``.

    Raises:
        WorkloadError: an image that cannot be decoded, or too little disk space for the store (the message says
            how much it needs and where).
    """
    labels = np.asarray(labels, dtype=np.int64)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec.name}-{spec.digest}.pixels"
    meta_path = path.with_suffix(".json")
    with _locked(path.with_suffix(".lock")):
        meta = _complete_meta(path, meta_path, spec, len(labels))
        if meta is None:
            meta = _build(path, spec, decoder=decoder, what=what)
            meta_path.write_text(json.dumps(meta, indent=1))
            hit = False
        else:
            hit = True
    info = {
        "path": str(path),
        "bytes": len(labels) * spec.item_bytes,
        "dtype": spec.dtype,
        "reused": hit,
        "decode_s": meta["decode_s"],
        "decode_ms_per_image": meta["decode_ms_per_image"],
    }
    return ImageStore(path, spec, labels, info=info)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` across processes: parallel workers of one study wait for one decoder."""
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _complete_meta(path: Path, meta_path: Path, spec: StoreSpec, count: int) -> dict[str, Any] | None:
    """The meta of a complete store for ``spec`` with ``count`` images, or ``None`` (missing, partial, stale)."""
    try:
        meta = json.loads(meta_path.read_text())
        size = path.stat().st_size
    except (OSError, ValueError):
        return None
    if meta.get("digest") != spec.digest or meta.get("count") != count or size != count * spec.item_bytes:
        return None
    return meta  # type: ignore[no-any-return]


def _build(path: Path, spec: StoreSpec, *, decoder: PixelDecoder, what: str) -> dict[str, Any]:
    count = len(decoder)
    need = count * spec.item_bytes
    free = shutil.disk_usage(path.parent).free
    if need > free - 2**28:  # keep 256 MB for everything else on that disk
        raise WorkloadError(
            f"--data {what} : decoding {count} images at {'x'.join(map(str, spec.shape))} needs {need / 1e9:.1f} GB "
            f"in {path.parent} but {free / 1e9:.1f} GB are free; free some space, pass --output on a larger disk, "
            "--max-samples N or a smaller --input-size"
        )
    logger.info(
        "%s: decoding %d images at %s (%s, %.2f GB) into %s",
        what,
        count,
        "x".join(map(str, spec.shape)),
        spec.dtype,
        need / 1e9,
        path.parent,
    )
    started = time.perf_counter()
    partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
    try:
        with open(partial, "wb") as out:
            _write_pixels(out, spec, decoder=decoder, what=what, started=started)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    return {
        "version": STORE_VERSION,
        "digest": spec.digest,
        "count": count,
        "shape": list(spec.shape),
        "dtype": spec.dtype,
        "key": dict(spec.key),
        "decode_s": round(seconds, 3),
        "decode_ms_per_image": round(1000 * seconds / max(1, count), 4),
    }


def _write_pixels(out: Any, spec: StoreSpec, *, decoder: PixelDecoder, what: str, started: float) -> None:
    """Decode every image of ``decoder`` in order (several worker processes for large splits) and append its bytes."""
    workers, context = _decode_workers(len(decoder))
    loader = DataLoader(
        decoder, batch_size=64, num_workers=workers, multiprocessing_context=context, collate_fn=lambda items: items
    )
    done, next_report = 0, max(1, len(decoder) // 10)
    dtype = getattr(torch, spec.dtype)
    for batch in loader:
        for pixels, error in batch:
            if pixels is None:
                raise WorkloadError(error)
            if tuple(pixels.shape) != spec.shape or pixels.dtype != dtype:
                raise WorkloadError(
                    f"--data {what} : image {done} decoded to {pixels.dtype} {list(pixels.shape)}, expected "
                    f"{spec.dtype} {list(spec.shape)}; make the preprocessing return one shape for every image"
                )
            out.write(pixels.contiguous().numpy().tobytes())
            done += 1
        if done >= next_report and done < len(decoder):
            rate = done / max(1e-9, time.perf_counter() - started)
            logger.info("%s: decoded %d of %d images (%.0f images/s)", what, done, len(decoder), rate)
            next_report = done + max(1, len(decoder) // 10)


def _decode_workers(count: int) -> tuple[int, Any]:
    """Worker processes for decoding ``count`` images: one per core (at most 8) for large splits, forked so that a
    user's preprocess need not be picklable; none where fork is unavailable or CUDA is already initialised."""
    if count < _PARALLEL_FROM or "fork" not in multiprocessing.get_all_start_methods():
        return 0, None
    if torch.cuda.is_initialized():
        return 0, None
    workers = min(_MAX_DECODE_WORKERS, len(process_cores()))
    return (workers, multiprocessing.get_context("fork")) if workers > 1 else (0, None)


def store_info(stores: Sequence[ImageStore]) -> dict[str, Any]:
    """What the reports say about a workload's image stores: where, how big, whether reused, and the time decoding
    took per image when they were built."""
    count = sum(len(s) for s in stores)
    seconds = sum(float(s.info["decode_s"]) for s in stores)
    return {
        "folder": str(Path(stores[0].info["path"]).parent),
        "dtype": stores[0].info["dtype"],
        "gb": round(sum(s.info["bytes"] for s in stores) / 1e9, 3),
        "reused": all(s.info["reused"] for s in stores),
        "decode_ms_per_image": round(seconds * 1000 / count, 3) if count else None,
    }
