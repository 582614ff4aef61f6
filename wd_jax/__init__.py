"""wd-jax: every weight-decay semantics as an Optax transform, and the tools to see it work."""

from wd_jax.masks import MaskTable, default_mask, describe_mask, regex_mask
from wd_jax.moments import (
  AdamL2State,
  StableWeightDecayState,
  TrackedAdamL2State,
  first_moment_split,
  l2_share,
  scale_by_adam_l2,
  scale_by_adam_stable,
)
from wd_jax.optimizers import OPTIMIZERS, adam_l2, adams, adamw, get_optimizer, sgd_l2, sgdw
from wd_jax.schedules import (
  early_weight_decay,
  late_weight_decay,
  normalized_weight_decay,
  switch_weight_decay,
)
from wd_jax.transforms import (
  COUPLINGS,
  AddL1State,
  AddL2State,
  DecoupledWeightDecayState,
  ProxL1State,
  add_l1,
  add_l2,
  decay_factor,
  decoupled_weight_decay,
  prox_l1,
)

__version__ = "0.1.0"

__all__ = [
  "COUPLINGS",
  "OPTIMIZERS",
  "AdamL2State",
  "AddL1State",
  "AddL2State",
  "DecoupledWeightDecayState",
  "MaskTable",
  "ProxL1State",
  "StableWeightDecayState",
  "TrackedAdamL2State",
  "adam_l2",
  "adams",
  "adamw",
  "add_l1",
  "add_l2",
  "decay_factor",
  "decoupled_weight_decay",
  "default_mask",
  "describe_mask",
  "early_weight_decay",
  "first_moment_split",
  "get_optimizer",
  "l2_share",
  "late_weight_decay",
  "normalized_weight_decay",
  "prox_l1",
  "regex_mask",
  "scale_by_adam_l2",
  "scale_by_adam_stable",
  "sgd_l2",
  "sgdw",
  "switch_weight_decay",
]
