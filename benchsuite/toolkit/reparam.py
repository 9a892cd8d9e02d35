"""Building blocks for methods that reparameterize weights elementwise, w = psi(v).

* :class:`Elementwise` — a ``torch.nn.utils.parametrize`` parametrization that knows
  psi, its derivative and its inverse. ``right_inverse`` makes registration
  init-preserving: ``v = psi^-1(w0)``, so the network starts identical to the plain one.
  While training, psi and its derivative are computed in one pass (the derivative saved
  for the backward pass and for the modified step), unless the parametrization has
  learnable parameters of its own, which go through autograd as usual. Within a training
  step (from :class:`ModifiedAdaptiveHooks`' ``pre_step`` to its ``post_step``) psi of
  every weight is computed at the first weight the forward pass reads, as one autograd
  node, on the CPU into memory kept from step to step; under the modified step backward
  hands dL/dw to v unchanged and dpsi/dv is kept in the factored form the step folds into
  Adam's update (:class:`StepScale`, see :class:`ModifiedAdaptiveStep`).
* :class:`ModifiedAdaptiveStep` — the "modified adaptive optimizer" of Powerpropagation
  (Schwarz et al., 2021), used by Weight Compander: the optimizer's step is computed from
  dL/dw (not dL/dv) and then multiplied by dpsi/dv; with torch's Adam or AdamW inside the
  optimizer's own update (``benchsuite.toolkit.modified_adam``). Split over two hooks:
  ``modify_grad`` calls :meth:`~ModifiedAdaptiveStep.before_step`, ``post_step`` calls
  :meth:`~ModifiedAdaptiveStep.after_step`; :class:`ModifiedAdaptiveHooks` is a plugin
  mixin that implements both hooks.
* :func:`fold` — ``finalize`` helper: replace psi(v) by plain weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize

from benchsuite.plugins.hookspecs import hookimpl
from benchsuite.toolkit.modified_adam import FusedModifiedStep, StepScale
from benchsuite.toolkit.weights import weight_modules

# where dpsi/dv is below this, v's gradient and its modified step are 0 (v stays put)
MIN_DERIVATIVE = 1e-30


class Elementwise(nn.Module):
    """w = psi(v), applied elementwise. Subclasses define :meth:`psi`,
    :meth:`derivative` (dpsi/dv) and :meth:`inverse`, and may define
    :meth:`psi_and_derivative` to compute both in one pass and :meth:`psi_and_step_scale`
    to compute psi and dpsi/dv in the factored form the modified step uses."""

    # dpsi/dv at the v of the last training forward pass, as a StepScale, or None
    saved_scale: StepScale | None = None
    # True where dpsi/dv > 0 at every finite v (no floating-point underflow to 0 either):
    # the modified step then divides by it without a floor (one pass over the weights less)
    derivative_is_positive: bool = False
    # on for the span of a training step under the modified adaptive step: backward passes
    # dL/dw to v as it is (v.grad holds dL/dw), since the step uses dL/dw and would divide
    # dpsi/dv out again
    grad_as_dw: bool = False
    # whether the last training forward pass did so (False when it went through autograd)
    grad_is_dw: bool = False
    # for the span of a training step (set by ModifiedAdaptiveHooks' pre_step): psi of every
    # weight of the plugin, computed together at the first weight the forward pass reads
    batch: _StepBatch | None = None

    def psi(self, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def derivative(self, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def inverse(self, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def psi_and_derivative(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.psi(v), self.derivative(v)

    def psi_and_step_scale(self, v: torch.Tensor, out: torch.Tensor | None = None) -> tuple[torch.Tensor, StepScale]:
        """psi(v) and dpsi/dv as a :class:`StepScale`, for the forward pass of a training step
        under the modified step (whose backward needs no derivative): a subclass returns the
        factor that costs the fewest passes (e.g. 1 + x^2 rather than a / (b (1 + x^2))), and
        may write psi(v) into ``out`` (a tensor like v) instead of a new tensor."""
        w, derivative = self.psi_and_derivative(v)
        return w, StepScale(1.0, times=derivative)

    @classmethod
    def psi_many(cls, parametrizations: list[Elementwise], vs: list[torch.Tensor], step_scale: bool,
                 multi_tensor: bool | None = None) -> tuple[list[torch.Tensor], list]:
        """psi of each v under its parametrization (all of this class), and dpsi/dv: a
        :class:`StepScale` each where ``step_scale`` (:meth:`psi_and_step_scale`), else the
        derivative (:meth:`psi_and_derivative`). A subclass may compute them with
        multi-tensor (``torch._foreach_*``) ops where ``multi_tensor`` (None: on a GPU, where
        one kernel launch for all weights saves more than the CPU's cache gains from taking
        each weight's operations one after another)."""
        pairs = [p.psi_and_step_scale(v, out=p.step_buffer(v, "weight")) if step_scale else p.psi_and_derivative(v)
                 for p, v in zip(parametrizations, vs)]
        return [w for w, _ in pairs], [d for _, d in pairs]

    def step_buffer(self, v: torch.Tensor, name: str = "factor") -> torch.Tensor:
        """A tensor like v kept from step to step under ``name``: where a training step's
        psi(v) (``weight``) and the factor of its :class:`StepScale` (``factor``) are written
        on the CPU. Writing into memory the last step used costs less than into new memory
        (which the CPU must fetch or fault in first). The factor is read by the step before
        the next forward pass writes it again; the weight by the step's backward pass (a
        reference kept past the next training step sees that step's weight)."""
        buffers = self.__dict__.setdefault("_step_buffers", {})
        buffer = buffers.get(name)
        if buffer is None or buffer.shape != v.shape or buffer.device != v.device or buffer.dtype != v.dtype:
            buffer = buffers[name] = torch.empty_like(v, memory_format=torch.preserve_format)
        return buffer

    def set_step_state(self, **values) -> None:
        """Set the per-step flags and the saved derivative above. They are plain attributes,
        set several times a step on every weight: written straight into the instance's
        ``__dict__``, where ``nn.Module.__setattr__`` would put them too, without its checks
        for parameters, buffers and submodules of that name (none of them is one)."""
        self.__dict__.update(values)

    def has_learnable_parameters(self) -> bool:
        """Whether a parameter of this parametrization or of its submodules requires a
        gradient: asked once a step per weight, so a walk over the modules' own parameter
        dicts rather than through ``parameters()``' generators."""
        modules = [self]
        while modules:
            module = modules.pop()
            if any(p is not None and p.requires_grad for p in module._parameters.values()):
                return True
            modules.extend(module._modules.values())
        return False

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        # compiled (torch.compile), psi goes through autograd: the compiler fuses its
        # forward and backward itself, and a derivative stashed on the module from inside a
        # traced graph is not allowed; the modified step then computes the derivative
        if torch.is_grad_enabled() and v.requires_grad and not torch.compiler.is_compiling():
            w = self.batch.weight(self, v) if self.batch is not None else None
            if w is not None:
                return w
            if not self.has_learnable_parameters():
                return _PsiSavingDerivative.apply(v, self)
        self.set_step_state(saved_scale=None, grad_is_dw=False)
        return self.psi(v)

    def right_inverse(self, w: torch.Tensor) -> torch.Tensor:
        return self.inverse(w)


class _PsiSavingDerivative(torch.autograd.Function):
    """psi(v) with dpsi/dv from the same pass: backward multiplies by it (or, under the
    modified step, passes dL/dw on as it is, and dpsi/dv is kept only in the factored form
    the step folds into Adam's update), and the modified step reads it back instead of
    computing it again."""

    @staticmethod
    def forward(ctx, v, parametrization):
        ctx.grad_as_dw = parametrization.grad_as_dw
        if ctx.grad_as_dw:
            w, scale = parametrization.psi_and_step_scale(v.detach())
        else:
            w, derivative = parametrization.psi_and_derivative(v.detach())
            scale = StepScale(1.0, times=derivative)
            ctx.save_for_backward(derivative)
        parametrization.set_step_state(saved_scale=scale, grad_is_dw=ctx.grad_as_dw)
        return w

    @staticmethod
    def backward(ctx, grad_w):
        if ctx.grad_as_dw:
            return grad_w, None
        (derivative,) = ctx.saved_tensors
        return grad_w * derivative, None


class _StepBatch:
    """psi of the weights of one plugin's parametrizations (none with learnable parameters)
    for one training step: computed at the first of them the forward pass reads, by each
    class's :meth:`Elementwise.psi_many`, as one autograd node (one backward call for all).
    A weight whose v changed in place since is computed on its own."""

    def __init__(self, pairs: list[tuple[Elementwise, torch.Tensor]]):
        self.pairs = pairs
        self.position = {id(p): i for i, (p, _) in enumerate(pairs)}
        self.weights: tuple[torch.Tensor, ...] | None = None
        self.versions: list[int] = []

    def weight(self, parametrization: Elementwise, v: torch.Tensor) -> torch.Tensor | None:
        i = self.position.get(id(parametrization))
        if i is None or self.pairs[i][1] is not v:
            return None
        if self.weights is None:
            self.versions = [u._version for _, u in self.pairs]
            self.weights = _BatchedPsi.apply(self, *(u for _, u in self.pairs))
        elif v._version != self.versions[i]:
            return None
        return self.weights[i]


class _BatchedPsi(torch.autograd.Function):
    """:class:`_PsiSavingDerivative` for all the weights of a :class:`_StepBatch` at once."""

    @staticmethod
    def forward(ctx, batch, *vs):
        ctx.set_materialize_grads(False)  # an unused weight leaves its v without a gradient
        parametrizations = [p for p, _ in batch.pairs]
        ctx.grad_as_dw = all(p.grad_as_dw for p in parametrizations)
        ws, scales = [None] * len(vs), [None] * len(vs)
        for kind in dict.fromkeys(type(p) for p in parametrizations):
            chosen = [i for i, p in enumerate(parametrizations) if type(p) is kind]
            found = kind.psi_many([parametrizations[i] for i in chosen], [vs[i].detach() for i in chosen],
                                  step_scale=ctx.grad_as_dw)
            for i, w, scale in zip(chosen, *found):
                ws[i], scales[i] = w, scale
        if not ctx.grad_as_dw:
            ctx.save_for_backward(*scales)
            scales = [StepScale(1.0, times=d) for d in scales]
        for p, scale in zip(parametrizations, scales):
            p.set_step_state(saved_scale=scale, grad_is_dw=ctx.grad_as_dw)
        # aliases, each a new tensor over the same memory (and version counter): the kept
        # buffers themselves never carry a step's autograd history
        return tuple(w.detach() for w in ws)

    @staticmethod
    def backward(ctx, *grads):
        if ctx.grad_as_dw:
            return None, *grads
        present = [i for i, g in enumerate(grads) if g is not None]
        derivatives = ctx.saved_tensors
        products = torch._foreach_mul([grads[i] for i in present], [derivatives[i] for i in present])
        out = [None] * len(grads)
        for i, product in zip(present, products):
            out[i] = product
        return None, *out


def register(model: nn.Module, make: Callable[[str, nn.Module], Elementwise]) -> list[tuple[str, nn.Module]]:
    """Register ``make(name, module)`` (an :class:`Elementwise`) on every weight of
    ``benchsuite.toolkit.weights``; returns the ``(name, module)`` pairs reparameterized."""
    done = []
    for name, module in list(weight_modules(model)):
        parametrize.register_parametrization(module, "weight", make(name, module))
        done.append((name, module))
    return done


def elementwise_weights(model: nn.Module, kind: type = Elementwise):
    """``(name, module, parametrization, original)`` for every weight reparameterized
    with a parametrization of type ``kind``."""
    found = []
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            plist = module.parametrizations["weight"]
            for p in plist:
                if isinstance(p, kind):
                    found.append((name, module, p, plist.original))
                    break
    return found


class ModifiedAdaptiveStep:
    """Adaptive step computed from dL/dw, then scaled by dpsi/dv.

    ``before_step`` (between backward and ``optimizer.step()``) takes d_t = dpsi/dv(v_t)
    (the one the forward pass saved, when it did) and makes ``v.grad`` dL/dw; the optimizer
    then takes its step Delta from that gradient, and v_{t+1} = v_t + d_t * Delta. Where d_t
    is 0 (or below ``min_derivative``), v stays where it was. Given the optimizer, and that
    optimizer torch's Adam or AdamW, its own update takes d_t * Delta
    (``benchsuite.toolkit.modified_adam``: no pass over the weights beyond Adam's). Otherwise
    ``before_step`` copies v_t, the optimizer steps v to v_t + Delta, and ``after_step`` lerps
    back to v_t + d_t * Delta (two passes more, the same values up to rounding).

    ``v.grad`` is dL/dw from backward on where the forward pass saved d_t: the
    parametrization's ``grad_as_dw`` (on from :class:`ModifiedAdaptiveHooks`' ``pre_step``
    to its ``post_step``) makes backward pass dL/dw to v unchanged, not multiplied by d_t
    only to be divided by it here. Elsewhere (compiled or learnable parametrizations, or
    without those hooks) backward gives dL/dv, and ``before_step`` divides by d_t. A gradient
    that reaches v other than through psi (a penalty on v itself) is taken as part of dL/dw
    in the first case and divided by d_t in the second; the bundled methods put none there.
    """

    def __init__(self, min_derivative: float = MIN_DERIVATIVE):
        self.min_derivative = min_derivative
        self._saved: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        # v_t of each weight, kept in one buffer per weight from step to step
        self._before: dict[int, torch.Tensor] = {}
        self._fused = FusedModifiedStep()

    @torch.no_grad()
    def before_step(self, pairs, optimizer: torch.optim.Optimizer | None = None) -> None:
        """``pairs``: iterable of (parametrization, original v); ``optimizer``: the one whose
        next step takes Delta (None: the copy-and-lerp path, whatever the optimizer)."""
        self._saved = []
        fused = optimizer is not None and self._fused.can_take(optimizer)
        armed = []
        for parametrization, v in pairs:
            if v.grad is None:
                continue
            scale = getattr(parametrization, "saved_scale", None)
            if scale is None or scale.tensor.shape != v.shape:
                scale = StepScale(1.0, times=parametrization.derivative(v).detach())
            if not getattr(parametrization, "grad_is_dw", False):  # backward gave dL/dv
                d = scale.derivative()
                if getattr(parametrization, "derivative_is_positive", False):
                    v.grad.div_(d)
                else:
                    # where d is below min_derivative (0 for pp at v = 0) the gradient is divided by
                    # min_derivative instead: finite, and irrelevant, since the step is then
                    # scaled by d <= min_derivative and v does not move (exactly, where d = 0)
                    v.grad.div_(d.clamp_min(self.min_derivative))
                scale = StepScale(1.0, times=d)
            if fused and v.dtype in (torch.float32, torch.float64):
                armed.append((v, scale))
                continue
            before = self._before.get(id(v))
            if before is None or before.shape != v.shape or before.device != v.device or before.dtype != v.dtype:
                before = self._before[id(v)] = torch.empty_like(v, memory_format=torch.preserve_format)
            self._saved.append((v, before.copy_(v.detach()), scale.derivative()))
        if armed:
            self._fused.arm(optimizer, armed)

    @torch.no_grad()
    def after_step(self) -> None:
        self._fused.disarm()  # taken with the optimizer's step, or the step was skipped (AMP)
        if not self._saved:
            return
        vs, befores, derivatives = (list(column) for column in zip(*self._saved))
        if vs[0].device.type == "cpu":  # v_t + d_t * (v_t + Delta - v_t), written into v in one pass
            for v, before, d in zip(vs, befores, derivatives):
                torch.lerp(before, v.detach(), d, out=v.detach())
        else:  # the same values in two multi-tensor kernels: on a GPU launches cost more than a pass
            torch._foreach_lerp_(befores, vs, derivatives)
            torch._foreach_copy_(vs, befores)
        self._saved = []


def fold(model: nn.Module, kind: type = Elementwise) -> int:
    """Replace every ``kind`` parametrization by plain weights holding psi(v); returns
    how many were folded. The model then has its plain architecture and inference cost."""
    folded = 0
    for _, module, _, _ in elementwise_weights(model, kind):
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        folded += 1
    return folded


WEIGHT_PERCENTILES = (100, 93, 84, 69, 50, 31, 16, 7, 0)


def weight_percentiles(model: nn.Module) -> dict[str, float]:
    """Per layer, the max/93/84/69/50/31/16/7/min percentiles of the (effective) weights:
    the lines of a weight-distribution-per-epoch plot. Keys ``<layer>.p<q>``."""
    out = {}
    qs = torch.tensor([q / 100 for q in WEIGHT_PERCENTILES])
    for name, module in weight_modules(model):
        w = module.weight.detach().flatten().float()
        if w.numel() > 16_000_000:  # torch.quantile's input limit: subsample evenly
            w = w[:: w.numel() // 16_000_000 + 1]
        values = torch.quantile(w, qs.to(w.device)).tolist()
        for q, value in zip(WEIGHT_PERCENTILES, values):
            out[f"{name or 'weight'}.p{q}"] = value
    return out


ADAPTIVE_OPTIMIZERS = ("adam", "adamw")


def _still_registered(found: tuple) -> bool:
    """Whether ``(module, parametrization, v)`` still holds: the parametrization is still on
    the module's weight, over the same v (replacing a parametrization may keep the very
    Parameter object as the new one's v, so v alone does not tell)."""
    module, parametrization, v = found
    plists = module._modules.get("parametrizations")  # where torch registers them, read directly
    plist = plists._modules.get("weight") if isinstance(plists, nn.ModuleDict) else None
    if plist is None:
        return False
    return plist._parameters.get("original") is v and any(p is parametrization for p in plist._modules.values())


class ModifiedAdaptiveHooks:
    """Mixin for plugins that reparameterize with an :class:`Elementwise` subclass
    (``reparametrization``): the modified adaptive optimizer over ``pre_step`` (this step's
    backward is to leave dL/dw in v.grad; psi of all the weights in one autograd node),
    ``modify_grad`` (the optimizer's next step armed to take the modified step) and
    ``post_step`` (the step taken, backward gives dL/dv again and psi is computed weight by
    weight, so any other forward and backward pass, e.g. a retraining loop or a diagnostic,
    sees the plain chain rule). The plugin's ``configure`` calls :meth:`use_modified_step_if`;
    a plugin that defines its own ``pre_step`` calls this one's or runs on the slower path
    where backward multiplies by dpsi/dv and the step divides."""

    reparametrization: type = Elementwise
    use_modified_step: bool = False

    def use_modified_step_if(self, wanted: bool, run) -> None:
        """Turn the modified step on when ``wanted`` and the task's optimizer is adaptive
        (with SGD the plain chain rule already gives the step of eq. 2)."""
        self.use_modified_step = wanted and run.task.train.optimizer in ADAPTIVE_OPTIMIZERS
        self._modified_step = ModifiedAdaptiveStep()

    @hookimpl
    def pre_step(self, model, optimizer, run):
        pairs = self._pairs(model, check=True)
        batch = _StepBatch([(p, v) for p, v in pairs if v.requires_grad and not p.has_learnable_parameters()])
        for parametrization, _ in pairs:
            parametrization.set_step_state(grad_as_dw=self.use_modified_step, batch=batch)

    @hookimpl
    def modify_grad(self, model, optimizer, run):
        if self.use_modified_step:
            self._modified_step.before_step(self._pairs(model), optimizer)

    def _pairs(self, model, check: bool = False) -> list:
        """(parametrization, v) of every reparameterized weight: found once per model (a
        walk over every module); ``check`` (once a step, in ``pre_step``) verifies that each
        weight still has that parametrization and v (one lookup per weight), the step's
        later hooks trust that check."""
        cached = getattr(self, "_pairs_of", None)
        if cached is None or cached[0] is not model or check and not all(map(_still_registered, cached[1])):
            found = [(m, p, v) for _, m, p, v in elementwise_weights(model, self.reparametrization)]
            self._pairs_of = cached = (model, found)
        return [(p, v) for _, p, v in cached[1]]

    @hookimpl
    def post_step(self, model, optimizer, run):
        if self.use_modified_step:
            self._modified_step.after_step()
        for parametrization, _ in self._pairs(model):
            parametrization.set_step_state(grad_as_dw=False, batch=None)
