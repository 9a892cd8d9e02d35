"""No host-device synchronization inside a training step, for every installed plugin.

A value read back to Python (``.item()``, ``float(t)``, ``bool(t)``, ``.tolist()``, ...)
stalls a GPU until every queued kernel has run. Diagnostics accumulate on the device
and are read once per epoch instead. On CPU there is no device to wait for, so the
test counts the Python-level reads themselves, made from the engine's or a plugin's
code (torch's own optimizers are not counted), in steps 5-11 of a run.
"""

import sys
from pathlib import Path

import pytest
import torch

from benchsuite.execution import engine
from benchsuite.plugins import discover
from benchsuite.testing import build_training, training_batches

READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy")
TORCH_DIR = str(Path(torch.__file__).resolve().parent)


def _count_reads(monkeypatch, reads: list[str]) -> None:
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if not str(Path(caller).resolve()).startswith(TORCH_DIR):
                frame = sys._getframe(1)
                reads.append(f"{_name} at {caller}:{frame.f_lineno}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)


@pytest.mark.parametrize("plugin", sorted(discover()))
def test_no_value_read_back_in_a_training_step(plugin, monkeypatch):
    training = build_training(plugin)
    sums = engine.EpochSums.zeros(training.run.device)
    reads: list[str] = []
    for inputs, targets in training_batches(training, 11):
        if training.run.step == 4:  # steps 5-11: past any first-step setup
            _count_reads(monkeypatch, reads)
        engine.train_step(training, inputs, targets, sums)
    monkeypatch.undo()
    assert training.run.step == 11
    assert not reads, f"{plugin}: {len(reads)} reads in steps 5-11, e.g. {sorted(set(reads))[:5]}"


def test_the_counter_sees_a_read(monkeypatch):
    reads: list[str] = []
    _count_reads(monkeypatch, reads)
    total = torch.ones(3).sum()
    assert float(total) == 3.0 and total.item() == 3.0 and bool(total)
    monkeypatch.undo()
    assert len(reads) == 3
