"""Image stores: image folders and torchvision datasets decoded once into a file of uint8 (or a preprocess's float32)
pixels and read back one image at a time give exactly the tensors of decoding everything eagerly, are reused when
nothing changed, rebuilt when something did, decoded in parallel for large splits, and refuse a full disk."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from _data import stacked
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from autocompress.config import parse_normalize
from autocompress.errors import WorkloadError
from autocompress.sources import _store, load_data
from autocompress.sources._data_imagefolder import _scan_folder
from autocompress.sources._splits import _prepare
from autocompress.sources._store import ImageStore


def _write_folder(root: Path, *, per_class: int = 6, size: tuple[int, int] = (20, 14), mode: str = "RGB") -> Path:
    """Random images of a non-square ``size`` (so resize and crop both act), three classes."""
    rng = np.random.default_rng(0)
    for label in ("a", "b", "c"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).convert(mode).save(root / label / f"{i}.png")
    return root


def _eager(path: str, *, size: int, channels: int, normalize: str | None = None) -> torch.Tensor:
    """What the loader computed before stores existed: decode, resize, crop and normalise in one go, as float32."""
    from torchvision.transforms.v2.functional import pil_to_tensor

    with Image.open(path) as img:
        image = img.convert("L" if channels == 1 else "RGB")
    norm = parse_normalize(normalize) if normalize else None
    return _prepare(pil_to_tensor(image).unsqueeze(0), size=size, channels=channels, normalization=norm)[0]


@pytest.mark.parametrize(("channels", "normalize"), [(1, None), (3, None), (3, "0.5/0.25")])
def test_folder_store_gives_the_eager_tensors_exactly(tmp_path: Path, channels: int, normalize: str | None) -> None:
    root = _write_folder(tmp_path / "images")
    splits = load_data(
        f"imagefolder:{root}", input_size=12, channels=channels, normalize=normalize, cache_dir=tmp_path / "cache"
    )
    assert isinstance(splits.train, ImageStore) and splits.train.spec.dtype == "uint8"
    _, samples = _scan_folder(root, "test")
    by_label = {label: [p for p, lab in samples if lab == label] for label in range(3)}
    seen = 0
    for part in (splits.train, splits.val, splits.test):
        images, labels = stacked(part)
        for image, label in zip(images, labels.tolist()):
            # Each image must equal the eager result of exactly one file of its class.
            matches = [
                p
                for p in by_label[label]
                if torch.equal(image, _eager(p, size=12, channels=channels, normalize=normalize))
            ]
            assert len(matches) == 1, f"image of class {label} matches {len(matches)} files bit for bit"
            seen += 1
    assert seen == 18
    info = splits.info["image_store"]
    assert info["dtype"] == "uint8" and info["reused"] is False and info["decode_ms_per_image"] > 0, info


def test_a_second_load_reuses_the_store_and_a_changed_file_rebuilds_it(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "images")
    cache = tmp_path / "cache"
    first = load_data(f"imagefolder:{root}", input_size=12, cache_dir=cache)
    files = sorted((cache / "data").glob("*.pixels"))
    assert len(files) == 3, [f.name for f in files]
    stamps = {f: f.stat().st_mtime_ns for f in files}
    again = load_data(f"imagefolder:{root}", input_size=12, cache_dir=cache)
    assert again.info["image_store"]["reused"] is True
    assert {f: f.stat().st_mtime_ns for f in files} == stamps, "nothing was decoded again"
    assert torch.equal(stacked(again.train)[0], stacked(first.train)[0])
    # Another normalisation reads the same uint8 store: normalising happens on read.
    other_norm = load_data(f"imagefolder:{root}", input_size=12, normalize="none", cache_dir=cache)
    assert other_norm.info["image_store"]["reused"] is True
    assert float(stacked(other_norm.train)[0].min()) >= 0.0
    # One changed image file: its split's store is decoded again.
    changed = next(iter(sorted((root / "a").glob("*.png"))))
    Image.fromarray(np.zeros((14, 20, 3), dtype=np.uint8)).save(changed)
    after = load_data(f"imagefolder:{root}", input_size=12, cache_dir=cache)
    assert after.info["image_store"]["reused"] is False
    assert len(list((cache / "data").glob("*.pixels"))) == 4, "one split rebuilt, the others reused"


def test_a_preprocess_store_keeps_its_float_output_exactly(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "images")
    transform = v2.Compose(
        [v2.PILToTensor(), v2.Resize(10, antialias=True), v2.CenterCrop(8), v2.ToDtype(torch.float32, scale=True)]
    )
    splits = load_data(f"imagefolder:{root}", preprocess=transform, cache_dir=tmp_path / "cache")
    assert splits.train.spec.dtype == "float32" and splits.input_shape == (3, 8, 8)
    _, samples = _scan_folder(root, "test")
    expected = []
    for path, _ in samples:
        with Image.open(path) as img:
            expected.append(transform(img.convert("RGB")))
    images = torch.cat([stacked(s)[0] for s in (splits.train, splits.val, splits.test)])
    for image in images:
        assert any(torch.equal(image, e) for e in expected), "a stored image differs from transform(image)"


def test_large_splits_decode_in_worker_processes_and_a_bad_image_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_store, "_PARALLEL_FROM", 4)
    monkeypatch.setattr(_store, "_decode_workers", _two_forked_workers(_store._decode_workers))
    root = _write_folder(tmp_path / "images", per_class=12)
    parallel = load_data(f"imagefolder:{root}", input_size=12, cache_dir=tmp_path / "parallel")
    monkeypatch.setattr(_store, "_PARALLEL_FROM", 10**9)
    serial = load_data(f"imagefolder:{root}", input_size=12, cache_dir=tmp_path / "serial")
    for a, b in zip((parallel.train, parallel.val, parallel.test), (serial.train, serial.val, serial.test)):
        assert torch.equal(stacked(a)[0], stacked(b)[0]), "worker processes write the images in order"
    (root / "b" / "broken.png").write_bytes(b"not an image")
    monkeypatch.setattr(_store, "_PARALLEL_FROM", 4)
    with pytest.raises(WorkloadError) as caught:
        load_data(f"imagefolder:{root}", input_size=12, channels=3, cache_dir=tmp_path / "broken")
    message = str(caught.value)
    assert "broken.png" in message and "\n" not in message, message
    left = sorted(p.name for p in (tmp_path / "broken" / "data").glob("*.pixels*"))
    assert not [n for n in left if "partial" in n] and len(left) < 3, f"nothing half-written is left: {left}"


def _two_forked_workers(real):  # type: ignore[no-untyped-def]
    def workers(count: int):  # type: ignore[no-untyped-def]
        found, context = real(count)
        if found == 0 and context is None and count >= _store._PARALLEL_FROM:
            import multiprocessing

            return 2, multiprocessing.get_context("fork")  # exercise workers even on a 1-core runner
        return found, context

    return workers


def test_a_full_disk_is_refused_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _write_folder(tmp_path / "images")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(WorkloadError, match=r"needs 0\.0 GB in .* but 0\.0 GB are free.*--max-samples"):
        load_data(f"imagefolder:{root}", input_size=224, cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache" / "data").glob("*.pixels*"))


def test_a_store_crosses_into_dataloader_workers_and_reads_in_any_order(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "images")
    train = load_data(f"imagefolder:{root}", input_size=12, cache_dir=tmp_path / "cache").train
    images, labels = stacked(train)
    copy = pickle.loads(pickle.dumps(train))
    assert torch.equal(copy[3][0], images[3]) and copy[-1][1] == int(labels[-1])
    with pytest.raises(IndexError):
        train[len(train)]
    loader = DataLoader(train, batch_size=4, num_workers=2, shuffle=False)
    assert torch.equal(torch.cat([x for x, _ in loader]), images)
    assert np.array_equal(train.targets, labels.numpy()), "labels are known without reading an image"


def _write_idx(path: Path, array: np.ndarray) -> None:
    dims = array.shape
    header = bytes([0, 0, 0x08, len(dims)]) + b"".join(int(d).to_bytes(4, "big") for d in dims)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_torchvision_dataset_store_gives_the_eager_tensors_exactly(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, count in (("train", 40), ("t10k", 12)):
        arrays[prefix] = rng.integers(0, 256, (count, 28, 28))
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", arrays[prefix])
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(count) % 4)
    splits = load_data(f"torchvision:MNIST:{tmp_path}", input_size=20, channels=3, cache_dir=tmp_path / "cache")
    pixels = torch.as_tensor(arrays["t10k"].astype(np.uint8)).unsqueeze(1)
    expected = _prepare(pixels, size=20, channels=3)
    got, labels = stacked(splits.test)
    assert torch.equal(got, expected), "the test split, in order, equals the eager pipeline bit for bit"
    assert labels.tolist() == (np.arange(12) % 4).tolist()
    again = load_data(f"torchvision:MNIST:{tmp_path}", input_size=20, channels=3, cache_dir=tmp_path / "cache")
    assert again.info["image_store"]["reused"] is True
