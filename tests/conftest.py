import os

import torch

# One thread per test worker: pytest-xdist runs one worker per core.
torch.set_num_threads(1)
os.environ.setdefault("BENCHSUITE_TEST", "1")
