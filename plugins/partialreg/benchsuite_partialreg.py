"""Group lasso (GL), sparse group lasso (SGL) and their partial versions (iGL, iSGL).

Groups are the outgoing weights of each neuron: for layer l (the l-th weight module, in
forward order) the neurons are its inputs, so neuron n's group is column n of a linear
weight, or input channel n of a convolution weight. See README.md.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from benchsuite import Hyperparameter, Plugin, hookimpl
from benchsuite.weights import weight_modules

VARIANTS = ("gl", "sgl", "igl", "isgl")


def outgoing_groups(weight: torch.Tensor) -> torch.Tensor:
    """(neurons, group size): row n holds the outgoing weights of input neuron n."""
    return weight.transpose(0, 1).reshape(weight.shape[1], -1)


def group_penalty(weight: torch.Tensor, alpha: float, beta: torch.Tensor | None) -> torch.Tensor:
    """One layer's term of eqs. 2/3 (beta None) or 6/7: (1 - alpha) sqrt(|p_l|) sum_n beta_n
    ||theta_n||_2 + alpha sum_n beta_n |theta_n|_1."""
    groups = outgoing_groups(weight)
    norms = groups.norm(dim=1)
    l1 = groups.abs().sum(dim=1) if alpha else None
    if beta is not None:
        norms = norms * beta
        l1 = l1 * beta if l1 is not None else None
    term = (1 - alpha) * math.sqrt(groups.shape[1]) * norms.sum()
    if l1 is not None:
        term = term + alpha * l1.sum()
    return term


class SelectFeatures(nn.Module):
    """Keeps the input features that survived pruning (the pruned input neurons)."""

    def __init__(self, keep: torch.Tensor):
        super().__init__()
        self.register_buffer("keep", keep)

    def forward(self, x):
        return x.index_select(1, self.keep)


class PartialRegularization(Plugin):
    """Group lasso variants with a partial 0/1 coefficient beta_n, and neuron pruning."""

    name = "partialreg"
    citation = "E Zhenqian, Gao Weiguo. An improving framework of regularization for network compression."
    report_metrics = ("neurons_l*", "sparsity_l*", "sparsity")
    hyperparameters = (
        Hyperparameter("variant", str, "igl", choices=VARIANTS,
                       help="gl, sgl (eqs. 2-3) or partial igl, isgl (eqs. 6-7)"),
        Hyperparameter("lam", float, 1e-3, low=0.0,
                       help="regularization factor (Table 1: 1e-3 toy/Boston, 1e-4 others)"),
        Hyperparameter("alpha", float, 0.1, low=0.0, high=1.0, help="weight of the L1 part in the sparse variants"),
        Hyperparameter("ratio_of_zeros", float, 0.125, low=0.0, high=1.0,
                       help="partial variants: fraction of each layer's neurons with beta_n = 0 (exempt)"),
        Hyperparameter("threshold", float, 1e-3, low=0.0, help="|w| below this is zero for sparsity and pruning"),
        Hyperparameter("prune", bool, True, help="prune dead neurons in finalize"),
    )

    def __init__(self, **values):
        super().__init__(**values)
        self.betas: list[torch.Tensor | None] = []

    @property
    def partial(self) -> bool:
        return self.hp["variant"] in ("igl", "isgl")

    @property
    def alpha(self) -> float:
        return self.hp["alpha"] if self.hp["variant"] in ("sgl", "isgl") else 0.0

    @hookimpl
    def reparametrize(self, model, run):
        """Draw beta (from the run's plugin stream): in every layer a ratio_of_zeros share
        of the neurons, chosen at random, is exempt from the penalty."""
        self.betas = []
        for _, module in weight_modules(model):
            n = module.weight.shape[1]
            if not self.partial:
                self.betas.append(None)
                continue
            exempt = round(self.hp["ratio_of_zeros"] * n)
            beta = torch.ones(n, device=module.weight.device)
            chosen = torch.randperm(n, generator=run.rng, device=run.rng.device)[:exempt]
            beta[chosen.to(beta.device)] = 0.0
            self.betas.append(beta)

    @hookimpl
    def penalty(self, model, run):
        modules = [m for _, m in weight_modules(model)]
        terms = [group_penalty(m.weight, self.alpha, beta) for m, beta in zip(modules, self.betas)]
        return self.hp["lam"] * torch.stack(terms).sum()

    @hookimpl
    def metrics(self, model, run):
        out = {}
        neurons = neuron_counts(model)
        for i, count in enumerate(neurons):
            out[f"neurons_l{i}"] = count
        out["neurons_total"] = sum(neurons)
        weights = [m.weight.detach() for _, m in weight_modules(model)]
        small = [(w.abs() < self.hp["threshold"]).sum().item() for w in weights]
        for i, (s, w) in enumerate(zip(small, weights)):
            out[f"sparsity_l{i}"] = s / w.numel()
        out["sparsity"] = sum(small) / sum(w.numel() for w in weights)
        out["n_weights"] = sum(w.numel() for w in weights)
        return out

    @hookimpl
    def finalize(self, model, run):
        if self.hp["prune"]:
            return prune_dead_neurons(model, self.hp["threshold"])
        return None


def neuron_counts(model: nn.Module) -> list[int]:
    """Neurons per layer: the inputs of every weight module, then the last one's outputs."""
    modules = [m for _, m in weight_modules(model)]
    if not modules:
        return []
    return [m.weight.shape[1] for m in modules] + [modules[-1].weight.shape[0]]


def _blocks(model: nn.Sequential):
    """Split a sequential MLP into [Linear, <modules up to the next Linear>] blocks."""
    blocks, current = [], None
    for module in model:
        if isinstance(module, nn.Linear):
            current = [module, []]
            blocks.append(current)
        elif current is None:
            return None  # something before the first linear layer
        else:
            current[1].append(module)
    return blocks


@torch.no_grad()
def prune_dead_neurons(model: nn.Module, threshold: float) -> nn.Module | None:
    """A smaller sequential MLP without dead neurons, or None when the model is not a
    sequential MLP (left unpruned).

    A hidden neuron is dead when all its incoming or all its outgoing weights are below
    ``threshold`` in magnitude. Its remaining contribution to the next layer, the constant
    act(BN(bias)) it outputs when its inputs no longer reach it, is added to the next
    layer's bias before it is removed. Input features whose outgoing weights are all below
    the threshold are dropped through a feature-selection module at the front.
    """
    if not isinstance(model, nn.Sequential) or any(isinstance(m, nn.Sequential) for m in model):
        return None
    blocks = _blocks(model)
    if not blocks or any(not isinstance(m, (nn.BatchNorm1d, nn.ReLU, nn.Tanh, nn.GELU, nn.Sigmoid, nn.Dropout,
                                             nn.Identity)) for _, tail in blocks for m in tail):
        return None
    was_training = model.training
    model.eval()
    linears = [linear for linear, _ in blocks]

    # input features: drop those with no outgoing weight left
    first = linears[0]
    keep_inputs = (first.weight.abs() >= threshold).any(dim=0).nonzero().flatten()
    if len(keep_inputs) == 0:
        keep_inputs = torch.zeros(1, dtype=torch.long, device=first.weight.device)
    layers: list[nn.Module] = []
    if len(keep_inputs) < first.in_features:
        layers.append(SelectFeatures(keep_inputs))
    new_linears = [None] * len(linears)
    in_keep = keep_inputs
    for i, (linear, tail) in enumerate(blocks):
        w, b = linear.weight[:, in_keep], linear.bias
        if i == len(blocks) - 1:  # output layer: never pruned
            new = nn.Linear(len(in_keep), linear.out_features).to(w)
            new.weight.copy_(w), new.bias.copy_(b)
            layers += [new, *tail]
            new_linears[i] = new
            break
        nxt = linears[i + 1]
        dead_in = (w.abs() < threshold).all(dim=1)
        dead_out = (nxt.weight.abs() < threshold).all(dim=0)
        keep = (~(dead_in | dead_out)).nonzero().flatten()
        if len(keep) == 0:  # keep one neuron so the layer stays a layer
            keep = torch.zeros(1, dtype=torch.long, device=w.device)
        # constant output of incoming-dead neurons, shifted into the next layer's bias
        constant = b.clone().unsqueeze(0)
        for module in tail:
            constant = module(constant)
        shift = (nxt.weight * (dead_in & ~dead_out).to(w) * constant).sum(dim=1)
        nxt.bias.add_(shift)
        new = nn.Linear(len(in_keep), len(keep)).to(w)
        new.weight.copy_(w[keep]), new.bias.copy_(b[keep])
        layers.append(new)
        for module in tail:
            if isinstance(module, nn.BatchNorm1d):
                bn = nn.BatchNorm1d(len(keep), eps=module.eps, momentum=module.momentum).to(w)
                bn.weight.copy_(module.weight[keep]), bn.bias.copy_(module.bias[keep])
                bn.running_mean.copy_(module.running_mean[keep]), bn.running_var.copy_(module.running_var[keep])
                bn.num_batches_tracked.copy_(module.num_batches_tracked)
                layers.append(bn)
            else:
                layers.append(module)
        in_keep = keep
    pruned = nn.Sequential(*layers)
    pruned.train(was_training)
    return pruned
