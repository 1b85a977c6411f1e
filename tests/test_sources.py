"""Bring-your-own model and data: real files in tmp_path (PNG folders, checkpoints, user modules, fake MNIST/CIFAR)."""

from __future__ import annotations

import pickle
import struct
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from _data import stacked
from PIL import Image
from torch import nn

from autocompress.errors import WorkloadError
from autocompress.sources import DataSplits, check_num_classes, load_data, load_model

WriteModule = Callable[[str, str], str]
CLASSES = ("one", "two", "zero")  # folder names; ImageFolder sorts them, so "one" is label 0
PER_CLASS = 10


def _digit_images(per_class: int = PER_CLASS) -> dict[str, list[np.ndarray]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    wanted = {"zero": 0, "one": 1, "two": 2}
    return {
        name: [img for img, t in zip(digits.images, digits.target) if t == digit][:per_class]
        for name, digit in wanted.items()
    }


def _write_folder(root: Path, per_class: int = PER_CLASS, classes: tuple[str, ...] = CLASSES) -> Path:
    """8x8 digits upscaled to 16x16 grayscale PNGs, one subfolder per class."""
    images = _digit_images(per_class)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i, img in enumerate(images[name][:per_class]):
            pixels = (img / 16.0 * 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").resize((16, 16), Image.NEAREST).save(root / name / f"{i}.png")
    return root


def _labels(dataset: torch.utils.data.Dataset) -> list[int]:
    return [int(dataset[i][1]) for i in range(len(dataset))]


@pytest.fixture()
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WriteModule]:
    """Write ``NAME.py`` into tmp_path, chdir there, and forget the module and the sys.path entry afterwards."""
    written: list[str] = []
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # load_model may prepend the cwd: undo it after the test

    def write(name: str, code: str) -> str:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(code))
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


TINY_NET = """
    import torch
    from torch import nn

    class TinyNet(nn.Module):
        def __init__(self, num_classes: int = 10) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.fc = nn.Linear(4, num_classes)

        def forward(self, x):
            return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))

    def build(num_classes: int = 10) -> nn.Module:
        torch.manual_seed(0)
        return TinyNet(num_classes)

    def build_fixed():
        return TinyNet(7)

    def not_a_model():
        return "oops"
"""


# ------------------------------------------------------------------------------------------------- imagefolder


def test_imagefolder_single_folder_is_split_60_20_20_stratified_and_deterministic(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "digits")
    splits = load_data(f"imagefolder:{root}", input_size=16)
    assert isinstance(splits, DataSplits)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 6, 6)
    assert splits.input_shape == (1, 16, 16), "grayscale PNGs keep one channel when --channels is not given"
    assert splits.num_classes == 3 and splits.info["classes"] == sorted(CLASSES)
    for part in (splits.train, splits.val, splits.test):
        assert sorted(set(_labels(part))) == [0, 1, 2], "every split holds every class"
    image, label = splits.train[0]
    assert image.dtype == torch.float32 and image.shape == (1, 16, 16) and isinstance(int(label), int)
    assert -1.0 - 1e-6 <= float(image.min()) and float(image.max()) <= 1.0 + 1e-6, "1 channel: normalised by 0.5/0.5"
    again = load_data(f"imagefolder:{root}", input_size=16)
    assert torch.equal(stacked(again.val)[0], stacked(splits.val)[0]), "same seed, same split"
    other = load_data(f"imagefolder:{root}", input_size=16, seed=1)
    assert not torch.equal(stacked(other.val)[0], stacked(splits.val)[0]), "another seed, another split"


def test_imagefolder_resize_and_channels(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "digits", per_class=5)
    splits = load_data(f"imagefolder:{root}", input_size=32, channels=3)
    assert splits.input_shape == (3, 32, 32)
    images = stacked(splits.train)[0]
    assert images.shape[1:] == (3, 32, 32)
    # A gray image becomes three equal planes, each normalised with its own ImageNet mean/std.
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    raw = images[0] * std + mean
    assert torch.allclose(raw[0], raw[1], atol=1e-5) and torch.allclose(raw[1], raw[2], atol=1e-5)
    assert load_data(f"imagefolder:{root}").input_shape == (1, 224, 224), "default input size is 224"


