"""Building a task's model, and the multilayer perceptron (``[model] arch = "mlp"``)."""

from __future__ import annotations

from torch import nn

import benchsuite.tasks.components as components
from benchsuite.errors import UsageError
from benchsuite.tasks.spec import ModelSpec

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}


def mlp(spec: ModelSpec) -> nn.Sequential:
    """Linear layers of ``sizes``; after every hidden linear layer: batch norm (if asked),
    the activation, dropout (if > 0). The output layer is a plain linear layer."""
    if len(spec.sizes) < 2:
        raise UsageError(f"mlp needs at least two sizes (input, output), got {list(spec.sizes)}")
    if spec.activation not in ACTIVATIONS:
        raise UsageError(f"unknown activation {spec.activation!r}; valid: {', '.join(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(spec.sizes[:-1], spec.sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(spec.sizes) - 2:
            if spec.batch_norm:
                layers.append(nn.BatchNorm1d(n_out))
            layers.append(ACTIVATIONS[spec.activation]())
            if spec.dropout > 0:
                layers.append(nn.Dropout(spec.dropout))
    model = nn.Sequential(*layers)
    if spec.init == "kaiming":
        for module in model:
            if isinstance(module, nn.Linear):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)
    elif spec.init != "default":
        raise UsageError(f"unknown init {spec.init!r}; valid: default, kaiming")
    return model


def build_model(spec: ModelSpec) -> nn.Module:
    """The model of a task's ``[model]`` table, from the builder its ``arch`` names in
    :mod:`benchsuite.tasks.components` (torchvision and timm load only when a convolutional
    task needs them)."""
    architecture = components.architecture(spec.arch)
    if architecture is None:
        known = ", ".join(a.name for a in components.architectures())
        raise UsageError(f"unknown model arch {spec.arch!r}; known: {known}")
    return architecture.builder()(spec)
