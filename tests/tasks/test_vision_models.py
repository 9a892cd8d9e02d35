"""The catalog's convolutional models: shapes, gradients, parameter counts against the
numbers the papers and libraries publish, local pretrained weights."""

import pytest
import torch

from benchsuite.errors import UsageError
from benchsuite.tasks.models import build_model
from benchsuite.tasks.spec import ModelSpec
from benchsuite.toolkit.weights import regularized_weights

# (arch, spec values, input size, parameter count)
MODELS = [
    ("resnet18-cifar", {}, 32, 11_173_962),  # the usual CIFAR ResNet-18 count
    ("resnet34-cifar", {}, 32, 21_282_122),
    ("resnet50-cifar", {}, 32, 23_520_842),
    ("resnet50", {"num_classes": 1000}, 64, 25_557_032),  # torchvision's published count
    ("vgg11", {"batch_norm": True}, 32, 9_231_114),
    ("vgg19", {"batch_norm": True}, 32, 20_040_522),
    ("wrn28-10", {"dropout": 0.3}, 32, 36_479_194),  # WRN-28-10: 36.5M (Zagoruyko and Komodakis)
    ("senet18", {}, 32, 11_260_354),
    ("cnn2", {"in_channels": 1}, 28, 1_199_882),
    # CIFAR-100 (DIPR Table 1): conv 3*32*9+32, conv 32*64*9+64, fc 9216*128+128, out 128*100+100
    ("cnn2", {"num_classes": 100}, 32, 896 + 18_496 + 1_179_776 + 12_900),
    ("senet18", {"num_classes": 100}, 32, 11_260_354 + 90 * 513),  # 90 more outputs of the 512-unit head
    ("convnext-tiny", {}, 32, 27_827_818),
    ("swin-tiny", {}, 32, 27_505_108),
]

# The GCSR paper's counts for its modified networks (no batch norm, 512/256-unit heads):
# AlexNet 2.6M, VGG-11 9.8M, VGG-16 15.2M, VGG-19 20.6M.
GCSR_COUNTS = [("alexnet-cifar", 2.6e6), ("vgg11", 9.8e6), ("vgg16", 15.2e6), ("vgg19", 20.6e6)]


@pytest.mark.parametrize("arch, values, size, count", MODELS)
def test_builds_runs_and_counts(arch, values, size, count):
    spec = ModelSpec(arch=arch, **values)
    model = build_model(spec)
    x = torch.randn(2, spec.in_channels, size, size)
    out = model(x)
    assert out.shape == (2, spec.num_classes)
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert sum(p.numel() for p in model.parameters()) == count


@pytest.mark.parametrize("arch, published", GCSR_COUNTS)
def test_gcsr_networks_match_the_papers_parameter_counts(arch, published):
    model = build_model(ModelSpec(arch=arch, dropout=0.5))
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(published, rel=0.02)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_regularized_weights_are_conv_and_linear_weights_only():
    model = build_model(ModelSpec(arch="resnet18-cifar"))
    weights = regularized_weights(model)
    assert len(weights) == 21  # 20 convolutions (3 of them 1x1 shortcuts) and the classifier
    assert all(w.dim() >= 2 for w in weights)


def test_pretrained_weights_from_a_local_file(tmp_path):
    spec = ModelSpec(arch="vgg11", batch_norm=True)
    source = build_model(spec)
    path = tmp_path / "vgg11.pt"
    torch.save({"state_dict": source.state_dict()}, path)
    loaded = build_model(ModelSpec(arch="vgg11", batch_norm=True, pretrained=str(path)))
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(UsageError, match="no file"):
        build_model(ModelSpec(arch="vgg11", pretrained=str(tmp_path / "missing.pt")))
    with pytest.raises(UsageError, match="does not fit this model"):
        build_model(ModelSpec(arch="resnet18-cifar", pretrained=str(path)))


def test_unknown_architecture_names_the_known_ones():
    with pytest.raises(UsageError, match="resnet18-cifar"):
        build_model(ModelSpec(arch="resnet1000"))
