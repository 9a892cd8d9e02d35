"""The GPU path's logic, checked on the CPU: autocast precisions, the fp16 gradient scaler
(hooks see unscaled gradients), channels-last inputs, torch.compile wiring, and in-memory
image batches (augmentation, normalization) that run on the data's device."""


import pytest
import torch
from torch import nn

from benchsuite import hookimpl
from benchsuite.execution import engine, evaluation
from benchsuite.plugins import Plugin
from benchsuite.tasks import components, datasets, models
from benchsuite.tasks.spec import DataSpec, EvalSpec, ModelSpec, TaskSpec, TrainSpec
from benchsuite.testing import available_with, method_of, tiny_task_spec, training_batches

IMAGES = "benchsuite-test-images"


def _images(spec: DataSpec) -> datasets.TaskData:
    """Class-dependent uint8 images, 3 x 8 x 8."""
    gen = torch.Generator().manual_seed(0)

    def draw(n):
        y = torch.arange(n) % 3
        x = (y[:, None, None, None] * 60 + torch.randint(0, 60, (n, 3, 8, 8), generator=gen)).to(torch.uint8)
        return datasets.ImageSplit(x, y, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))

    return datasets.TaskData(draw(96), draw(48), draw(48))


components.register(components.DataSource(IMAGES, _images))


class SeesMemoryFormat(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, spec.num_classes)
        self.channels_last_inputs = 0

    def forward(self, x):
        self.channels_last_inputs += x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.fixture
def image_task():
    architecture = components.Architecture("test-conv", SeesMemoryFormat, "image")
    components.register(architecture)
    yield TaskSpec(name="images", data=DataSpec(source=IMAGES, augment="crop-flip"),
                   model=ModelSpec(arch="test-conv", num_classes=3),
                   train=TrainSpec(epochs=2, batch_size=32, optimizer="sgd", lr=0.1, momentum=0.9),
                   eval=EvalSpec(metric="accuracy"))
    components.unregister(architecture)


class GradientNorm(Plugin):
    """Records the gradient norm modify_grad sees at each step."""

    name = "gradnorm"
    seen: list[float] = []

    @hookimpl
    def modify_grad(self, model, optimizer, run):
        GradientNorm.seen.append(float(torch.cat([p.grad.flatten() for p in model.parameters()]).norm()))


def _first_step_grad_norm(precision: str) -> float:
    GradientNorm.seen = []
    available = available_with(GradientNorm)
    task = tiny_task_spec(epochs=1, precision=precision)
    spec = engine.make_run_spec(task, method_of("gradnorm", available=available), seed=0, available=available)
    record = engine.execute(spec, available=available)
    assert record["status"] == "finished", record.get("traceback")
    return GradientNorm.seen[0]


def test_fp16_hooks_see_unscaled_gradients():
    fp32, fp16 = _first_step_grad_norm("fp32"), _first_step_grad_norm("fp16")
    assert fp16 == pytest.approx(fp32, rel=0.05)  # a scaled gradient would be ~65536x larger


def test_bf16_run_finishes_and_differs_from_fp32_only_slightly():
    fp32 = engine.execute(engine.make_run_spec(tiny_task_spec(epochs=2), method_of("l2"), seed=0))
    bf16 = engine.execute(engine.make_run_spec(tiny_task_spec(epochs=2, precision="bf16"), method_of("l2"), seed=0))
    assert bf16["status"] == "finished" and bf16["task_spec"]["train"]["precision"] == "bf16"
    assert bf16["curves"][0]["train_loss"] != fp32["curves"][0]["train_loss"]  # autocast did run
    assert bf16["curves"][0]["train_loss"] == pytest.approx(fp32["curves"][0]["train_loss"], rel=0.05)
    assert "precision" not in fp32["task_spec"]["train"]  # the default stays out of identities


