"""BatchNorm statistics re-estimation: the statistics it computes (checked by hand), what it leaves as it was, and the
accuracy it brings back to a pruned net whose statistics are stale or wrong."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from autocompress.compress import batchnorm_layers, distill, prunable_groups, prune_model, recalibrate_batchnorm
from autocompress.compress.training import fit, predict_logits
from autocompress.measure import evaluate_torch
from autocompress.policy import DistillPolicy, PrunePolicy
from autocompress.sources.workload import load_digits_splits

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def _net(seed: int = 0) -> nn.Sequential:
    """Conv → BN2d → ReLU → Linear → Dropout → BN1d → Linear: both BatchNorm kinds, and a Dropout in front of one
    of them that must stay off while the statistics are re-estimated."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4, momentum=0.01),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 8),
        nn.Dropout(0.5),
        nn.BatchNorm1d(8),
        nn.Linear(8, 3),
    ).eval()


def _data(count: int = 48, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    images = 2.0 + 3.0 * torch.randn(count, 1, 6, 6, generator=generator)  # far from BN's initial mean 0, var 1
    return TensorDataset(images, torch.randint(0, 3, (count,), generator=generator))


def _stats(model: nn.Module) -> list[torch.Tensor]:
    return [t.clone() for bn in batchnorm_layers(model) for t in (bn.running_mean, bn.running_var)]


def test_one_batch_gives_that_batchs_mean_and_unbiased_variance_computed_by_hand() -> None:
    model, data = _net(), _data()
    images = data.tensors[0]
    used = recalibrate_batchnorm(model, data, images=len(data), batch_size=len(data), seed=0)
    assert used == len(data)
    # By hand: the conv's output per channel, then (BN2d in train mode normalising with the batch's own statistics,
    # as the passes do) the Linear's output per feature; Dropout is off, so the Linear sees all of it.
    conv = model[0](images)
    mean2d, var2d = conv.mean(dim=(0, 2, 3)), conv.var(dim=(0, 2, 3), unbiased=True)
    normed = (conv - mean2d.view(1, -1, 1, 1)) / torch.sqrt(conv.var(dim=(0, 2, 3), unbiased=False) + 1e-5).view(
        1, -1, 1, 1
    )
    normed = normed * model[1].weight.view(1, -1, 1, 1) + model[1].bias.view(1, -1, 1, 1)
    linear = model[4](torch.relu(normed).flatten(1))
    mean1d, var1d = linear.mean(dim=0), linear.var(dim=0, unbiased=True)
    for got, want, name in (
        (model[1].running_mean, mean2d, "BN2d mean"),
        (model[1].running_var, var2d, "BN2d var"),
        (model[6].running_mean, mean1d, "BN1d mean (Dropout off)"),
        (model[6].running_var, var1d, "BN1d var (Dropout off)"),
    ):
        assert torch.allclose(got, want.detach(), rtol=1e-4, atol=1e-5), (name, got, want)


def test_several_batches_average_the_batch_statistics_and_a_short_last_batch_is_left_out() -> None:
    model, data = _net(), _data(50)
    images = data.tensors[0]
    # 50 images in batches of 16: three full batches (48 images); the last 2 would weigh as much as 16.
    used = recalibrate_batchnorm(model, data, images=50, batch_size=16, seed=3)
    assert used == 48
    drawn = torch.randperm(50, generator=torch.Generator().manual_seed(3))[:48]
    conv = model[0](images[drawn]).detach()
    # The cumulative average of equal-sized batches' means is the mean of all their images, whatever the grouping.
    assert torch.allclose(model[1].running_mean, conv.mean(dim=(0, 2, 3)), atol=1e-5)
    assert model[1].num_batches_tracked.item() == 3
    batches = conv.split(16)
    var = torch.stack([b.var(dim=(0, 2, 3), unbiased=True) for b in batches]).mean(0)
    assert torch.allclose(model[1].running_var, var, rtol=1e-4), "the mean of the three batch variances"


def test_momentum_and_every_modules_mode_come_back() -> None:
    model = _net()
    assert model[1].momentum == 0.01 and model[6].momentum == 0.1
    recalibrate_batchnorm(model, _data(), images=32, batch_size=16, seed=0)
    assert (model[1].momentum, model[6].momentum) == (0.01, 0.1)
    assert not any(m.training for m in model.modules()), "eval in, eval out"
    model.train()
    model[5].eval()
    recalibrate_batchnorm(model, _data(), images=32, batch_size=16, seed=0)
    assert [m.training for m in model.modules()] == [True, True, True, True, True, True, False, True, True]


def test_a_model_without_batchnorm_is_left_untouched_and_not_run() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 3), nn.Dropout(0.2)).eval()
    before = copy.deepcopy(model.state_dict())
    calls: list[int] = []
    model.register_forward_hook(lambda *_: calls.append(1))
    assert recalibrate_batchnorm(model, _data(), images=32, batch_size=16, seed=0) == 0
    assert calls == [], "no forward pass"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training
    # track_running_stats=False has nothing to re-estimate either.
    assert recalibrate_batchnorm(nn.BatchNorm1d(4, track_running_stats=False), _data(), images=8, seed=0) == 0