def test_imagefolder_train_val_layout_halves_val_into_val_and_test(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _write_folder(root / "train", per_class=6)
    _write_folder(root / "val", per_class=4)
    splits = load_data(f"imagefolder:{root}", input_size=16)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 6, 6)
    assert sorted(_labels(splits.val)) == sorted(_labels(splits.test)) == [0, 0, 1, 1, 2, 2], "stratified halves"
    assert "val halved" in splits.info["layout"]


def test_imagefolder_train_val_test_layout_uses_the_folders(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _write_folder(root / "train", per_class=4)
    _write_folder(root / "val", per_class=2)
    _write_folder(root / "test", per_class=3)
    splits = load_data(f"imagefolder:{root}", input_size=16)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (12, 6, 9)
    assert splits.info["source_sizes"] == {"train": 12, "val": 6, "test": 9}


def test_imagefolder_max_samples_caps_each_split_stratified(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "digits", per_class=30)  # 54/18/18 images; the least cap is 10 (MIN_MAX_SAMPLES)
    splits = load_data(f"imagefolder:{root}", input_size=16, max_samples=10)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (10, 10, 10)
    assert sorted(_labels(splits.train)) == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_imagefolder_class_mismatch_names_the_folders(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _write_folder(root / "train", per_class=2)
    _write_folder(root / "val", per_class=2, classes=("one", "zero"))
    with pytest.raises(
        WorkloadError, match=r"class folders differ between train/ and val/ \(only in train/: two; only in val/: -\)"
    ):
        load_data(f"imagefolder:{root}", input_size=16)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("missing", r"no such folder"),
        ("empty", r"no class subfolders in .*CLASS_NAME/IMAGE.png"),
        ("empty_class", r"class folder\(s\) zero in .* hold no images"),
        ("train_only", r"has train/ but no val/"),
        ("not_images", r"class folder\(s\) one in .* hold no images"),
        ("too_few", r"too few images for train/val/test .*at least 3 images per class"),
    ],
)
def test_imagefolder_bad_folders_are_one_line_errors(tmp_path: Path, layout: str, message: str) -> None:
    root = tmp_path / "data"
    if layout == "empty":
        root.mkdir()
    elif layout == "empty_class":
        _write_folder(root, per_class=2, classes=("one", "two"))
        (root / "zero").mkdir()
    elif layout == "train_only":
        _write_folder(root / "train", per_class=2)
    elif layout == "too_few":
        _write_folder(root, per_class=1)
    elif layout == "not_images":
        (root / "one").mkdir(parents=True)
        (root / "one" / "notes.txt").write_text("not an image")
    with pytest.raises(WorkloadError, match=message) as info:
        load_data(f"imagefolder:{root}", input_size=16)
    assert "\n" not in str(info.value)


def test_unknown_data_spec_lists_the_valid_forms(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match=r"digits, imagefolder:PATH, torchvision:NAME:ROOT, package.module:fn"):
        load_data("cifar")
    with pytest.raises(WorkloadError, match=r"did you mean imagefolder:"):
        load_data(str(tmp_path))


# ------------------------------------------------------------------------------------------ torchvision datasets


def _write_idx(path: Path, array: np.ndarray) -> None:
    """MNIST's IDX format: magic (0, 0, type 0x08 = uint8, ndim), big-endian dims, raw bytes."""
    path.write_bytes(
        struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
        + struct.pack(f">{array.ndim}I", *array.shape)
        + array.astype(np.uint8).tobytes()
    )


