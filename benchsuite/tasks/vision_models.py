"""Convolutional models of the paper-scale catalog, named by ``[model] arch``.

torchvision and timm definitions where they exist, with the stems the papers change for
32x32 images. Every builder reads ``num_classes`` and ``in_channels`` from the task's
ModelSpec, and starts from ``pretrained`` (a local state-dict file) when one is named:
weights are never downloaded. Task files name them through :mod:`benchsuite.tasks.components`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet as tv_resnet

from benchsuite.errors import UsageError
from benchsuite.tasks.spec import ModelSpec


def with_pretrained(build: Callable[[ModelSpec], nn.Module]) -> Callable[[ModelSpec], nn.Module]:
    """``build``, then the task's ``pretrained`` weights loaded into the model when it names a file."""

    @functools.wraps(build)
    def build_with_weights(spec: ModelSpec) -> nn.Module:
        model = build(spec)
        if spec.pretrained:
            load_pretrained(model, spec.pretrained)
        return model

    return build_with_weights


def load_pretrained(model: nn.Module, path: str) -> None:
    """Load a local state dict (plain, or under a "state_dict"/"model" key), strictly."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UsageError(f"model.pretrained: no file {file}; name a local state-dict file (nothing is downloaded)")
    state = torch.load(file, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and not any(isinstance(v, torch.Tensor) for v in state.values()):
        state = state.get("state_dict", state.get("model", state))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise UsageError(f"model.pretrained: {file} does not fit this model: {first}") from None


# --- ResNets -------------------------------------------------------------------------------

def _cifar_resnet(block, layers: list[int], spec: ModelSpec) -> nn.Module:
    """torchvision's ResNet with the CIFAR stem: a 3x3 stride-1 convolution and no max-pool,
    so 32x32 inputs keep their resolution into the first stage. Convolutions start from
    PyTorch's default Kaiming-uniform initialization, as the Weight Compander paper states
    for its ResNets (torchvision's own is Kaiming-normal)."""
    model = tv_resnet.ResNet(block, layers, num_classes=spec.num_classes)
    model.conv1 = nn.Conv2d(spec.in_channels, 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.reset_parameters()
    return model


@with_pretrained
def resnet18_cifar(spec: ModelSpec) -> nn.Module:
    """ResNet-18 (BasicBlock, 2-2-2-2) with the CIFAR stem."""
    return _cifar_resnet(tv_resnet.BasicBlock, [2, 2, 2, 2], spec)


@with_pretrained
def resnet34_cifar(spec: ModelSpec) -> nn.Module:
    """ResNet-34 (BasicBlock, 3-4-6-3) with the CIFAR stem."""
    return _cifar_resnet(tv_resnet.BasicBlock, [3, 4, 6, 3], spec)


@with_pretrained
def resnet50_cifar(spec: ModelSpec) -> nn.Module:
    """ResNet-50 (Bottleneck, 3-4-6-3) with the CIFAR stem."""
    return _cifar_resnet(tv_resnet.Bottleneck, [3, 4, 6, 3], spec)


@with_pretrained
def resnet50(spec: ModelSpec) -> nn.Module:
    """torchvision's ImageNet ResNet-50 (7x7 stride-2 stem, max-pool), random init."""
    model = tv_resnet.resnet50(weights=None, num_classes=spec.num_classes)
    if spec.in_channels != 3:
        model.conv1 = nn.Conv2d(spec.in_channels, 64, 7, stride=2, padding=3, bias=False)
    return model


# --- VGG -------------------------------------------------------------------------------------

VGG_CONFIGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """VGG for 32x32 inputs: 3x3 convolutions (batch norm after each when asked), 2x2
    max-pools, 512 x 1 x 1 features. Head: with dropout > 0, the GCSR paper's "fully
    connected layers of 512 units" with dropout (512-512-classes); without, one linear
    layer (the common CIFAR VGG with batch norm)."""

    def __init__(self, depth: int, spec: ModelSpec):
        super().__init__()
        layers: list[nn.Module] = []
        channels = spec.in_channels
        for item in VGG_CONFIGS[depth]:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            layers.append(nn.Conv2d(channels, item, 3, padding=1))
            if spec.batch_norm:
                layers.append(nn.BatchNorm2d(item))
            layers.append(nn.ReLU(inplace=True))
            channels = item
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        if spec.dropout > 0:
            self.classifier = nn.Sequential(
                nn.Dropout(spec.dropout), nn.Linear(512, 512), nn.ReLU(inplace=True),
                nn.Dropout(spec.dropout), nn.Linear(512, 512), nn.ReLU(inplace=True),
                nn.Linear(512, spec.num_classes),
            )
        else:
            self.classifier = nn.Linear(512, spec.num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


@with_pretrained
def vgg11(spec: ModelSpec) -> nn.Module:
    """VGG-11 for 32x32 inputs (:class:`VGG`)."""
    return VGG(11, spec)


@with_pretrained
def vgg16(spec: ModelSpec) -> nn.Module:
    """VGG-16 for 32x32 inputs (:class:`VGG`)."""
    return VGG(16, spec)


@with_pretrained
def vgg19(spec: ModelSpec) -> nn.Module:
    """VGG-19 for 32x32 inputs (:class:`VGG`)."""
    return VGG(19, spec)


# --- Wide ResNet -----------------------------------------------------------------------------

class _WideBlock(nn.Module):
    """Pre-activation block: BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3, 1x1 shortcut when the
    shape changes (Zagoruyko and Komodakis's reference code)."""

    def __init__(self, n_in: int, n_out: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(n_in)
        self.conv1 = nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(n_out)
        self.conv2 = nn.Conv2d(n_out, n_out, 3, stride=1, padding=1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut = (nn.Conv2d(n_in, n_out, 1, stride=stride, bias=False)
                         if stride != 1 or n_in != n_out else None)

    def forward(self, x):
        out = torch.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.dropout(torch.relu(self.bn2(out))))
        return out + shortcut


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen: int, spec: ModelSpec):
        super().__init__()
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv = nn.Conv2d(spec.in_channels, widths[0], 3, padding=1, bias=False)
        blocks = []
        for stage, stride in zip(range(3), (1, 2, 2)):
            for i in range(n):
                blocks.append(_WideBlock(widths[stage] if i == 0 else widths[stage + 1], widths[stage + 1],
                                         stride if i == 0 else 1, spec.dropout))
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], spec.num_classes)

    def forward(self, x):
        out = torch.relu(self.bn(self.blocks(self.conv(x))))
        return self.fc(out.mean((2, 3)))


@with_pretrained
def wrn28_10(spec: ModelSpec) -> nn.Module:
    """WRN-28-10; dropout between the convolutions of each block (the papers use 0.3)."""
    return WideResNet(28, 10, spec)


# --- AlexNet as modified for 32x32 images (GCSR paper) -------------------------------------

@with_pretrained
def alexnet_cifar(spec: ModelSpec) -> nn.Module:
    """torchvision's AlexNet as the GCSR paper modifies it: max-pool kernels 3 -> 2, first
    convolution padding 2 -> 5, every fully connected layer 256 units (dropout as the task
    says, the paper 0.5). On 32x32 inputs the features end at 256 x 1 x 1."""
    bn = (lambda c: nn.BatchNorm2d(c)) if spec.batch_norm else (lambda c: nn.Identity())
    features = nn.Sequential(
        nn.Conv2d(spec.in_channels, 64, 11, stride=4, padding=5), bn(64), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(64, 192, 5, padding=2), bn(192), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(192, 384, 3, padding=1), bn(384), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), bn(256), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), bn(256), nn.ReLU(inplace=True), nn.MaxPool2d(2),
    )
    classifier = nn.Sequential(
        nn.Dropout(spec.dropout), nn.Linear(256, 256), nn.ReLU(inplace=True),
        nn.Dropout(spec.dropout), nn.Linear(256, 256), nn.ReLU(inplace=True),
        nn.Linear(256, spec.num_classes),
    )
    return nn.Sequential(features, nn.AdaptiveAvgPool2d(1), nn.Flatten(), classifier)