def test_the_same_seed_draws_the_same_images_and_another_seed_others() -> None:
    data = _data(64)
    a, b, c = _net(), _net(), _net()
    for model, seed in ((a, 7), (b, 7), (c, 8)):
        assert recalibrate_batchnorm(model, data, images=16, batch_size=8, seed=seed) == 16
    assert all(torch.equal(x, y) for x, y in zip(_stats(a), _stats(b)))
    assert not all(torch.equal(x, y) for x, y in zip(_stats(a), _stats(c)))


def test_edge_counts_and_bad_options() -> None:
    data = _data(10)
    model = _net()
    assert recalibrate_batchnorm(model, data, images=1000, batch_size=4, seed=0) == 8, "at most the data, whole batches"
    before = _stats(model)
    assert recalibrate_batchnorm(model, data, images=0, seed=0) == 0
    assert all(torch.equal(x, y) for x, y in zip(before, _stats(model))), "0 images change nothing"
    with pytest.raises(ValueError, match="`images` must be >= 0, but got -1"):
        recalibrate_batchnorm(model, data, images=-1, seed=0)
    with pytest.raises(ValueError, match="`batch_size` must be positive"):
        recalibrate_batchnorm(model, data, images=4, batch_size=0, seed=0)


class _BatchStore(Dataset):
    """Reads whole batches through ``__getitems__``, as the image stores do; single reads are an error here."""

    def __init__(self, data: TensorDataset) -> None:
        self.data, self.batches = data, 0

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        raise AssertionError("read one by one")

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, int]]:
        self.batches += 1
        return [(self.data[i][0], int(self.data[i][1])) for i in indices]


def test_a_store_is_read_a_batch_at_a_time_with_the_same_result() -> None:
    data = _data(40)
    store, direct, stored = _BatchStore(data), _net(), _net()
    recalibrate_batchnorm(direct, data, images=32, batch_size=8, seed=1)
    assert recalibrate_batchnorm(stored, store, images=32, batch_size=8, seed=1) == 32
    assert store.batches == 4
    assert all(torch.allclose(x, y) for x, y in zip(_stats(direct), _stats(stored)))


