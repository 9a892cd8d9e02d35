"""Group lasso (GL), sparse group lasso (SGL) and their partial versions (iGL, iSGL).

Groups are the outgoing weights of each neuron: for layer l (the l-th weight module, in
forward order) the neurons are its inputs, so neuron n's group is column n of a linear
weight, or input channel n of a convolution weight. See README.md.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from benchsuite import Hyperparameter, LogUniform, Plugin, hookimpl
from benchsuite.tasks.spec import ARCHS
from benchsuite.toolkit.gradients import with_direct_gradient
from benchsuite.toolkit.weights import EpochCache, weight_modules

VARIANTS = ("gl", "sgl", "igl", "isgl")
HOST_CNN_ARCHS = frozenset(ARCHS) - {"mlp"}  # the host's convolutional models: never prunable


def outgoing_groups(weight: torch.Tensor) -> torch.Tensor:
    """(neurons, group size): row n holds the outgoing weights of input neuron n."""
    return weight.transpose(0, 1).reshape(weight.shape[1], -1)


def _neuron_norms(weight: torch.Tensor) -> torch.Tensor:
    """||theta_n||_2 of every outgoing group (dim 1 indexes the neurons), from one
    squared-sum pass."""
    return weight.square().sum(dim=[d for d in range(weight.dim()) if d != 1]).sqrt()


def _group_gradient(weight: torch.Tensor, norms: torch.Tensor, numerator: torch.Tensor) -> torch.Tensor:
    """numerator_n theta / ||theta_n|| in one broadcast pass (0 for an all-zero group)."""
    per_neuron = torch.where(norms > 0, numerator / norms, 0.0)
    return weight * per_neuron.reshape([1, -1] + [1] * (weight.dim() - 2))


class _WeightedGroupNorms(torch.autograd.Function):
    """sum_n c_n ||theta_n||_2 over the outgoing groups of ``weight`` (dim 1 indexes the
    neurons): the norms from one squared-sum pass, and a gradient c_n theta / ||theta_n||
    in one broadcast pass (0 for a group that is all zero)."""

    @staticmethod
    def forward(ctx, weight, coefficients):
        detached = weight.detach()
        norms = _neuron_norms(detached)
        ctx.save_for_backward(detached, norms, coefficients)
        return (norms * coefficients).sum()

    @staticmethod
    def backward(ctx, grad):
        weight, norms, coefficients = ctx.saved_tensors
        return _group_gradient(weight, norms, coefficients * grad), None


def group_penalty(weight: torch.Tensor, alpha: float, beta: torch.Tensor | None) -> torch.Tensor:
    """One layer's term of eqs. 2/3 (beta None) or 6/7: (1 - alpha) sqrt(|p_l|) sum_n beta_n
    ||theta_n||_2 + alpha sum_n beta_n |theta_n|_1."""
    neurons = weight.shape[1]
    group_size = weight.numel() // neurons
    ones = beta if beta is not None else torch.ones(neurons, device=weight.device, dtype=weight.dtype)
    term = (1 - alpha) * math.sqrt(group_size) * _WeightedGroupNorms.apply(weight, ones.to(weight.dtype))
    if alpha:
        l1 = outgoing_groups(weight).abs().sum(dim=1)
        term = term + alpha * (l1 * beta if beta is not None else l1).sum()
    return term


class _GroupLassoPenalty(torch.autograd.Function):
    """lam * sum_l f_l c_l sum_n beta_n ||theta_n||_2 over every layer at once (eqs. 2, 4
    and 6 with alpha = 0), given each layer's group norms: one autograd node for the whole
    penalty instead of a dozen per layer. Value and gradient are those of ``lam * sum_l f_l
    * group_penalty(w_l, 0, beta_l)`` bit for bit: the same float32 operations in the same
    order, only without autograd between them. ``layers``: one ``(f_l, c_l, beta_l or
    None)`` per weight."""

    @staticmethod
    def forward(ctx, lam, layers, norms, *weights):
        terms = []
        for (factor, scale, beta), layer_norms in zip(layers, norms):
            term = (layer_norms if beta is None else layer_norms * beta).sum() * scale
            terms.append(term if factor == 1.0 else term * factor)  # x * 1.0 == x: skipped
        ctx.lam, ctx.layers = lam, layers
        ctx.save_for_backward(*[w.detach() for w in weights], *norms)
        return torch.stack(terms).sum() * lam

    @staticmethod
    def backward(ctx, grad):
        saved = ctx.saved_tensors
        weights, all_norms = saved[:len(saved) // 2], saved[len(saved) // 2:]
        grads = []
        for i, (weight, norms, numerator) in enumerate(zip(weights, all_norms,
                                                          _numerators(grad, ctx.lam, ctx.layers))):
            grads.append(_group_gradient(weight, norms, numerator) if ctx.needs_input_grad[3 + i] else None)
        return None, None, None, *grads


def _numerators(grad: torch.Tensor, lam: float, layers):
    """Each layer's numerator of the gradient lam f_l c_l beta_n theta_n / ||theta_n||,
    given the gradient ``grad`` that reaches the penalty."""
    grad = grad * lam
    for factor, scale, beta in layers:
        layer_grad = (grad if factor == 1.0 else grad * factor) * scale
        yield layer_grad if beta is None else beta * layer_grad


def group_lasso(lam: float, weights: list[torch.Tensor], betas: list[torch.Tensor | None],
                factors: list[float]) -> torch.Tensor:
    """lam * sum_l factors_l * group_penalty(weights_l, 0, betas_l) (eqs. 2, 4, 6; layers
    with factor 0 left out) as one autograd node (``GroupLasso``)."""
    return GroupLasso(lam, weights, betas, factors)(weights)


class GroupLasso:
    """``group_lasso`` for a fixed lam, betas, factors and weight shapes, with what does not
    change from step to step worked out once: each layer's sqrt(|p_l|) and its gradient's
    numerator lam f_l c_l beta_n (as ``_GroupLassoPenalty.backward`` computes it for an
    upstream gradient of 1, the one the host's loss gives).

    Where every weight is a leaf parameter the term carries its gradient as an in-place
    update (``benchsuite.toolkit.gradients``): one pass per layer, grad += theta * (numerator
    / ||theta_n||) (``addcmul_``), instead of a new gradient tensor that autograd adds to the
    loss's. The per-neuron factors are the backward's own; only the product and the sum may
    round once (a fused multiply-add) where autograd rounds twice."""

    def __init__(self, lam: float, weights: list[torch.Tensor], betas: list[torch.Tensor | None], factors: list[float]):
        self.lam = lam
        self.layers = [(f, math.sqrt(w.numel() // w.shape[1]), None if b is None else b.to(w.dtype))
                       for w, b, f in zip(weights, betas, factors)]
        upstream = torch.ones((), dtype=weights[0].dtype, device=weights[0].device)  # d(loss + term) / d term
        self.numerators = list(_numerators(upstream, lam, self.layers))
        self.neuron_shapes = [[1, -1] + [1] * (w.dim() - 2) for w in weights]

    def __call__(self, weights: list[torch.Tensor]) -> torch.Tensor:
        detached = [w.detach() for w in weights]
        norms = _all_neuron_norms(detached)
        term = _GroupLassoPenalty.apply(self.lam, self.layers, norms, *weights)

        def add(grads):
            for grad, weight, layer_norms, numerator, shape in zip(grads, detached, norms, self.numerators,
                                                                   self.neuron_shapes):
                grad.addcmul_(weight, torch.where(layer_norms > 0, numerator / layer_norms, 0.0).view(shape))

        return with_direct_gradient(term, weights, add)


def _all_neuron_norms(weights: list[torch.Tensor]) -> list[torch.Tensor]:
    """``_neuron_norms`` of every weight, the elementwise steps over all of them at once."""
    squares = torch._foreach_mul(weights, weights)
    sums = [square.sum(dim=[d for d in range(square.dim()) if d != 1]) for square in squares]
    torch._foreach_sqrt_(sums)
    return sums


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
    # Tables 2-6: neurons, sparsity, and the final model's training loss and metric
    report_metrics = ("neurons_l*", "sparsity_l*", "sparsity", "final_train_loss", "final_train_accuracy",
                      "final_train_mse")
    hyperparameters = (
        Hyperparameter("variant", str, "igl", choices=VARIANTS,
                       help="gl, sgl (eqs. 2-3) or partial igl, isgl (eqs. 6-7)"),
        Hyperparameter("lam", float, 1e-3, low=0.0, search=LogUniform(1e-6, 1e-1),
                       help="regularization factor (Table 1: 1e-3 toy/Boston, 1e-4 others)"),
        Hyperparameter("alpha", float, 0.1, low=0.0, high=1.0, help="weight of the L1 part in the sparse variants"),
        Hyperparameter("ratio_of_zeros", float, 0.125, low=0.0, high=1.0,
                       help="partial variants: fraction of each layer's neurons with beta_n = 0 (exempt)"),
        Hyperparameter("threshold", float, 1e-3, low=0.0, help="|w| below this is zero for sparsity and pruning"),
        Hyperparameter("prune", bool, True, help="prune dead neurons in finalize (sequential MLPs only)"),
        Hyperparameter("layer_factors", str, "",
                       help="eqs. 4-5: lambda_l = lam * factor_l per weight layer in forward order, "
                            "comma-separated, the last factor repeated for deeper layers (empty: all 1)"),
        Hyperparameter("retrain_epochs", int, 0, low=0,
                       help="sec. 5.2: epochs of further training of the pruned slim network "
                            "(task loss and optimizer, no penalty)"),
    )

    def __init__(self, **values):
        super().__init__(**values)
        self.betas: list[torch.Tensor | None] = []
        self.factors: list[float] = []
        self.final: dict[str, float] = {}
        self._walk = EpochCache(self._penalized)

    @hookimpl
    def configure(self, run):
        parse_factors(self.hp["layer_factors"])  # rejects a malformed list before anything is built
        if self.hp["retrain_epochs"] and not self.hp["prune"]:
            raise ValueError("partialreg: retrain_epochs retrains the pruned network; it needs prune=true "
                             "(set partialreg.prune=true, or partialreg.retrain_epochs=0)")
        if self.hp["prune"] and run.task.model.arch in HOST_CNN_ARCHS:
            raise ValueError(
                f"partialreg: pruning works only on sequential MLPs; task {run.task.name!r} has "
                f"model.arch {run.task.model.arch!r}. Set partialreg.prune=false to train it with the penalty "
                "and report sparsity without pruning."
            )

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
        if self.hp["prune"]:
            problem = prune_problem(model)
            if problem is not None:
                raise ValueError(
                    f"partialreg: pruning works only on sequential MLPs (Linear -> [BatchNorm1d] -> activation "
                    f"[-> Dropout] blocks, the host's mlp models); this model {problem}. "
                    "Set partialreg.prune=false to train it with the penalty and report sparsity without pruning."
                )
        modules = [m for _, m in weight_modules(model)]
        self.factors = layer_factors(self.hp["layer_factors"], len(modules))
        self.betas = []
        for module in modules:
            n = module.weight.shape[1]
            if not self.partial:
                self.betas.append(None)
                continue
            exempt = round(self.hp["ratio_of_zeros"] * n)
            beta = torch.ones(n, device=module.weight.device)
            chosen = torch.randperm(n, generator=run.rng, device=run.rng.device)[:exempt]
            beta[chosen.to(beta.device)] = 0.0
            self.betas.append(beta)
        self._walk = EpochCache(self._penalized)  # the betas and factors are new

    def _penalized(self, model):
        """The modules whose weights the penalty covers (factor not 0), their betas and
        factors, and the ``GroupLasso`` of gl and igl: looked up once per epoch."""
        chosen = [(m, beta, f) for (_, m), beta, f in zip(weight_modules(model), self.betas, self.factors) if f]
        if not chosen:
            return [], [], [], None
        modules, betas, factors = (list(column) for column in zip(*chosen))
        lasso = None if self.alpha else GroupLasso(self.hp["lam"], [m.weight for m in modules], betas, factors)
        return modules, betas, factors, lasso

    @hookimpl
    def penalty(self, model, run):
        modules, betas, factors, lasso = self._walk(model, run)
        if not modules:
            return None
        weights = [m.weight for m in modules]
        if lasso is not None:  # gl, igl: the whole penalty in one autograd node
            return lasso(weights)
        terms = [f * group_penalty(w, self.alpha, beta) for w, beta, f in zip(weights, betas, factors)]
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
        out.update(self.final)  # after finalize: the final model's training loss and metric
        return out

    @hookimpl
    def finalize(self, model, run):
        """Prune (sec. 4), optionally retrain the slim network (sec. 5.2), then score the
        final model on the training set (Tables 2-6 list its training loss/accuracy)."""
        final = model
        if self.hp["prune"]:
            final = prune_dead_neurons(model, self.hp["threshold"])
            if final is None:  # reparametrize checked the structure; this is a bug, not a user error
                raise RuntimeError("partialreg: the model could not be pruned")
            if self.hp["retrain_epochs"]:
                metric = run.task.eval.metric
                for split in ("val", "test"):
                    self.final[f"pruned_{split}_{metric}"] = run.evaluate(final, split)[metric]
                self.final["retrain_loss"] = retrain(final, run, self.hp["retrain_epochs"])
        scores = run.evaluate(final, "train")
        self.final.update({f"final_train_{k}": v for k, v in scores.items()})
        return final if final is not model else None


def parse_factors(text: str) -> list[float]:
    """``"0.5, 0.5, 2"`` -> [0.5, 0.5, 2.0]; empty -> []. Factors must be finite and >= 0."""
    if not text.strip():
        return []
    try:
        factors = [float(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"partialreg.layer_factors: {text!r} is not a comma-separated list of numbers") from None
    if any(not math.isfinite(f) or f < 0 for f in factors):
        raise ValueError(f"partialreg.layer_factors: {text!r} must hold finite numbers >= 0")
    return factors


def layer_factors(text: str, layers: int) -> list[float]:
    """lambda_l / lam for each of ``layers`` weight layers: the given factors, the last one
    repeated for deeper layers (so ``"0.1, 1"`` is the paper's "a relatively small one for the
    first few layers, and a larger weight for the remaining ones"); more factors than layers is
    an error."""
    factors = parse_factors(text) or [1.0]
    if len(factors) > layers:
        raise ValueError(f"partialreg.layer_factors gives {len(factors)} factors for {layers} weight layers")
    return factors + [factors[-1]] * (layers - len(factors))


def retrain(model: nn.Module, run, epochs: int) -> float:
    """Train ``model`` further for ``epochs`` epochs on the run's training batches with the
    task's optimizer (fresh state, the task's initial learning rate) and loss, no penalty.
    Returns the mean training loss of the last epoch."""
    from benchsuite.toolkit.training import build_optimizer, task_loss

    optimizer = build_optimizer(model.parameters(), run.task.train)
    was_training = model.training
    model.train()
    total = count = 0
    for _ in range(epochs):
        total = count = 0
        for inputs, targets in run.train_batches():
            loss = task_loss(run.task.train.loss, model(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, count = total + loss.item(), count + 1
    model.train(was_training)
    return total / max(count, 1)


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


PRUNABLE_TAILS = (nn.BatchNorm1d, nn.ReLU, nn.Tanh, nn.GELU, nn.Sigmoid, nn.Dropout, nn.Identity)


def prune_problem(model: nn.Module) -> str | None:
    """Why :func:`prune_dead_neurons` cannot prune ``model``, or None when it can."""
    if not isinstance(model, nn.Sequential):
        return f"is a {type(model).__name__}, not an nn.Sequential"
    if any(isinstance(m, nn.Sequential) for m in model):
        return "nests sequential blocks"
    blocks = _blocks(model)
    if not blocks:
        return "has no linear layer first" if any(isinstance(m, nn.Linear) for m in model) else "has no linear layer"
    odd = sorted({type(m).__name__ for _, tail in blocks for m in tail if not isinstance(m, PRUNABLE_TAILS)})
    if odd:
        return f"has {', '.join(odd)} between its linear layers"
    return None


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
    if prune_problem(model) is not None:
        return None
    blocks = _blocks(model)
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
