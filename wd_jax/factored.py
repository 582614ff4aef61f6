"""Adafactor with every decay choice of `with_weight_decay`: optax's rule by default (λ multiplied
by nothing), torch's (λ multiplied by the relative step size) behind ``convention="torch"``;
parity-tested against both (tests/test_parity_optax.py, tests/test_parity_torch.py).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import optax

from wd_jax import validation
from wd_jax._recipe import STATIC_HINT, ScalarOrSchedule, decayed, renamed, second_argument
from wd_jax.masks import Mask


def _decay_rate_pow(step: Any, exponent: Any) -> Any:
  """β2_t = 1 − t^(−exponent), t = step + 1: optax's rule in the default float dtype.

  optax evaluates it in float32 even under x64 (a ~1e-7 relative error in v that torch's
  float64 Adafactor does not have).
  """
  return 1.0 - jnp.asarray(step + 1, jnp.result_type(float)) ** (-exponent)


def _relative_step(learning_rate: Any) -> optax.Schedule:
  """torch's ρ_t = min(α_t, 1/√t), t the 1-based step, in the default float dtype."""

  def step_size(count):
    t = jnp.asarray(count + 1, jnp.result_type(float))  # float64 under x64, as torch's step
    lr = validation.real(validation.evaluate(learning_rate, count))
    return jnp.minimum(lr, 1 / jnp.sqrt(t))

  return step_size


