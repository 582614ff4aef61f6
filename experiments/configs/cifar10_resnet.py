"""CIFAR-10 (binary files you already have), BatchNorm ResNet, SGDW with schedule-coupled decay.

    python experiments/train.py --config=experiments/configs/cifar10_resnet.py \
        --config.dataset.kwargs.data_dir=/path/to/cifar-10-batches-bin --workdir=runs/cifar
"""

from wd_jax.engine.config import base_config


def get_config(variant: str = "default"):
  c = base_config()
  c.dataset.name = "cifar10"
  c.dataset.kwargs = {"data_dir": "cifar-10-batches-bin"}
  c.model.name = "resnet"
  c.model.kwargs = {"widths": (32, 64, 128), "blocks_per_stage": 2}
  c.optimizer.name = "sgdw"
  c.optimizer.learning_rate = 0.1
  c.optimizer.weight_decay = 5e-4  # × lr_t/lr_peak (Loshchilov & Hutter), not × lr
  c.optimizer.kwargs = {"momentum": 0.9, "coupling": "schedule"}
  c.steps = 20_000
  c.batch_size = 128
  if variant != "default":
    raise ValueError(f"variant must be 'default', got {variant!r}.")
  return c
