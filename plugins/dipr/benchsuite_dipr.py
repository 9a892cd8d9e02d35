"""Dynamic regularizer with an informative prior: a penalty on randomly projected weights,
the projection drawn from a prior built from the weights themselves. See README.md for the
reading of the paper this implements."""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from benchsuite import Hyperparameter, LogUniform, Plugin, hookimpl
from benchsuite.toolkit.gradients import with_direct_gradient
from benchsuite.toolkit.weights import regularized_weights


def prior(values: torch.Tensor, old: torch.Tensor | None, alpha: float, gen: torch.Generator,
          magnitude: bool = True) -> torch.Tensor:
    """(S, N) sampling distributions over the N axes: softmax(p * |w|) with p ~ U(0, 1)
    drawn per experiment and axis (eq. 4, Alg. 1 line 4), mixed with the same for the
    previous weights by momentum alpha (eq. 5); ``values`` is (S, N). ``magnitude=False``
    uses the signed values (logits, for the projected cross-entropy)."""
    score = values.abs() if magnitude else values
    old_score = old if old is None or not magnitude else old.abs()
    return prior_from_scores(score, old_score, alpha, gen)


def prior_from_scores(score: torch.Tensor, old_score: torch.Tensor | None, alpha: float,
                      gen: torch.Generator, draws: torch.Tensor | None = None) -> torch.Tensor:
    """``prior`` given the scores themselves (|w_t| and |w_{t-1}|, or logits), so a caller
    that keeps |w_t| for the next step takes no absolute value twice. ``draws``: the
    uniform numbers p (shape of ``score``) when the caller has them (``PriorDraws``);
    drawn from ``gen`` otherwise. They are overwritten."""
    p = draws if draws is not None else torch.rand(score.shape, generator=gen, device=gen.device).to(score.device)
    current = torch.softmax(p * score, dim=-1)
    if old_score is None or alpha == 1.0:
        return current
    return current.mul_(alpha).add_(torch.softmax(p.mul_(old_score), dim=-1), alpha=1 - alpha)


def projection_masks(probs: torch.Tensor, s_p: float, threshold: float, gen: torch.Generator) -> torch.Tensor:
    """0/1 masks I_s (S, N): axis j is sampled with probability min(1, s_p * N * P_sj),
    so a mask holds about s_p * N ones, chosen in proportion to the prior, and kept when
    its prior exceeds ``threshold`` times the uniform level 1/N (Alg. 1 line 5)."""
    n = probs.shape[-1]
    draw = torch.rand(probs.shape, generator=gen, device=gen.device).to(probs.device)
    sampled = draw < (s_p * n * probs).clamp(max=1.0)
    return (sampled & (n * probs > threshold)).to(probs.dtype)


def uniform_masks(shape, s_p: float, threshold: float, gen: torch.Generator, device) -> torch.Tensor:
    """The simplified prior of section 2.3: axis j sampled with probability s_p and kept
    when a U(0, 1) draw exceeds T, so E[I_sj] = s_p (1 - T)."""
    sampled = torch.rand(shape, generator=gen, device=gen.device).to(device) < s_p
    kept = torch.rand(shape, generator=gen, device=gen.device).to(device) > threshold
    return (sampled & kept).float()