def _write_fake_mnist(root: Path, *, train: int, test: int) -> None:
    """Random 28x28 images labelled 0, 1, 2, ... in torchvision's ``ROOT/MNIST/raw`` layout."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", train), ("t10k", test)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (count, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(count) % 3)


def test_torchvision_mnist_from_local_files(tmp_path: Path) -> None:
    _write_fake_mnist(tmp_path, train=60, test=20)
    splits = load_data(f"torchvision:mnist:{tmp_path}")
    assert splits.input_shape == (1, 28, 28), "native size and channels by default"
    assert (len(splits.train), len(splits.val), len(splits.test)) == (54, 6, 20), "official train → 90/10 train/val"
    assert sorted(_labels(splits.val)) == [0, 0, 1, 1, 2, 2]
    assert splits.num_classes == 10, "MNIST declares 10 classes even if the files hold fewer"
    resized = load_data(f"torchvision:MNIST:{tmp_path}", input_size=32, channels=3, max_samples=10)
    assert resized.input_shape == (3, 32, 32) and stacked(resized.train)[0].shape == (10, 3, 32, 32)


def test_torchvision_cifar10_from_local_pickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.cifar

    # The fake batches cannot match torchvision's md5 sums; that check is torchvision's, not ours.
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, count in [*((f"data_batch_{i}", 20) for i in range(1, 6)), ("test_batch", 10)]:
        batch = {"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8), "labels": [i % 10 for i in range(count)]}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    splits = load_data(f"torchvision:CIFAR10:{tmp_path}")
    assert splits.input_shape == (3, 32, 32) and splits.num_classes == 10
    assert (len(splits.train), len(splits.val), len(splits.test)) == (90, 10, 10)
    assert sorted(_labels(splits.val)) == list(range(10)), "val is a stratified 10 % of the official train split"
    assert splits.info["classes"][:2] == ["c0", "c1"]


def test_torchvision_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(
        WorkloadError, match=r"CIFAR10 files not found under .*; pass --download .* or put the files under"
    ):
        load_data(f"torchvision:CIFAR10:{tmp_path}")
    with pytest.raises(WorkloadError, match=r"no torchvision dataset named 'CIFAR11'; close matches: CIFAR10"):
        load_data(f"torchvision:CIFAR11:{tmp_path}")
    with pytest.raises(WorkloadError, match=r"expected torchvision:NAME:ROOT"):
        load_data("torchvision:CIFAR10")


# ------------------------------------------------------------------------------------------------- --normalize

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
GRAYS = (0, 51, 102, 153, 204, 255)  # one uniform 8x8 image per value


@pytest.mark.parametrize(
    ("normalize", "channels", "mean", "std", "recorded", "source"),
    [
        (None, 1, (0.5,), (0.5,), "0.5/0.5", "the default for 1-channel images"),
        (None, 3, *IMAGENET, "imagenet", "the default for 3-channel images"),
        ("none", 1, (0.0,), (1.0,), "none", "given with --normalize"),
        ("ImageNet", 3, *IMAGENET, "imagenet", "given with --normalize"),
        ("0.2,0.1", 1, (0.2,), (0.1,), "0.2/0.1", "given with --normalize"),
        (
            "0.1,0.2,0.3/0.5,0.25,0.125",
            3,
            (0.1, 0.2, 0.3),
            (0.5, 0.25, 0.125),
            "0.1,0.2,0.3/0.5,0.25,0.125",
            "given with --normalize",
        ),
    ],
)
def test_normalize_maps_known_pixels_exactly(
    tmp_path: Path,
    normalize: str | None,
    channels: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    recorded: str,
    source: str,
) -> None:
    """A gray value v becomes (v / 255 - mean_c) / std_c in every channel c, and info records what was used."""
    root = tmp_path / "grays"
    for c, name in enumerate(("dark", "light")):
        (root / name).mkdir(parents=True)
        for v in GRAYS[c * 3 : (c + 1) * 3]:
            Image.fromarray(np.full((8, 8), v, dtype=np.uint8), mode="L").save(root / name / f"{v}.png")
    splits = load_data(f"imagefolder:{root}", input_size=8, channels=channels, normalize=normalize)
    images = torch.cat([stacked(splits.train)[0], stacked(splits.val)[0], stacked(splits.test)[0]])
    assert images.shape == (6, channels, 8, 8)
    m, sd = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)
    pixels = (images * sd + m) * 255  # undo the normalisation: back to the stored gray values
    assert torch.allclose(pixels, pixels.round(), atol=1e-3), "every value maps back to an integer gray level"
    assert torch.allclose(pixels.amax((1, 2, 3)), pixels.amin((1, 2, 3)), atol=1e-3), "same value in every channel"
    assert sorted(pixels[:, 0, 0, 0].round().int().tolist()) == list(GRAYS)
    assert splits.info["normalize"] == recorded and splits.info["normalize_source"] == source
    assert "\n" not in splits.info["preprocess"] and splits.info["preprocess"].endswith(
        "no normalisation (pixels in [0, 1])" if recorded == "none" else ")"
    )


def test_normalize_none_on_a_torchvision_dataset_gives_the_raw_pixels(tmp_path: Path) -> None:
    _write_fake_mnist(tmp_path, train=30, test=6)
    splits = load_data(f"torchvision:MNIST:{tmp_path}", normalize="none")
    raw = (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte").read_bytes()[16:]
    expected = torch.tensor(np.frombuffer(raw, dtype=np.uint8).reshape(6, 1, 28, 28).astype(np.float32)) / 255
    assert torch.equal(stacked(splits.test)[0], expected), "plain ToTensor() pixels, in file order"
    assert splits.info["normalize"] == "none"
    default = load_data(f"torchvision:MNIST:{tmp_path}")
    assert torch.allclose(stacked(default.test)[0], (expected - 0.5) / 0.5), "1 channel: 0.5/0.5 by default"


def test_normalize_that_cannot_apply_is_an_error(tmp_path: Path, user_module: WriteModule) -> None:
    from autocompress.errors import ConfigError
    from autocompress.sources import weights_transform

    root = _write_folder(tmp_path / "digits", per_class=3)
    with pytest.raises(
        ConfigError,
        match=r"--normalize 0\.1,0\.2,0\.3/0\.5 has 3 per-channel values but the data has 1 "
        r"channel; pass --channels 3",
    ):
        load_data(f"imagefolder:{root}", input_size=8, normalize="0.1,0.2,0.3/0.5")
    with pytest.raises(ConfigError, match=r"--normalize: expected imagenet, none, or MEAN/STD"):
        load_data(f"imagefolder:{root}", normalize="zscore")
    transform = weights_transform("torchvision:resnet18", "torchvision:DEFAULT")
    with pytest.raises(
        WorkloadError,
        match=r"--normalize none : the preprocessing ImageClassification\(.*normalises the "
        r"images itself .*drop --normalize",
    ):
        load_data(f"imagefolder:{root}", preprocess=transform, normalize="none")
    name = user_module(
        "user_data_normalize",
        """
        import torch
        from torch.utils.data import TensorDataset

        def load():
            make = lambda n: TensorDataset(torch.zeros(n, 1, 4, 4), torch.arange(n) % 2)
            return make(8), make(4)
    """,
    )
    with pytest.raises(WorkloadError, match=r"returns finished tensors, so --normalize does not apply"):
        load_data(f"{name}:load", normalize="imagenet")


# ------------------------------------------------------------------------------------------- package.module:fn


def test_function_dataset_with_two_dataloaders_gets_val_halved(user_module: WriteModule) -> None:
    name = user_module(
        "user_data_two",
        """
        import torch
        from torch.utils.data import DataLoader, TensorDataset

        def load(seed=0):
            g = torch.Generator().manual_seed(seed)
            make = lambda n: TensorDataset(torch.randn(n, 3, 8, 8, generator=g), torch.arange(n) % 4)
            return DataLoader(make(40)), DataLoader(make(16))
    """,
    )
    splits = load_data(f"{name}:load", max_samples=20)
    assert splits.input_shape == (3, 8, 8) and splits.num_classes == 4
    assert (len(splits.train), len(splits.val), len(splits.test)) == (20, 8, 8)
    assert sorted(_labels(splits.test)) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_function_dataset_dict_with_classes_and_bad_returns(user_module: WriteModule) -> None:
    name = user_module(
        "user_data_dict",
        """
        import torch
        from torch.utils.data import Dataset, TensorDataset

        class Named(Dataset):
            classes = ["cat", "dog", "eel"]
            def __len__(self): return 6
            def __getitem__(self, i): return torch.zeros(1, 4, 4), i % 2

        def load():
            return {"train": Named(), "val": Named(), "test": Named()}

        def bad():
            return 42

        def raw_images():
            return (TensorDataset(torch.zeros(4, 4, 4), torch.zeros(4)),
                    TensorDataset(torch.zeros(4, 4, 4), torch.zeros(4)))
    """,
    )
    splits = load_data(f"{name}:load")
    assert splits.num_classes == 3 and splits.info["classes"] == ["cat", "dog", "eel"], "classes attribute wins"
    with pytest.raises(WorkloadError, match=r"returned int, expected a DataSplits"):
        load_data(f"{name}:bad")
    with pytest.raises(WorkloadError, match=r"items must be \(float tensor C x H x W, int label\)"):
        load_data(f"{name}:raw_images")
    with pytest.raises(WorkloadError, match=r"has no attribute 'lod'; close matches: load"):
        load_data(f"{name}:lod")


# ------------------------------------------------------------------------------------------------------ models


def test_torchvision_model_num_classes_and_small_input() -> None:
    model = load_model("torchvision:resnet18", num_classes=10, small_input=True)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    check_num_classes(model, 10, (3, 32, 32))
    assert not model.training, "load_model returns an eval-mode model"
    mobile = load_model("torchvision:mobilenet_v3_small", num_classes=4, small_input=True)
    assert mobile.features[0][0].stride == (1, 1), "other families: first conv at stride 1"
    assert load_model("torchvision:squeezenet1_1").classifier[1].out_channels == 1000, "default 1000 classes"


def test_unknown_model_name_and_spec() -> None:
    with pytest.raises(
        WorkloadError,
        match=r"no torchvision classification model named 'resnet1'; close matches: resnet18.*list_models",
    ):
        load_model("torchvision:resnet1")
    with pytest.raises(WorkloadError, match=r"expected one of demo, torchvision:NAME, package.module:factory"):
        load_model("resnet18.pth")


def test_factory_model_receives_num_classes_and_bad_factories_fail(user_module: WriteModule) -> None:
    name = user_module("user_model_factory", TINY_NET)
    model = load_model(f"{name}:build", num_classes=3)
    assert model.fc.out_features == 3
    assert load_model(f"{name}:build_fixed", num_classes=3).fc.out_features == 7, "factory without num_classes"
    with pytest.raises(WorkloadError, match=r"returned str, expected a torch.nn.Module"):
        load_model(f"{name}:not_a_model")
    with pytest.raises(WorkloadError, match=r"cannot import module 'no_such_user_module'.*PYTHONPATH"):
        load_model("no_such_user_module:build")
    with pytest.raises(WorkloadError, match=r"has no attribute 'biuld'; close matches: build"):
        load_model(f"{name}:biuld")


@pytest.mark.parametrize("layout", ["plain", "state_dict", "model_state_dict", "model", "net", "module.", "_orig_mod."])
def test_checkpoint_formats_round_trip(user_module: WriteModule, tmp_path: Path, layout: str) -> None:
    name = user_module(f"user_model_ckpt_{layout.strip('._')}", TINY_NET)
    source = load_model(f"{name}:build", num_classes=3)
    with torch.no_grad():  # non-default weights and BN statistics, so a silent non-load would show
        for p in source.parameters():
            p.add_(torch.randn_like(p))
        source.bn.running_mean.fill_(0.3)
    state = source.state_dict()
    checkpoint: object = {
        "plain": state,
        "state_dict": {"state_dict": state, "epoch": 3},
        "model_state_dict": {"model_state_dict": state, "optimizer": {"lr": 0.1}},
        "model": {"model": state},
        "net": {"net": state, "acc": 0.9},
        "module.": {f"module.{k}": v for k, v in state.items()},
        "_orig_mod.": {f"_orig_mod.{k}": v for k, v in state.items()},
    }[layout]
    path = tmp_path / "weights.pt"
    torch.save(checkpoint, path)
    loaded = load_model(f"{name}:build", num_classes=3, weights=path)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), source.eval()(x))


def test_torchvision_checkpoint_with_dataparallel_prefix(tmp_path: Path) -> None:
    source = load_model("torchvision:mobilenet_v3_small", num_classes=5, small_input=True)
    path = tmp_path / "mobile.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    loaded = load_model("torchvision:mobilenet_v3_small", num_classes=5, small_input=True, weights=path)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))
    with pytest.raises(WorkloadError, match=r"--num-classes 5"):
        load_model("torchvision:mobilenet_v3_small", small_input=True, weights=path)


def test_full_pickled_module_needs_trust_checkpoint(user_module: WriteModule, tmp_path: Path) -> None:
    name = user_module("user_model_pickled", TINY_NET)
    source = load_model(f"{name}:build", num_classes=3)
    path = tmp_path / "full.pt"
    torch.save(source, path)
    with pytest.raises(
        WorkloadError, match=r"pickled Python objects .*pass --trust-checkpoint .*arbitrary code"
    ) as info:
        load_model(f"{name}:build", num_classes=3, weights=path)
    assert "\n" not in str(info.value)
    loaded = load_model(f"{name}:build", num_classes=3, weights=path, trust_checkpoint=True)
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))
    torch.save({"model": source, "epoch": 1}, path)
    assert isinstance(load_model(f"{name}:build", weights=path, trust_checkpoint=True), nn.Module)


def test_checkpoint_errors(user_module: WriteModule, tmp_path: Path) -> None:
    name = user_module("user_model_mismatch", TINY_NET)
    path = tmp_path / "ten.pt"
    torch.save(load_model(f"{name}:build", num_classes=10).state_dict(), path)
    with pytest.raises(
        WorkloadError,
        match=r"fc.weight checkpoint \[10, 4\] vs model \[3, 4\].*"
        r"has 10 classes but the model was built for 3: pass --num-classes 10",
    ):
        load_model(f"{name}:build", num_classes=3, weights=path)
    torch.save({"conv.weight": torch.zeros(4, 1, 3, 3)}, path)
    with pytest.raises(
        WorkloadError, match=r"keys missing from the checkpoint \(conv.bias, bn.weight, bn.bias, \.\.\.\)"
    ):
        load_model(f"{name}:build", weights=path)
    torch.save({"epoch": 3, "optimizer": {}}, path)
    with pytest.raises(
        WorkloadError, match=r"neither a state_dict nor holds one .*top-level keys are 'epoch', 'optimizer'"
    ):
        load_model(f"{name}:build", weights=path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WorkloadError, match=r"not a readable PyTorch checkpoint"):
        load_model(f"{name}:build", weights=path)
    with pytest.raises(WorkloadError, match=r"no such file"):
        load_model(f"{name}:build", weights=tmp_path / "missing.pt")


def test_check_num_classes_mismatch_and_wrong_input() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1000)).train()
    with pytest.raises(
        WorkloadError,
        match=r"^model outputs 1000 classes but the data has 3 \(classes: a, b, c\); "
        r"pass --num-classes 3 \(and --weights trained for 3 classes\)$",
    ):
        check_num_classes(model, 3, (3, 16, 16), class_names=["a", "b", "c"])
    assert model.training, "the model's mode is restored"
    with pytest.raises(
        WorkloadError,
        match=r"shape \[1, 1, 16, 16\].*"
        r"first conv expects 3 channels but the data has 1: load the data with --channels 3",
    ):
        check_num_classes(model, 1000, (1, 16, 16))
    with pytest.raises(WorkloadError, match=r"shape \[1, 3, 2, 2\].*resize it with --input-size"):
        check_num_classes(model, 1000, (3, 2, 2))


# ------------------------------------------------------------------------ torchvision pretrained weights (--weights)

RESNET18_FILE = "resnet18-f37072fd.pth"  # the file name in ResNet18_Weights.IMAGENET1K_V1.url


@pytest.fixture()
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty $TORCH_HOME whose torch.hub serves only files already cached there, as without internet.

    Returns the checkpoints folder ($TORCH_HOME/hub/checkpoints), not yet created.
    """
    import urllib.error

    import torchvision.models._api

    checkpoints = tmp_path / "torch_home" / "hub" / "checkpoints"
    real = torch.hub.load_state_dict_from_url

    def offline(url: str, *args: object, **kwargs: object) -> object:
        if (checkpoints / Path(url).name).is_file():  # a cached file is read without the network
            return real(url, *args, **kwargs)  # type: ignore[arg-type]
        raise urllib.error.URLError("offline")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    # torchvision's builders hold their own reference: make sure no test can reach the network through it either.
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    return checkpoints


