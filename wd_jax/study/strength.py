"""Decay strength in one unit: τ/T, the decay's timescale as a fraction of the run.

Decoupled decay with λ multiplied by c shrinks the weights by c·λ per step, a timescale
τ = 1/(c_peak λ) steps (Wang & Aitchison 2024). A λ means nothing across decay kinds (a
gradient term for L2, a shrink rate for AdamW) and across learning rates; τ/T, with T the run's
steps, does: τ/T = 4 barely decays within the run, τ/T = 1/16 decays sixteen times over. Studies
grid strength in τ/T and convert it here to each optimizer's own λ:

- decoupled decay (every recipe with a ``coupling``): `wd_jax.timescale_weight_decay`;
- Adam + coupled L2 (and its ablation arms) and Adam with stable weight decay: the λ whose
  initial shrink is 1/τ, `wd_jax.matched_weight_decay`, with the loss's mean squared gradient at
  initialisation measured on a few batches of the run's own data and model;
- SGD + coupled L2: λ·α per step, accumulated by the momentum buffer to λα/(1 − μ).

>>> from wd_jax.engine import config as config_lib
>>> c = config_lib.base_config()
>>> c.steps, c.optimizer.learning_rate = 1000, 1e-3
>>> [round(x, 3) for x in weight_decays(c, "adamw", (4.0, 1.0, 0.25))]
[0.25, 1.0, 4.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from wd_jax.timescale import matched_weight_decay, timescale_weight_decay

# The recipes whose λ is a decoupled shrink rate (λ × what `coupling` multiplies it by).
_DECOUPLED = ("adamw", "sgdw", "nadamw", "lion", "lamb", "adan", "muon", "adafactor")
_MATCHED = {"adam_l2": "adam_l2", "adams": "adams"}
OPTIMIZERS = (*_DECOUPLED, *_MATCHED, "sgd_l2")


def initial_grad_sq(
  config: ml_collections.ConfigDict, *, batches: int = 16
) -> tuple[Any, Any, Any]:
  """The model's initial parameters, the per-coordinate mean of g² over `batches` training
  batches there (the run's own batch size), and the run's decay mask.

  Args:
    config: a run config (`wd_jax.engine.config.base_config` schema); its seed picks the model.
    batches: how many batches to average g² over.

  Returns:
    ``(params, grad_sq, mask)``.
  """
  from wd_jax.engine import config as config_lib
  from wd_jax.engine import data as data_lib
  from wd_jax.engine import experiment

  exp = experiment.build(config)
  state = exp.init_state
  sampler = data_lib.make_batch_fn(exp.dataset, config.batch_size)

  @jax.jit
  def g2(params, key):
    x, y = sampler(key)

    def loss(p):
      logits, _ = exp.apply(exp.train_graphdef, p, state.rest, x)
      return experiment.loss_and_metrics(exp.dataset.task, logits, y)[0]

    return jax.tree.map(jnp.square, jax.grad(loss)(params))

  keys = jax.random.split(jax.random.key(config.seed + 1_000_003), batches)
  total = None
  for k in keys:
    sq = g2(state.params, k)
    total = sq if total is None else jax.tree.map(jnp.add, total, sq)
  grad_sq = jax.tree.map(lambda s: s / batches, total)
  return state.params, grad_sq, config_lib.mask_from_config(config)


def weight_decays(
  config: ml_collections.ConfigDict,
  optimizer: str,
  tau_over_T: Sequence[float],
  *,
  probe: tuple[Any, Any, Any] | None = None,
) -> list[float]:
  """Each τ/T as `optimizer`'s own λ, for the run `config` describes (its steps, peak lr, mask
  and optimizer kwargs).

  Args:
    config: the run config (steps T and the peak learning rate are read from it).
    optimizer: a recipe name in `OPTIMIZERS`.
    tau_over_T: strengths as the decay timescale over the run length.
    probe: `initial_grad_sq`'s result, for ``"adam_l2"``/``"adams"`` (computed when None).

  Returns:
    One λ per τ/T, in order.

  Raises:
    ValueError: an unknown optimizer, a non-positive τ/T, or a τ shorter than Adam+L2 can
      reach (see `wd_jax.matched_weight_decay`).
  """
  if optimizer not in OPTIMIZERS:
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}.")
  bad = [x for x in tau_over_T if not x > 0]
  if bad:
    raise ValueError(f"tau_over_T must be positive, got {bad}.")
  steps, lr = float(config.steps), float(config.optimizer.learning_rate)
  kwargs = dict(config.optimizer.kwargs)
  taus = [float(x) * steps for x in tau_over_T]
  if optimizer in _DECOUPLED:
    coupling = kwargs.get("coupling", "lr")
    return [timescale_weight_decay(t, coupling=coupling, learning_rate=lr) for t in taus]
  if optimizer == "sgd_l2":
    momentum = kwargs.get("momentum") or 0.0
    return [(1.0 - momentum) / (lr * t) for t in taus]
  params, grad_sq, mask = probe if probe is not None else initial_grad_sq(config)
  return [
    matched_weight_decay(
      t,
      optimizer=_MATCHED[optimizer],
      params=params,
      grad_sq=grad_sq,
      learning_rate=lr,
      mask=mask,
      eps=kwargs.get("eps", 1e-8),
    )
    for t in taus
  ]