def shared_counts(probs: torch.Tensor, experiments: int, s_p: float, threshold: float,
                  gen: torch.Generator, rows: int = 1) -> torch.Tensor:
    """How many of the S experiments sample each axis, from one prior ``probs`` (N,) shared
    by the experiments. With q_j the probability that one experiment samples and keeps axis
    j (``projection_masks``), the counts are a systematic sample of the expected counts
    S q_j, taken in each of ``rows`` equal consecutive stretches of the N axes (a weight
    matrix's rows): C_j = floor(Q_j + U) - floor(Q_{j-1} + U), Q_j = sum_{k <= j} S q_k
    over the axes of j's row up to j, one U ~ U(0, 1) per row. So C_j is floor(S q_j) or
    that plus one, E[C_j] = S q_j (the expected count of S independent masks, hence the
    same expected squared penalty sum_j C_j w_j^2), and each row's total count is within
    one of its expectation. Returns the counts in the shape of ``probs``."""
    n = probs.shape[-1]
    expected = (probs * (experiments * s_p * n)).clamp_(max=experiments)  # S * min(1, s_p N P_j)
    if threshold:
        expected = expected * (n * probs > threshold)
    offsets = torch.rand((rows, 1), generator=gen, device=gen.device).to(probs.device)
    # float32 running sums within a row: a row's sum stays small (S times its length at
    # most), so rounding Q_j to float32 moves an expected count by less than 1e-3 (tested on
    # rows of 25,088); over a whole layer of millions of weights Q_j reaches millions, where
    # float32 cannot tell counts apart
    floors = torch.cumsum(expected.view(rows, -1), dim=1).add_(offsets).floor_()  # floor(Q_j + U)
    # differences along the flat (contiguous) layout, then each row's first count, which
    # is floor(Q_1 + U) itself since floor(U) = 0 (no prepended column, no strided output)
    flat_floors = floors.view(-1)
    counts = torch.empty_like(flat_floors)
    counts[:1] = flat_floors[:1]
    torch.sub(flat_floors[1:], flat_floors[:-1], out=counts[1:])
    counts.view(rows, -1)[:, 0] = floors[:, 0]
    return counts.view(probs.shape)


def sample_rows(w: torch.Tensor) -> int:
    """The stretches ``shared_counts`` samples a weight tensor in: its rows (output units or
    channels), or the whole tensor when it has one dimension."""
    return w.shape[0] if w.dim() > 1 else 1


class PriorDraws:
    """The prior's uniform numbers for every weight of a step, from a pool redrawn every
    ``reuse`` steps. A step takes ``total`` consecutive numbers of a pool of 2 * total at a
    random offset k and rotates them by a random V: p_i = frac(u_{k+i} + V). Given k and V
    the u_{k+i} are distinct independent U(0, 1) numbers, and frac(u + V) of a U(0, 1) u
    is U(0, 1) whatever V, so within a step the p_i are independent U(0, 1), exactly as
    fresh draws; steps that share a pool are dependent through it. ``reuse = 1`` draws
    ``total`` fresh numbers every step (no offset, no rotation).

    k, V and each pool's generator seed come from Python streams seeded with the run's
    plugin stream's seed (``run.rng.initial_seed()``), the pool's index and the step, so
    no value is read back from the device and a resumed run (which restores ``step``)
    redraws the same pool."""

    def __init__(self, reuse: int):
        self.reuse = reuse
        self.step = 0
        self.pool: torch.Tensor | None = None
        self.pool_index: int | None = None

    def next(self, total: int, gen: torch.Generator, device, out: torch.Tensor | None = None) -> torch.Tensor:
        """This step's ``total`` numbers, written into ``out`` when given (the same numbers)."""
        step, self.step = self.step, self.step + 1
        seed = gen.initial_seed()
        size = total if self.reuse == 1 else 2 * total
        index = step // self.reuse
        if self.pool is None or self.pool_index != index or self.pool.numel() != size or self.pool.device != device:
            pool_seed = random.Random(f"dipr-prior-pool:{seed}:{index}").getrandbits(63)
            pool_gen = torch.Generator(device=gen.device).manual_seed(pool_seed)
            if self.reuse == 1 and out is not None and gen.device == out.device:
                return out.uniform_(0, 1, generator=pool_gen)  # what torch.rand draws, in place
            self.pool = torch.rand(size, generator=pool_gen, device=gen.device).to(device)
            self.pool_index = index
        if self.reuse == 1:
            fresh, self.pool = self.pool, None  # not used again: the caller may overwrite it
            return fresh if out is None else out.copy_(fresh)
        shift = random.Random(f"dipr-prior-shift:{seed}:{step}")
        offset, rotation = shift.randrange(total + 1), shift.random()
        return torch.add(self.pool[offset:offset + total], rotation, out=out).frac_()


class _WeightedSumOfSquares(torch.autograd.Function):
    """sum_j c_j w_j^2 for fixed coefficients c (no graph through c): forward keeps c w
    and takes its dot product with w; backward is 2 c w times the incoming gradient."""

    @staticmethod
    def forward(ctx, w, coefficients):
        flat = w.detach().reshape(-1)
        weighted = coefficients * flat
        ctx.save_for_backward(weighted)
        ctx.shape = w.shape
        return torch.dot(weighted, flat)

    @staticmethod
    def backward(ctx, grad):
        (weighted,) = ctx.saved_tensors
        return (weighted * (2 * grad)).reshape(ctx.shape), None