def _write_rgb_folder(root: Path, per_class: int = 3) -> list[Path]:
    """Random RGB PNGs of assorted non-square sizes, one subfolder per class."""
    rng = np.random.default_rng(0)
    paths = []
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (30 + 7 * i, 40 + 5 * c, 3), dtype=np.uint8)
            paths.append(root / name / f"{i}.png")
            Image.fromarray(pixels, mode="RGB").save(paths[-1])
    return paths


def test_weights_transform_is_the_enums_preprocessing_without_download(offline_hub: Path) -> None:
    from autocompress.sources import weights_transform

    transform = weights_transform("torchvision:resnet18", "torchvision:IMAGENET1K_V1")
    assert transform is not None
    assert transform.crop_size == [224] and transform.resize_size == [256]
    assert transform.mean == [0.485, 0.456, 0.406] and transform.std == [0.229, 0.224, 0.225]
    default = weights_transform("torchvision:ResNet18", Path("torchvision:default"))
    assert default is not None and default.crop_size == [224], "Path, case-insensitive names and DEFAULT work too"
    assert weights_transform("torchvision:resnet18", None) is None
    assert weights_transform("torchvision:resnet18", Path("weights.pt")) is None, (
        "a checkpoint's preprocessing is the user's"
    )
    assert not offline_hub.exists(), "nothing was downloaded"


