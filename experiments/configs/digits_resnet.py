"""sklearn digits (8×8), small BatchNorm ResNet, SGD with momentum and coupled L2.

Every conv kernel feeds a BatchNorm, so it is scale-invariant: the run logs its effective
learning rate α/‖w‖² and the rotational-equilibrium predictions next to the measurements.

    python experiments/train.py --config=experiments/configs/digits_resnet.py --workdir=runs/digits
"""

from wd_jax.engine.config import base_config


def get_config(variant: str = "default"):
  c = base_config()
  c.dataset.name = "digits"
  c.model.name = "resnet"
  c.model.kwargs = {"widths": (16, 32), "blocks_per_stage": 1}
  c.optimizer.name = "sgd_l2"
  c.optimizer.learning_rate = 0.1
  c.optimizer.weight_decay = 5e-4  # coupled: λθ enters the momentum buffer, then × lr
  c.optimizer.kwargs = {"momentum": 0.9}
  c.optimizer.mask = "default"
  c.steps = 2000
  c.batch_size = 128
  c.eval_batch_size = 512
  if variant == "smoke":
    c.steps = 30
    c.log_every = c.diagnostics_every = c.eval_every = c.checkpoint_every = 15
  elif variant != "default":
    raise ValueError(f"variant must be 'default' or 'smoke', got {variant!r}.")
  return c