class LayerViews:
    """One flat vector of ``SharedBuffers`` seen layer by layer: ``parts`` (1-D),
    ``layers`` ((1, N_l), one softmax each), ``rows`` ((rows, N_l / rows), the stretches of
    the systematic sample) and ``shaped`` (each layer's weight shape); and the vector without
    its last entry (``head``) and without its first (``tail``). Made once per run."""

    def __init__(self, flat: torch.Tensor, sizes: list[int], rows: list[int], shapes: list[torch.Size]):
        self.flat = flat
        self.parts = list(flat.split(sizes))
        self.layers = [part.view(1, -1) for part in self.parts]
        self.rows = [part.view(r, -1) for part, r in zip(self.parts, rows)]
        self.shaped = [part.view(shape) for part, shape in zip(self.parts, shapes)]
        self.head, self.tail = flat[:-1], flat[1:]


class SharedBuffers:
    """The shared sampler's work vectors, each holding one entry per regularized weight,
    layer after layer, with their views (``LayerViews``): allocated once per run (again
    only if the weights' shapes change) and reused every step, so that each elementwise step
    of the prior and of the counts is one operation, in place, over every layer at once.
    ``scores`` are two vectors for |w_t| and |w_{t-1}|, which swap roles every step."""

    def __init__(self):
        self.key = None

    def fit(self, weights: list[torch.Tensor]) -> bool:
        """Size the vectors for ``weights``; False when they differ in dtype or device (the
        caller then works layer by layer)."""
        dtype, device = weights[0].dtype, weights[0].device
        if any(w.dtype != dtype or w.device != device for w in weights):
            return False
        key = (dtype, device, tuple(w.shape for w in weights))
        if key != self.key:
            self.key = key
            self.sizes = [w.numel() for w in weights]
            self.rows = [sample_rows(w) for w in weights]
            views = lambda: LayerViews(torch.empty(sum(self.sizes), dtype=dtype, device=device),  # noqa: E731
                                       self.sizes, self.rows, [w.shape for w in weights])
            self.scores = [views(), views()]
            self.draws, self.work, self.probs = views(), views(), views()
            # where each stretch of the systematic sample (each row of each layer) begins
            starts, offset = [], 0
            for size, rows in zip(self.sizes, self.rows):
                starts.append(torch.arange(offset, offset + size, size // rows))
                offset += size
            self.row_starts = torch.cat(starts).to(device)
        return True


def shared_prior(buffers: SharedBuffers, scores: LayerViews, old_scores: LayerViews | None, alpha: float
                 ) -> LayerViews:
    """``prior_from_scores`` of every layer at once, over the flat vectors of ``buffers``:
    |w_t| in ``scores``, |w_{t-1}| in ``old_scores``, the uniform numbers in
    ``buffers.draws`` (overwritten). The same operations on the same numbers, so the same
    probabilities bit for bit; each layer's softmax over its own stretch. Returns
    ``buffers.probs``."""
    probs, work, draws = buffers.probs, buffers.work, buffers.draws
    torch.mul(draws.flat, scores.flat, out=work.flat)
    for values, out in zip(work.layers, probs.layers):
        torch._softmax(values, -1, False, out=out)
    if old_scores is None or alpha == 1.0:
        return probs
    probs.flat.mul_(alpha)
    draws.flat.mul_(old_scores.flat)
    for values, out in zip(draws.layers, work.layers):
        torch._softmax(values, -1, False, out=out)
    probs.flat.add_(work.flat, alpha=1 - alpha)
    return probs


def shared_counts_all(buffers: SharedBuffers, experiments: int, s_p: float, threshold: float,
                      gen: torch.Generator) -> LayerViews:
    """``shared_counts`` of every layer at once, from the probabilities in ``buffers.probs``
    (overwritten): each layer's rows sampled as there, their offsets drawn from ``gen``
    layer after layer as the per-layer calls draw them, so the same counts bit for bit.
    Returns the counts, in ``buffers.draws``."""
    probs, floors, counts = buffers.probs, buffers.work, buffers.draws
    kept = [n * p > threshold for n, p in zip(buffers.sizes, probs.parts)] if threshold else None
    torch._foreach_mul_(probs.parts, [experiments * s_p * n for n in buffers.sizes])
    probs.flat.clamp_(max=experiments)  # the expected counts S * min(1, s_p N P_j)
    if kept is not None:
        for part, keep in zip(probs.parts, kept):
            part.mul_(keep)
    for expected, out, rows in zip(probs.rows, floors.rows, buffers.rows):
        # one draw per layer, in layer order: on a CUDA generator one draw of every layer's
        # offsets at once would give other numbers
        offsets = torch.rand((rows, 1), generator=gen, device=gen.device).to(out.device)
        torch.cumsum(expected, dim=1, out=out).add_(offsets)
    floors.flat.floor_()
    torch.sub(floors.tail, floors.head, out=counts.tail)
    counts.flat.index_copy_(0, buffers.row_starts, floors.flat.index_select(0, buffers.row_starts))
    return counts


class _CountedSquares(torch.autograd.Function):
    """sum_l sum_j c_j w_j^2 over every layer, for fixed counts c (no graph through c):
    per layer c w written into ``weighted`` and its dot product with w, summed; backward 2
    c w times the incoming gradient, per layer (what ``_WeightedSumOfSquares`` computes
    layer by layer)."""

    @staticmethod
    def forward(ctx, counts, weighted, *weights):
        values = []
        for c, out, w in zip(counts, weighted, weights):
            flat = w.detach().reshape(-1)
            values.append(torch.dot(torch.mul(c, flat, out=out), flat))
        ctx.save_for_backward(*weighted)
        ctx.shapes = [w.shape for w in weights]
        return torch.stack(values).sum()

    @staticmethod
    def backward(ctx, grad):
        return None, None, *[(c * (2 * grad)).reshape(shape) for c, shape in zip(ctx.saved_tensors, ctx.shapes)]


def projected_penalty(w: torch.Tensor, masks: torch.Tensor, form: str) -> torch.Tensor:
    """sum_s ||w * I_s||^2 (Algorithm 1) or sum_s ||w * I_s||_2 (eq. 6)."""
    squared = (masks * w.reshape(1, -1).square()).sum(dim=1)
    return squared.sum() if form == "squared" else squared.clamp_min(1e-30).sqrt().sum()


class DynamicInformativePrior(Plugin):
    """Sampled-projection penalty with an informative prior, and the projected cross-entropy."""

    name = "dipr"
    citation = "A. Kori, M. Sharma. Dynamic regularizer with an informative prior."
    report_metrics = ("density", "mean_abs_w")
    hyperparameters = (
        Hyperparameter("lam", float, 1e-4, low=0.0, search=LogUniform(1e-4, 100.0),
                       help="penalty factor lambda (0: no penalty)"),
        Hyperparameter("experiments", int, 8, low=1, help="S, sampling experiments per step"),
        Hyperparameter("s_p", float, 0.01, low=0.0, high=1.0, low_inclusive=False,
                       help="sampling sparsity: share of axes in a projection"),
        Hyperparameter("threshold", float, 0.0, low=0.0, help="T, relative to the uniform level 1/N"),
        Hyperparameter("alpha", float, 0.9, low=0.0, high=1.0, help="momentum of the prior (eq. 5)"),
        Hyperparameter("form", str, "squared", choices=("squared", "rooted"),
                       help="squared norms (Algorithm 1) or norms (eq. 6)"),
        Hyperparameter("projected_ce", bool, False, help="replace the task's cross-entropy by the projected one"),
        Hyperparameter("ce_s_p", float, 0.5, low=0.0, high=1.0, low_inclusive=False,
                       help="projected cross-entropy: share of classes in a projection"),
        Hyperparameter("density_tol", float, 1e-3, low=0.0, help="|w| above this counts as dense"),
        Hyperparameter("sampler", str, "shared", choices=("shared", "independent"),
                       help="shared: one prior draw per step for the S experiments and, squared form, "
                            "counts of the same expectation (O(N)); independent: S draws (Algorithm 1, "
                            "O(S*N))"),
        Hyperparameter("prior_reuse", int, 50, low=1,
                       help="shared sampler: steps one pool of uniform prior draws serves (each step takes "
                            "independent U(0, 1) numbers from it at a random offset and rotation); 1 draws "
                            "fresh numbers every step"),
    )

    def __init__(self, **values):
        super().__init__(**values)
        # eq. 5's |w_{t-1}|: the magnitudes of the weights the previous step's penalty was
        # computed at, and those of this step's penalty, which become |w_{t-1}| once the
        # step is taken (kept as magnitudes: the prior needs nothing else of them)
        self.old_scores: list[torch.Tensor] | None = None
        self.current_scores: list[torch.Tensor] | None = None
        self.prior_draws = PriorDraws(self.hp["prior_reuse"])
        self.buffers = SharedBuffers()
        # the vector of ``buffers.scores`` behind ``current_scores`` and ``old_scores`` when
        # they are its (1, N_l) views: (the list, its LayerViews)
        self._current_flat: tuple[list, LayerViews] | None = None
        self._old_flat: tuple[list, LayerViews] | None = None

    def state_dict(self) -> dict:
        """What a resumed run needs: the previous scores and the step count of the prior's
        draws (the pool itself is redrawn from its seed, not stored). Copies: the scores may
        be views of vectors the next steps overwrite."""
        copy = lambda scores: None if scores is None else [s.clone() for s in scores]  # noqa: E731
        return {"old_scores": copy(self.old_scores), "current_scores": copy(self.current_scores),
                "prior_step": self.prior_draws.step}

    def load_state_dict(self, state: dict) -> None:
        self.old_scores, self.current_scores = state["old_scores"], state["current_scores"]
        self._current_flat = self._old_flat = None
        self.prior_draws = PriorDraws(self.hp["prior_reuse"])
        self.prior_draws.step = state["prior_step"]

    @hookimpl
    def configure(self, run):
        if self.hp["projected_ce"] and run.task.train.loss != "cross_entropy":
            raise ValueError(f"dipr: the projected cross-entropy needs a classification task; task "
                             f"{run.task.name!r} has loss {run.task.train.loss!r}. Set dipr.projected_ce=false "
                             "or choose a task with loss = \"cross_entropy\".")

    @hookimpl
    def penalty(self, model, run):
        if not self.hp["lam"]:
            return None
        weights = regularized_weights(model)
        if not weights:
            return None
        if self.hp["sampler"] == "shared" and self.buffers.fit(weights):
            return self._shared_penalty(weights, run)
        return self._layer_by_layer_penalty(weights, run)

    def _shared_penalty(self, weights, run):
        """The shared sampler, every layer at once (``SharedBuffers``): the penalties of
        ``_layer_by_layer_penalty`` bit for bit, with its random draws in its order. The
        squared form's term carries its gradient 2 lam c w as an in-place update
        (``benchsuite.toolkit.gradients``), one fused multiply-add per weight: autograd's
        gradient to float rounding."""
        buffers, s, lam = self.buffers, self.hp["experiments"], self.hp["lam"]
        old = self._flat_old_scores()
        scores = buffers.scores[1] if old is buffers.scores[0] else buffers.scores[0]
        for w, part in zip(weights, scores.parts):
            torch.abs(w.detach().reshape(-1), out=part)
        self.prior_draws.next(scores.flat.numel(), run.rng, scores.flat.device, out=buffers.draws.flat)
        probs = shared_prior(buffers, scores, old, self.hp["alpha"])
        if self.hp["alpha"] < 1.0:
            self.current_scores = scores.layers
            self._current_flat = (scores.layers, scores)
        if self.hp["form"] != "squared":  # S masks per layer from the shared prior
            terms = [projected_penalty(w, projection_masks(p.expand(s, -1), self.hp["s_p"], self.hp["threshold"],
                                                            run.rng), self.hp["form"])
                     for w, p in zip(weights, probs.layers)]
            return lam * torch.stack(terms).sum()
        counts = shared_counts_all(buffers, s, self.hp["s_p"], self.hp["threshold"], run.rng)
        weighted = buffers.probs  # c w per layer, over the expected counts, no longer needed
        term = lam * _CountedSquares.apply(counts.parts, weighted.parts, *weights)

        def add(grads):  # grad += 2 lam c w in one pass (one rounding where autograd's product and sum make two)
            torch._foreach_add_(grads, weighted.shaped, alpha=2 * lam)

        return with_direct_gradient(term, weights, add)

    def _flat_old_scores(self) -> LayerViews | None:
        """|w_{t-1}| in one of ``buffers.scores``: the one behind ``old_scores`` when they
        are its views, else (restored from a checkpoint, set by hand, or left by the
        layer-by-layer path) copied into one."""
        if self.old_scores is None:
            return None
        if self._old_flat is not None and self._old_flat[0] is self.old_scores:
            return self._old_flat[1]
        flat = self.buffers.scores[1]
        torch.cat([o.reshape(-1) for o in self.old_scores], out=flat.flat)
        self._old_flat = (self.old_scores, flat)
        return flat

    def _layer_by_layer_penalty(self, weights, run):
        """Algorithm 1 as written (``sampler=independent``), and the shared sampler for
        weights of mixed dtypes or devices."""
        terms = []
        s = self.hp["experiments"]
        shared = self.hp["sampler"] == "shared"
        if shared:  # one prior draw per weight, shared by the experiments
            draws = self.prior_draws.next(sum(w.numel() for w in weights), run.rng, weights[0].device)
        start = 0
        scores = []
        for i, w in enumerate(weights):
            score = w.detach().abs().reshape(1, -1)
            scores.append(score)
            if shared:
                old = self.old_scores[i] if self.old_scores is not None else None
                probs = prior_from_scores(score, old, self.hp["alpha"], run.rng,
                                          draws=draws[start:start + w.numel()].view(1, -1))
                start += w.numel()
            else:
                old = self.old_scores[i].expand(s, -1) if self.old_scores is not None else None
                probs = prior_from_scores(score.expand(s, -1), old, self.hp["alpha"], run.rng)
            if shared and self.hp["form"] == "squared":
                counts = shared_counts(probs[0], s, self.hp["s_p"], self.hp["threshold"], run.rng, sample_rows(w))
                terms.append(_WeightedSumOfSquares.apply(w, counts))
                continue
            masks = projection_masks(probs.expand(s, -1), self.hp["s_p"], self.hp["threshold"], run.rng)
            terms.append(projected_penalty(w, masks, self.hp["form"]))
        if self.hp["alpha"] < 1.0:
            self.current_scores = scores
            self._current_flat = None
        return self.hp["lam"] * torch.stack(terms).sum()

    @hookimpl
    def post_step(self, model, optimizer, run):
        """The weights this step's penalty saw are the next step's w_{t-1} (eq. 5). Not the
        weights after optimizer.step(): those are the next step's w_t, and mixing P(w_t)
        with itself would make the momentum a no-op."""
        if self.current_scores is not None:
            self.old_scores, self.current_scores = self.current_scores, None
            self._old_flat, self._current_flat = self._current_flat, None

    @hookimpl
    def loss(self, outputs, targets, run):
        if not self.hp["projected_ce"]:
            return None
        return projected_cross_entropy(outputs, targets, self.hp["experiments"], self.hp["ce_s_p"],
                                       self.hp["threshold"], run.rng)

    @hookimpl
    def metrics(self, model, run):
        weights = [w.detach() for w in regularized_weights(model)]
        total = sum(w.numel() for w in weights)
        return {
            "density": sum((w.abs() > self.hp["density_tol"]).sum().item() for w in weights) / total,
            "mean_abs_w": sum(w.abs().sum().item() for w in weights) / total,
        }


def projected_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, experiments: int, s_p: float,
                            threshold: float, gen: torch.Generator) -> torch.Tensor:
    """Section 2.5.2: the final layer's activations take the place of the weights in the
    prior; in each experiment the cross-entropy is taken over the projected classes only
    (the target class always kept, so the loss is defined), averaged over experiments."""
    batch, classes = logits.shape
    values = logits.detach().unsqueeze(0).expand(experiments, batch, classes)
    probs = prior(values, None, 1.0, gen, magnitude=False)
    masks = projection_masks(probs, s_p, threshold, gen).bool()
    masks |= F.one_hot(targets, classes).bool().unsqueeze(0)
    masked = logits.unsqueeze(0).masked_fill(~masks, float("-inf"))
    losses = F.cross_entropy(masked.reshape(-1, classes), targets.repeat(experiments), reduction="none")
    return losses.mean()