def test_imagefolder_with_weights_preprocess_matches_the_transform_by_hand(tmp_path: Path) -> None:
    from autocompress.sources import weights_transform

    paths = _write_rgb_folder(tmp_path / "rgb")
    transform = weights_transform("torchvision:resnet18", "torchvision:DEFAULT")
    splits = load_data(f"imagefolder:{tmp_path / 'rgb'}", preprocess=transform)
    assert splits.input_shape == (3, 224, 224), "input_size=None keeps the transform's 224 crop"
    loaded = torch.cat([stacked(splits.train)[0], stacked(splits.val)[0], stacked(splits.test)[0]])
    assert loaded.shape == (9, 3, 224, 224)
    by_hand = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])
    for image in loaded:  # the splits are shuffled: each loaded image must be one of the images transformed by hand
        assert min(float((image - h).abs().max()) for h in by_hand) < 1e-5
    # Uniform pixels in [0, 1] normalised with ImageNet mean/std: channel means near (0.5 - mean) / std.
    expected = (0.5 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(loaded.mean((0, 2, 3)), expected, atol=0.1), loaded.mean((0, 2, 3))
    described = splits.info["preprocess"]
    assert described.startswith("ImageClassification(crop_size=[224] resize_size=[256]") and "\n" not in described
    assert splits.info["input_size"] == 224 and splits.info["channels"] == 3

    small = load_data(f"imagefolder:{tmp_path / 'rgb'}", preprocess=transform, input_size=64)
    assert small.input_shape == (3, 64, 64), "an explicit input size resizes the transform's output"
    assert small.info["preprocess"].endswith(", then resize to 64x64")
    gray = load_data(f"imagefolder:{_write_folder(tmp_path / 'gray', per_class=3)}", preprocess=transform)
    assert gray.input_shape == (3, 224, 224), "with a preprocess, grayscale images become RGB unless --channels 1"
    assert (
        load_data(f"imagefolder:{tmp_path / 'rgb'}")
        .info["preprocess"]
        .startswith("default: resize shorter side to 224")
    )


def test_torchvision_dataset_and_function_data_with_preprocess(tmp_path: Path, user_module: WriteModule) -> None:
    from autocompress.sources import weights_transform

    transform = weights_transform("torchvision:mobilenet_v3_small", "torchvision:DEFAULT")
    _write_fake_mnist(tmp_path, train=30, test=6)
    splits = load_data(f"torchvision:MNIST:{tmp_path}", preprocess=transform, max_samples=10)
    assert splits.input_shape == (3, 224, 224) and stacked(splits.train)[0].shape == (10, 3, 224, 224)
    assert stacked(splits.test)[0].shape == (6, 3, 224, 224), "a split under the cap is kept whole"
    assert splits.info["preprocess"].startswith("ImageClassification(crop_size=[224]") and splits.info["channels"] == 3

    name = user_module(
        "user_data_preprocess",
        """
        import torch
        from torch.utils.data import TensorDataset

        def load(preprocess=None):
            assert preprocess is not None
            make = lambda n: TensorDataset(torch.zeros(n, 3, 8, 8), torch.arange(n) % 2)
            return make(8), make(4)
    """,
    )
    assert load_data(f"{name}:load", preprocess=transform).info["preprocess"].startswith("ImageClassification(")


def test_bad_preprocess_is_a_one_line_error(tmp_path: Path) -> None:
    _write_rgb_folder(tmp_path / "rgb")
    with pytest.raises(
        WorkloadError, match=r"the preprocessing returned Image for .*expected a float tensor C x H x W"
    ):
        load_data(f"imagefolder:{tmp_path / 'rgb'}", preprocess=lambda image: image)
    with pytest.raises(
        WorkloadError, match=r"returned 3x\d+x\d+ for .*\.png but 3x\d+x\d+ for the first image; make it crop"
    ):
        load_data(f"imagefolder:{tmp_path / 'rgb'}", preprocess=lambda image: torch.zeros(3, image.height, image.width))
    with pytest.raises(WorkloadError, match=r"preprocess=3 : expected a callable"):
        load_data(f"imagefolder:{tmp_path / 'rgb'}", preprocess=3)  # type: ignore[arg-type]


def test_unknown_weights_enum_lists_the_valid_names(offline_hub: Path) -> None:
    with pytest.raises(WorkloadError) as info:
        load_model("torchvision:resnet18", weights="torchvision:IMAGENET9K")
    assert str(info.value) == (
        "--weights torchvision:IMAGENET9K : resnet18 has no torchvision weights named 'IMAGENET9K'; "
        "expected torchvision:ENUM with ENUM one of IMAGENET1K_V1, DEFAULT (= IMAGENET1K_V1)"
    )
    with pytest.raises(
        WorkloadError,
        match=r"no torchvision weights named 'V3'; .*IMAGENET1K_V1, IMAGENET1K_V2, DEFAULT \(= IMAGENET1K_V2\)",
    ):
        load_model("torchvision:resnet50", weights="torchvision:V3")
    with pytest.raises(WorkloadError, match=r"no torchvision classification model named 'resnet1'"):
        load_model("torchvision:resnet1", weights="torchvision:DEFAULT")
    with pytest.raises(
        WorkloadError, match=r"need --model torchvision:NAME, got --model mymodels:build; pass --weights PATH"
    ):
        load_model("mymodels:build", weights="torchvision:DEFAULT")


def test_weights_enum_download_failure_says_where_to_put_the_file(offline_hub: Path) -> None:
    with pytest.raises(WorkloadError) as info:
        load_model("torchvision:resnet18", weights="torchvision:DEFAULT")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        "--weights torchvision:DEFAULT : could not download torchvision weights "
        "resnet18.IMAGENET1K_V1 (URLError: <urlopen error offline>)"
    ), message
    assert (
        f"put the file {RESNET18_FILE} (from https://download.pytorch.org/models/{RESNET18_FILE}) in "
        f"$TORCH_HOME/hub/checkpoints/ (here {offline_hub}) or pass --weights PATH" in message
    )


