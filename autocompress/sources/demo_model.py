"""Models shipped with autocompress: the demo teacher.

The demo teacher is a small residual CNN (3 stages x 2 basic blocks, widths 32/64/128) for 32x32 single-channel
images. Its size is chosen so fp32 ONNX Runtime latency is about 1 ms at batch 1 on one thread — well above
measurement noise — while training it on digits takes about a minute on 2 cores.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BasicBlock", "DemoResNet", "build_demo_resnet"]


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs plus an identity or 1x1 projection shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class DemoResNet(nn.Module):
    """Small ResNet for ``in_channels x 32 x 32`` inputs."""

    def __init__(self, *, num_classes: int = 10, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        self.layer1 = nn.Sequential(BasicBlock(width, width), BasicBlock(width, width))
        self.layer2 = nn.Sequential(BasicBlock(width, 2 * width, 2), BasicBlock(2 * width, 2 * width))
        self.layer3 = nn.Sequential(BasicBlock(2 * width, 4 * width, 2), BasicBlock(4 * width, 4 * width))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def build_demo_resnet(*, num_classes: int = 10, in_channels: int = 1, width: int = 32, seed: int = 0) -> DemoResNet:
    """Build a freshly initialised :class:`DemoResNet` with a seeded initialisation."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return DemoResNet(num_classes=num_classes, in_channels=in_channels, width=width)
    finally:
        torch.random.set_rng_state(generator_state)