@renamed(
  "adafactor",
  weight_decay="weight_decay_rate={}",
  mask="weight_decay_mask={}",
  relative_step="convention='torch'",
)
def adafactor(
  learning_rate: ScalarOrSchedule | None = None,
  min_dim_size_to_factor: int = 128,
  decay_rate: float = 0.8,
  decay_offset: int = 0,
  multiply_by_parameter_scale: bool = True,
  clipping_threshold: float | None = 1.0,
  momentum: float | None = None,
  dtype_momentum: Any = jnp.float32,
  weight_decay_rate: ScalarOrSchedule | None = None,
  eps: float = 1e-30,
  factored: bool = True,
  weight_decay_mask: Mask = None,
  *,
  convention: str = "optax",
  param_scale_eps: float = 1e-3,
  coupling: str | None = None,
  peak_learning_rate: float | None = None,
  cautious: bool = False,
  reference: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Adafactor (Shazeer & Stern 2018) with decoupled decay: ``optax.adafactor``'s arguments.

  With t the 1-based step and V̂ the factored (rows ⊗ cols / mean) EMA of g² + ε with
  β2_t = 1 − t^(−decay_rate):

  .. math::

    u = g / \sqrt{\hat V}, \quad u \leftarrow \frac{u}{\max(1, \mathrm{RMS}(u)/d)}, \quad
    \theta \leftarrow \theta - \rho_t \max(\mathrm{RMS}(\theta), \epsilon_2)\, u
      - c_t \lambda_t k\, a \odot (\theta - \theta_0)

  ``convention="optax"`` (default) is ``optax.adafactor``: ρ_t = α_t (no scaling when
  `learning_rate` is None), leaves factored when their second-largest dimension is at least
  `min_dim_size_to_factor`, and λ multiplied by nothing (``coupling="constant"``).
  ``convention="torch"`` is torch's ``Adafactor(lr, weight_decay=λ)``: the relative step
  ρ_t = min(α_t, 1/√t), every matrix factored, λ multiplied by α_t (``coupling="lr"``), β2_t
  and 1/√t in JAX's default float dtype (optax's β2_t is float32 even under x64). Two
  differences from torch remain: ε is added to g² (optax) where torch clamps V̂ at eps₁²
  (each ~1e-30, inactive unless g ≈ 0), and leaves of rank > 2 are factored over their two
  largest axes (optax) where torch takes the last two.

  Args:
    learning_rate: α ≥ 0, a float or a schedule; None (optax's default): no lr scaling.
    min_dim_size_to_factor: factor a leaf only if its second-largest dimension is at least
      this (optax's rule; the torch convention factors every matrix). A Python int, also
      under `optax.inject_hyperparams` (there: in ``static_args``).
    decay_rate, decay_offset, multiply_by_parameter_scale: as `optax.adafactor`.
    clipping_threshold, momentum, dtype_momentum, eps, factored: as `optax.adafactor`.
    weight_decay_rate: λ ≥ 0 (None, optax's default: no decay).
    weight_decay_mask: which leaves to decay, and by how much (any wd_jax mask).
    convention: ``"optax"`` or ``"torch"`` (above).
    param_scale_eps: ε₂ of max(RMS(θ), ε₂) (optax's and torch's 1e-3).
    coupling: None (the convention's: ``"constant"`` for optax, ``"lr"`` for torch) or any
      coupling (see `with_weight_decay`).
    peak_learning_rate, cautious, reference: see `with_weight_decay`.

  Returns:
    An `optax.GradientTransformationExtraArgs`: `with_weight_decay` around the chain above
    (``scale_by_factored_rms``, ``clip_by_block_rms``, the step size,
    ``scale_by_param_block_rms``, optional ``ema``); its `update` needs the params.

  Raises:
    ValueError: a bad argument, named; a non-int `min_dim_size_to_factor` says that λ is
      ``weight_decay_rate=`` now; the former ``weight_decay=``, ``mask=`` and
      ``relative_step=`` say what replaces them.

  Example:
    >>> opt = wd_jax.adafactor(0.1, weight_decay_rate=0.5)  # optax's: θ (1 − λ)
    >>> p = jnp.array([2.0])
    >>> u, _ = opt.update(jnp.zeros(1), opt.init(p), p)
    >>> print(p + u)  # zero gradient: only the decay moves θ
    [1.]
    >>> opt = wd_jax.adafactor(0.1, weight_decay_rate=0.5, convention="torch")  # θ (1 − α λ)
    >>> print(p + opt.update(jnp.zeros(1), opt.init(p), p)[0])
    [1.9]

  References:
    Shazeer & Stern, "Adafactor: adaptive learning rates with sublinear memory cost", ICML
    2018. PyTorch ``torch.optim.Adafactor``; ``optax.adafactor``.
  """
  validation.check_choice("convention", convention, ("optax", "torch"))
  torch = convention == "torch"
  if learning_rate is not None:
    validation.check_learning_rate(learning_rate)
  elif torch:
    raise ValueError("learning_rate is required with convention='torch', got None.")
  with second_argument("adafactor", "min_dim_size_to_factor", "weight_decay_rate"):
    validation.check_int(
      "min_dim_size_to_factor", min_dim_size_to_factor, lower=0, hint=STATIC_HINT
    )
  if torch and min_dim_size_to_factor != 128:
    raise ValueError(
      "min_dim_size_to_factor is optax's rule; convention='torch' factors every matrix, as "
      f"torch, got {min_dim_size_to_factor!r}."
    )
  validation.check_number("decay_rate", decay_rate, lower=0.0, allow_schedule=False)
  validation.check_number("eps", eps, lower=0.0, allow_schedule=False)
  validation.check_number("param_scale_eps", param_scale_eps, lower=0.0, allow_schedule=False)
  if clipping_threshold is not None:
    validation.check_number(
      "clipping_threshold", clipping_threshold, lower=1.0, allow_schedule=False
    )
  if momentum is not None:
    validation.check_beta("momentum", momentum)
  rms = optax.scale_by_factored_rms(
    factored,
    decay_rate,
    decay_offset,
    0 if torch else min_dim_size_to_factor,
    eps,
    **({"decay_rate_fn": _decay_rate_pow} if torch else {}),
  )
  chain = [rms]
  if clipping_threshold is not None:
    chain.append(optax.clip_by_block_rms(clipping_threshold))
  step_size = _relative_step(learning_rate) if torch else learning_rate
  if step_size is not None:
    chain.append(optax.scale_by_learning_rate(step_size, flip_sign=False))
  if multiply_by_parameter_scale:
    chain.append(optax.scale_by_param_block_rms(param_scale_eps))
  if momentum is not None:
    chain.append(optax.ema(momentum, debias=False, accumulator_dtype=dtype_momentum))
  chain.append(optax.scale(-1))
  return decayed(
    optax.chain(*chain),
    0.0 if weight_decay_rate is None else weight_decay_rate,
    learning_rate,
    coupling or ("lr" if torch else "constant"),
    peak_learning_rate,
    weight_decay_mask,
    cautious,
    reference,
  )