# --- SENet-18 -------------------------------------------------------------------------------

class _SEBlock(nn.Module):
    """Pre-activation basic block with squeeze-and-excitation (reduction 16)."""

    def __init__(self, n_in: int, n_out: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(n_in)
        self.conv1 = nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(n_out)
        self.conv2 = nn.Conv2d(n_out, n_out, 3, stride=1, padding=1, bias=False)
        self.squeeze = nn.Conv2d(n_out, n_out // 16, 1)
        self.excite = nn.Conv2d(n_out // 16, n_out, 1)
        self.shortcut = (nn.Conv2d(n_in, n_out, 1, stride=stride, bias=False)
                         if stride != 1 or n_in != n_out else None)

    def forward(self, x):
        out = torch.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv2(torch.relu(self.bn2(self.conv1(out))))
        weight = torch.sigmoid(self.excite(torch.relu(self.squeeze(out.mean((2, 3), keepdim=True)))))
        return out * weight + shortcut


@with_pretrained
def senet18(spec: ModelSpec) -> nn.Module:
    """SENet-18 for 32x32 images: 3x3 stem, four stages of two SE blocks (64-128-256-512)."""
    layers: list[nn.Module] = [nn.Conv2d(spec.in_channels, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64),
                               nn.ReLU(inplace=True)]
    channels = 64
    for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [_SEBlock(channels, width, stride), _SEBlock(width, width, 1)]
        channels = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, spec.num_classes))


# --- the DIPR paper's 2-layer CNN ---------------------------------------------------------------

@with_pretrained
def cnn2(spec: ModelSpec) -> nn.Module:
    """Two convolutional layers (32 and 64 3x3 filters), max-pooling to 12x12, dropout, a
    128-unit fully connected layer, dropout, the output layer. The DIPR paper names a
    "2-layer CNN" without its sizes; this is the common PyTorch MNIST network (on 28x28 the
    adaptive max-pool is its 2x2 max-pool; on 32x32 it gives the same 9216 features).
    ``dropout`` is the second dropout's rate and half of it the first's (0.5: the example's
    0.25 and 0.5; 0: none)."""
    return nn.Sequential(
        nn.Conv2d(spec.in_channels, 32, 3), nn.ReLU(inplace=True),
        nn.Conv2d(32, 64, 3), nn.ReLU(inplace=True), nn.AdaptiveMaxPool2d(12),
        nn.Dropout(spec.dropout / 2), nn.Flatten(),
        nn.Linear(64 * 12 * 12, 128), nn.ReLU(inplace=True), nn.Dropout(spec.dropout),
        nn.Linear(128, spec.num_classes),
    )


# --- timm: ConvNeXt-tiny and Swin-tiny on 32x32 images (LPWD paper) ---------------------------

@with_pretrained
def convnext_tiny(spec: ModelSpec) -> nn.Module:
    """timm's ConvNeXt-tiny, random init. On 32x32 inputs its stride-4 stem and three
    downsamplings leave a 1x1 map, as in the paper's use of timm on CIFAR."""
    import timm

    return timm.create_model("convnext_tiny", pretrained=False, num_classes=spec.num_classes,
                             in_chans=spec.in_channels)


@with_pretrained
def swin_tiny(spec: ModelSpec) -> nn.Module:
    """timm's Swin-tiny (depths 2-2-6-2, embedding 96), random init, for 32x32 images: patch
    size 2 and window 4, so each stage's token grid (16, 8, 4, 2) is divisible by the
    window (timm clamps the window to the grid at the last stage). The paper trains timm's
    Swin-tiny at 32x32 without naming these sizes."""
    import timm

    return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=spec.num_classes,
                             in_chans=spec.in_channels, img_size=32, patch_size=2, window_size=4)