def test_channels_last_reaches_the_model(image_task):
    spec = engine.make_run_spec(image_task, method_of("none"), seed=0)
    record = engine.execute(spec, options=engine.ExecutionOptions(channels_last=True))
    assert record["status"] == "finished", record.get("traceback")
    plain = engine.execute(spec)
    assert plain["status"] == "finished"
    model = models.build_model(image_task.model)
    with torch.no_grad():
        model(torch.zeros(2, 3, 8, 8).contiguous(memory_format=torch.channels_last))
    assert model.channels_last_inputs == 1
    for a, b in zip(record["curves"], plain["curves"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)


def test_compile_wraps_the_forward_pass(image_task, monkeypatch):
    compiled = []

    def fake_compile(model):
        compiled.append(model)
        return model

    monkeypatch.setattr(engine.torch, "compile", fake_compile)
    record = engine.execute(engine.make_run_spec(image_task, method_of("l2"), seed=0),
                            options=engine.ExecutionOptions(compile=True))
    assert record["status"] == "finished" and len(compiled) == 1


def test_image_batches_are_augmented_normalized_and_reproducible(image_task):
    data = datasets.load(image_task.data)
    order = torch.arange(len(data.train))
    gen_a, gen_b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    first = [x for x, _ in data.train.batches(order, 32, "cpu", "crop-flip", gen_a)]
    again = [x for x, _ in data.train.batches(order, 32, "cpu", "crop-flip", gen_b)]
    plain = [x for x, _ in data.train.batches(order, 32, "cpu")]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, plain))
    x = plain[0]
    expected = (data.train.x[:32].float() / 255 - 0.5) / 0.25
    assert torch.allclose(x, expected)


def test_augment_batch_is_a_crop_of_the_padded_image_or_its_mirror():
    x = torch.rand(16, 3, 8, 8)
    out = datasets.augment_batch(x, torch.Generator().manual_seed(0), crop=True, pad=2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(16):
        windows = [padded[i, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in windows)


@pytest.mark.parametrize("crop", [True, False])
def test_augment_batch_draws_what_stored_runs_drew(crop):
    """Runs stored before the draws moved to the device in one copy reproduce: the same
    generator gives the same crops and flips (the draws of 0.1.0 written out here)."""
    x = torch.rand(32, 3, 8, 8)
    generator = torch.Generator().manual_seed(3)
    flips = torch.rand(32, generator=generator) < 0.5
    dy = torch.randint(0, 5, (32,), generator=generator) if crop else torch.zeros(32, dtype=torch.long)
    dx = torch.randint(0, 5, (32,), generator=generator) if crop else torch.zeros(32, dtype=torch.long)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2)) if crop else x
    expected = torch.stack([padded[i, :, dy[i]:dy[i] + 8, dx[i]:dx[i] + 8] for i in range(32)])
    expected = torch.where(flips[:, None, None, None], expected.flip(-1), expected)
    out = datasets.augment_batch(x, torch.Generator().manual_seed(3), crop=crop, pad=2)
    assert torch.equal(out, expected)


def test_channel_values_are_made_once_per_device():
    first = datasets.channel_values((0.5, 0.25), torch.device("cpu"))
    assert first.shape == (1, 2, 1, 1) and first.flatten().tolist() == [0.5, 0.25]
    assert datasets.channel_values((0.5, 0.25), torch.device("cpu")) is first


def test_amp_dtypes_cover_the_task_precisions():
    from benchsuite.tasks.spec import PRECISIONS

    assert set(evaluation.AMP_DTYPES) | {"fp32"} == set(PRECISIONS)


def _installed_methods():
    from benchsuite.plugins import discover

    return sorted(name for name in discover() if name != "none")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("plugin", _installed_methods())
def test_every_plugin_trains_under_autocast(plugin, precision):
    task = tiny_task_spec(epochs=1, precision=precision)
    record = engine.execute(engine.make_run_spec(task, method_of(plugin), seed=0))
    assert record["status"] == "finished", record.get("traceback")


@pytest.mark.parametrize("method", ["none", "l2", "wc", "pp"])
def test_compiled_reparameterized_training_matches_eager(method):
    """Under torch.compile psi goes through autograd and the modified step computes dpsi/dv
    itself (a derivative stashed from inside a compiled graph is refused); the weights after
    five steps must equal the eager run's to float rounding. (SGD: Adam would turn the
    rounding noise of the biases before batch norm, whose true gradient is 0, into
    lr-sized steps.)"""
    task = tiny_task_spec(epochs=1, optimizer="sgd", lr=0.1, momentum=0.9)
    spec = engine.make_run_spec(task, method_of(method), seed=0)
    weights = {}
    for compiled in (False, True):
        training = engine.setup(spec, torch.device("cpu"), options=engine.ExecutionOptions(compile=compiled))
        sums = engine.EpochSums.zeros(training.run.device)
        for inputs, targets in training_batches(training, 5):
            engine.train_step(training, inputs, targets, sums)
        weights[compiled] = {k: v.detach().clone() for k, v in training.model.state_dict().items()}
    assert weights[True].keys() == weights[False].keys()
    for name, eager in weights[False].items():
        if eager.is_floating_point():
            torch.testing.assert_close(weights[True][name], eager, rtol=1e-5, atol=1e-6)