def test_a_failing_pass_puts_back_the_old_statistics_and_momentum() -> None:
    model = _net()
    before = _stats(model)
    model[4].register_forward_hook(lambda *_: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        recalibrate_batchnorm(model, _data(), images=16, batch_size=8, seed=0)
    assert all(torch.equal(x, y) for x, y in zip(before, _stats(model)))
    assert model[1].momentum == 0.01 and not model.training


@pytest.mark.parametrize("device", DEVICES)
def test_the_passes_run_on_the_device_and_the_model_goes_back_where_it_was(device: str) -> None:
    reference, model = _net(), _net()
    recalibrate_batchnorm(reference, _data(), images=32, batch_size=16, seed=0)
    seen: list[str] = []
    model[0].register_forward_hook(lambda module, inputs, output: seen.append(output.device.type))
    recalibrate_batchnorm(model, _data(), images=32, batch_size=16, seed=0, device=device)
    assert seen == [device, device]
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    # TF32 on a GPU rounds differently from the CPU's fp32 (about 1e-3).
    assert all(torch.allclose(x, y, rtol=2e-3, atol=2e-3) for x, y in zip(_stats(reference), _stats(model)))


@pytest.fixture(scope="module")
def digits_net() -> tuple[nn.Module, TensorDataset, TensorDataset]:
    """A small conv net trained on 8x8 digits for a second or two."""
    train, val, _ = load_digits_splits(size=8)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    fit(model, train, lambda logits, labels, _: nn.functional.cross_entropy(logits, labels), steps=150, lr=0.01)
    return model.eval(), train, val


def _corrupt(model: nn.Module) -> None:
    generator = torch.Generator().manual_seed(0)
    for bn in batchnorm_layers(model):
        bn.running_mean.add_(3.0 * torch.randn(bn.running_mean.shape, generator=generator))
        bn.running_var.mul_(0.1 + 10.0 * torch.rand(bn.running_var.shape, generator=generator))


def test_corrupted_statistics_of_a_pruned_net_are_recovered(digits_net) -> None:
    teacher, train, val = digits_net
    accuracy = evaluate_torch(teacher, val).top1
    assert accuracy > 0.8, accuracy
    model = copy.deepcopy(teacher)
    _corrupt(model)
    assert evaluate_torch(model, val).top1 < 0.3
    recalibrate_batchnorm(model, train, images=512, seed=0)
    assert evaluate_torch(model, val).top1 == pytest.approx(accuracy, abs=0.03), "the teacher's own accuracy back"

    x = torch.zeros(1, 1, 8, 8)
    groups = prunable_groups(teacher, x, num_classes=10)
    student = prune_model(teacher, PrunePolicy(ratios={g.name: 0.3 for g in groups}, round_to=None), x, num_classes=10)
    stale = evaluate_torch(student, val).top1
    _corrupt(student)
    corrupted = evaluate_torch(student, val).top1
    recalibrate_batchnorm(student, train, images=512, seed=0)
    recovered = evaluate_torch(student, val).top1
    # Measured: 0.47 stale (the teacher's statistics on the pruned channels), 0.10 corrupted, 0.72 re-estimated.
    assert corrupted < 0.3 and recovered > max(stale + 0.1, 0.6), (stale, corrupted, recovered)


def test_distill_re_estimates_after_its_steps_and_reports_it(digits_net) -> None:
    teacher, train, val = digits_net
    x = torch.zeros(1, 1, 8, 8)
    groups = prunable_groups(teacher, x, num_classes=10)
    policy = DistillPolicy(temperature=4.0, alpha=0.7, lr=3e-3, steps=5, batch_size=32)
    logits = predict_logits(teacher, train)

    def student() -> nn.Module:
        ratios = {g.name: 0.3 for g in groups}
        return prune_model(teacher, PrunePolicy(ratios=ratios, round_to=None), x, num_classes=10)

    with_bn, without = student(), student()
    result = distill(with_bn, logits, train, policy, seed=2)
    plain = distill(without, logits, train, policy, seed=2, recalibrate_bn=False)
    assert result.bn_images == 1024 - 1024 % 32 and plain.bn_images == 0 and plain.bn_seconds == 0.0
    assert 0.0 < result.bn_seconds <= result.seconds
    # The same as re-estimating by hand after the same steps: same images (the seed), same batches.
    assert recalibrate_batchnorm(without, train, images=1024, batch_size=32, seed=2) == result.bn_images
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(_stats(with_bn), _stats(without)))
    assert [bn.momentum for bn in batchnorm_layers(with_bn)] == [0.1, 0.1]
    assert not with_bn.training and {p.device.type for p in with_bn.parameters()} == {"cpu"}
    # No step, no change.
    untouched = student()
    before = _stats(untouched)
    assert distill(untouched, logits, train, DistillPolicy(steps=0), seed=2).bn_images == 0
    assert all(torch.equal(a, b) for a, b in zip(before, _stats(untouched)))
