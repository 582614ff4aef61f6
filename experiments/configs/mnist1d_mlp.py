"""MNIST-1D, MLP 40→100→100→10, AdamW. The paper reports 68% test accuracy for its MLP.

python experiments/train.py --config=experiments/configs/mnist1d_mlp.py --workdir=runs/mnist1d_mlp
"""

from wd_jax.engine.config import base_config


def get_config(variant: str = "default"):
  c = base_config()
  c.dataset.name = "mnist1d"
  c.model.name = "mlp"
  c.model.kwargs = {"widths": (100, 100)}
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.weight_decay = 1e-2
  c.steps = 6000
  if variant == "smoke":
    c.steps = 40
    c.log_every = c.diagnostics_every = c.eval_every = c.checkpoint_every = 20
  elif variant != "default":
    raise ValueError(f"variant must be 'default' or 'smoke', got {variant!r}.")
  return c