def test_weights_enum_loads_the_cached_file_offline(offline_hub: Path) -> None:
    torch.manual_seed(0)
    source = load_model("torchvision:resnet18")  # random weights standing in for the ImageNet ones
    offline_hub.mkdir(parents=True)
    torch.save(source.state_dict(), offline_hub / RESNET18_FILE)
    loaded = load_model("torchvision:resnet18", weights="torchvision:IMAGENET1K_V1", num_classes=1000)
    assert not loaded.training
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x)), "the weights come from $TORCH_HOME/hub/checkpoints/"
    (offline_hub / RESNET18_FILE).write_bytes(b"truncated")
    with pytest.raises(
        WorkloadError, match=rf"loading ResNet18_Weights.IMAGENET1K_V1 from .*{RESNET18_FILE} failed .*delete that file"
    ):
        load_model("torchvision:resnet18", weights="torchvision:DEFAULT")


def test_weights_enum_refuses_another_head_or_stem(offline_hub: Path) -> None:
    with pytest.raises(WorkloadError) as info:
        load_model("torchvision:resnet18", num_classes=10, weights="torchvision:DEFAULT")
    assert str(info.value) == (
        "--weights torchvision:DEFAULT : the pretrained ResNet18_Weights.IMAGENET1K_V1 head has 1000 classes "
        "(ImageNet) but 10 were asked for (--num-classes, or the data's class count); pass --num-classes 1000 with "
        "data labelled in those classes, or fine-tune the model on your data and pass --weights PATH with its "
        "state_dict"
    )
    with pytest.raises(WorkloadError, match=r"--small-input replaces the stem .*drop --small-input"):
        load_model("torchvision:resnet18", small_input=True, weights="torchvision:DEFAULT")
    assert not offline_hub.exists(), "refused before any download"
