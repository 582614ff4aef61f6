"""MNIST-1D, 1-D CNN, AdamW (decoupled, lr-coupled λ), warmup + cosine.

    python experiments/train.py --config=experiments/configs/mnist1d_cnn.py --workdir=runs/cnn

Measured: 94.7% test accuracy (the paper reports 94% for its CNN) in 6000 steps, ~25 s of
training on 2 CPU cores. The MLP config (mnist1d_mlp.py) reaches 62.2% (paper: 68%).
Variants (``--config=...mnist1d_cnn.py:VARIANT``): default (CPU minutes), ``smoke`` (seconds,
for the tests).
"""

from wd_jax.engine.config import base_config


def get_config(variant: str = "default"):
  c = base_config()
  c.dataset.name = "mnist1d"
  c.model.name = "cnn1d"
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 1e-2  # peak lr, warmup 5% then cosine to 0
  c.optimizer.weight_decay = 1e-2  # per step, multiplied by the scheduled lr (torch AdamW)
  c.steps = 6000
  c.batch_size = 100  # the MNIST-1D paper's batch size
  if variant == "smoke":
    c.steps = 60
    c.log_every = c.diagnostics_every = 20
    c.eval_every = c.checkpoint_every = 30
  elif variant != "default":
    raise ValueError(f"variant must be 'default' or 'smoke', got {variant!r}.")
  return c
