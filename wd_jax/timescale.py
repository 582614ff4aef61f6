"""Weight decay as a timescale: λ from τ, and what a λ does over a whole run.

Decoupled decay makes the weights an exponential moving average of recent updates with
timescale τ = 1/(c λ) steps, c the factor the coupling multiplies λ by (Wang & Aitchison
2024, REFERENCES §8): α for ``"lr"`` (their τ_iter = 1/(ηλ)), 1 for ``"schedule"`` at the
peak and for ``"constant"``, α_peak for ``"corrected"`` at the peak. They find the best
τ in epochs roughly constant across model and dataset size, and advise τ not much shorter
than one epoch nor much longer than the run.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from wd_jax import validation
from wd_jax._decay import COUPLING_TABLE, COUPLINGS, check_peak
from wd_jax.masks import leaf_multipliers


def _values(fn_or_value: Any, steps: int) -> np.ndarray:
  """A float or a schedule at t = 0..steps-1, as float64."""
  if not validation.is_schedule(fn_or_value):
    return np.full(steps, float(fn_or_value))
  counts = jnp.arange(steps, dtype=jnp.int32)
  out = np.asarray(fn_or_value(counts), np.float64)
  if out.shape != (steps,):  # a schedule that does not broadcast over an array of counts
    out = np.array([float(fn_or_value(jnp.asarray(t, jnp.int32))) for t in range(steps)])
  return out


def _factors(coupling, learning_rate, peak_learning_rate, steps: int) -> np.ndarray:
  """c_t at t = 0..steps-1 (float64), as the transforms compute it (`decay_factor`)."""
  entry = COUPLING_TABLE[coupling]
  if not entry.needs_learning_rate:
    return np.ones(steps)
  if learning_rate is None:
    raise ValueError(f"learning_rate is required for coupling={coupling!r}, got None.")
  validation.check_learning_rate(learning_rate)
  check_peak(coupling, learning_rate, peak_learning_rate)
  peak = learning_rate if peak_learning_rate is None else peak_learning_rate
  return entry.factor(_values(learning_rate, steps), float(peak) if entry.needs_peak else None)


def timescale_weight_decay(
  tau_steps: float | None = None,
  *,
  tau_epochs: float | None = None,
  steps_per_epoch: float | None = None,
  coupling: str = "lr",
  learning_rate: Any = None,
  peak_learning_rate: float | None = None,
) -> float:
  r"""λ = 1/(c_peak · τ): the weight decay whose EMA timescale is τ steps at the peak lr.

  .. math::

    \lambda = \frac{1}{c_\text{peak}\, \tau_\text{steps}}, \qquad
    \tau_\text{steps} = \tau_\text{epochs} \times \text{steps\_per\_epoch}

  c_peak is what the coupling multiplies λ by at the peak learning rate: α_peak
  (``"lr"``, Wang & Aitchison's λ = 1/(η τ_iter), and ``"corrected"``) or 1 (``"schedule"``,
  ``"constant"``): the factor the decay step multiplies λ by, so that one step shrinks θ by
  1/τ at the peak.

  Example:
    >>> print(wd_jax.timescale_weight_decay(tau_epochs=2, steps_per_epoch=500, learning_rate=1e-3))
    1.0
    >>> print(wd_jax.timescale_weight_decay(1000, coupling="schedule"))
    0.001

  Args:
    tau_steps: τ in steps (or give `tau_epochs` and `steps_per_epoch`).
    tau_epochs: τ in epochs.
    steps_per_epoch: optimizer steps per epoch (dataset size / batch size).
    coupling: one of ``"lr"``, ``"schedule"``, ``"constant"``, ``"corrected"``.
    learning_rate: α (a float is its own peak); needed for ``"lr"``/``"corrected"``.
    peak_learning_rate: α_peak, when `learning_rate` is a schedule.

  Returns:
    λ as a float.

  Raises:
    ValueError: both or neither of `tau_steps` and `tau_epochs`, a non-positive τ or
      steps_per_epoch, an unknown coupling, or no learning rate where the coupling needs it.

  References:
    Wang & Aitchison, "How to set AdamW's weight decay as you scale model and dataset
    size", arXiv:2405.13698, 2024.
  """
  validation.check_choice("coupling", coupling, COUPLINGS)
  if (tau_steps is None) == (tau_epochs is None):
    raise ValueError(
      f"give exactly one of tau_steps and tau_epochs, got tau_steps={tau_steps!r}, "
      f"tau_epochs={tau_epochs!r}."
    )
  if tau_epochs is not None:
    validation.check_number(
      "tau_epochs", tau_epochs, lower=0.0, lower_inclusive=False, allow_schedule=False
    )
    if steps_per_epoch is None:
      raise ValueError("steps_per_epoch is required with tau_epochs, got None.")
    validation.check_number(
      "steps_per_epoch", steps_per_epoch, lower=0.0, lower_inclusive=False, allow_schedule=False
    )
    tau_steps = float(tau_epochs) * float(steps_per_epoch)
  validation.check_number(
    "tau_steps", tau_steps, lower=0.0, lower_inclusive=False, allow_schedule=False
  )
  entry, peak = COUPLING_TABLE[coupling], peak_learning_rate
  if peak is None and not (learning_rate is None or validation.is_schedule(learning_rate)):
    validation.check_learning_rate(learning_rate)
    peak = learning_rate  # a float learning rate is its own peak
  if coupling == "schedule" or not entry.needs_learning_rate:
    c_peak = 1.0  # α_peak/α_peak, whatever the peak
  elif peak is None:
    raise ValueError(
      f"peak_learning_rate is required for coupling={coupling!r} unless learning_rate is a "
      f"float, got learning_rate={learning_rate!r}."
    )
  else:
    c_peak = float(entry.factor(float(peak), float(peak)))  # c_t at α_t = α_peak
  if c_peak <= 0:
    raise ValueError(
      f"coupling={coupling!r} multiplies λ by {c_peak} at the peak learning rate {peak!r}: no λ "
      "gives a finite timescale."
    )
  return 1.0 / (c_peak * float(tau_steps))


@dataclasses.dataclass(frozen=True)
class TimescaleReport:
  """λ, its timescale τ and the total shrink over a run; `str()` gives a readable summary.

  Attributes:
    weight_decay: λ (the largest λ_t of a schedule).
    coupling: the coupling that multiplies λ.
    tau_steps: 1/max_t(c_t λ_t), the shortest timescale of the run, in steps.
    total_steps: the run's number of steps.
    total_shrink: exp(−Σ_t c_t λ_t), what the decay alone leaves of a weight.
    steps_per_epoch: optimizer steps per epoch, if given.

  Example:
    >>> report = wd_jax.describe_timescale(0.1, total_steps=1000, learning_rate=1e-3,
    ...                                    steps_per_epoch=100)
    >>> report.tau_epochs, report.run_epochs, report.guideline
    (100.0, 10.0, 'longer than the run')
  """

  weight_decay: float  # λ (the largest λ_t of a schedule)
  coupling: str
  tau_steps: float  # 1/max_t(c_t λ_t): the shortest timescale of the run
  total_steps: int
  total_shrink: float  # exp(−Σ_t c_t λ_t): what the decay alone leaves of θ
  steps_per_epoch: float | None = None

  @property
  def tau_epochs(self) -> float | None:
    """τ in epochs (None without `steps_per_epoch`)."""
    return None if self.steps_per_epoch is None else self.tau_steps / self.steps_per_epoch

  @property
  def run_epochs(self) -> float | None:
    """The run's length in epochs (None without `steps_per_epoch`)."""
    return None if self.steps_per_epoch is None else self.total_steps / self.steps_per_epoch

  @property
  def guideline(self) -> str:
    """Wang & Aitchison's advice on τ_epoch: not much below 1 epoch nor beyond the run."""
    if self.tau_epochs is None:
      return ""
    if self.tau_epochs < 1:
      return "shorter than one epoch"
    if self.tau_epochs > self.run_epochs:
      return "longer than the run"
    return "between one epoch and the run length"

  def __str__(self) -> str:
    def steps(n):
      text = f"{n:,.6g} steps"
      if self.steps_per_epoch is not None:
        text += f" = {n / self.steps_per_epoch:,.4g} epochs"
      return text

    lines = [
      f"weight decay λ = {self.weight_decay:.6g}, coupling {self.coupling!r} "
      f"(λ multiplied by {COUPLING_TABLE[self.coupling].multiplied_by})",
      f"timescale τ = 1/max_t(c_t λ_t) = {steps(self.tau_steps)}"
      + (f" ({self.guideline})" if self.guideline else ""),
      f"run: {steps(self.total_steps)}; total shrink exp(-Σ_t c_t λ_t) = {self.total_shrink:.4g}",
    ]
    return "\n".join(lines)


def describe_timescale(
  weight_decay: Any,
  *,
  total_steps: int,
  coupling: str = "lr",
  learning_rate: Any = None,
  peak_learning_rate: float | None = None,
  steps_per_epoch: float | None = None,
) -> TimescaleReport:
  r"""λ, τ and the total shrink exp(−Σ_t c_t λ_t) of a run, with c_t the coupling's factor.

  .. math::

    \tau = \frac{1}{\max_t c_t \lambda_t}, \qquad
    \text{total shrink} = \exp\Big(-\sum_{t=0}^{T-1} c_t \lambda_t\Big)

  c_t is α_t (``"lr"``), α_t/α_peak (``"schedule"``), 1 (``"constant"``) or α_t²/α_peak
  (``"corrected"``), evaluated at t = 0..total_steps−1 as the transforms evaluate it;
  τ = 1/max_t(c_t λ_t) (at the peak lr for a constant λ). exp(−Σ c_t λ_t) is what the
  decay alone would leave of a weight; the product Π(1 − c_t λ_t) that the steps apply
  differs from it by O(Σ (c_t λ_t)²).

  Example:
    >>> lr = optax.warmup_cosine_decay_schedule(0.0, 1e-3, 100, 1000)
    >>> print(wd_jax.describe_timescale(0.1, total_steps=1000, learning_rate=lr,
    ...                                 steps_per_epoch=100))
    weight decay λ = 0.1, coupling 'lr' (λ multiplied by α_t)
    timescale τ = 1/max_t(c_t λ_t) = 10,000 steps = 100 epochs (longer than the run)
    run: 1,000 steps = 10 epochs; total shrink exp(-Σ_t c_t λ_t) = 0.9512

  Args:
    weight_decay: λ (a float or a schedule).
    total_steps: the run's number of steps.
    coupling: one of ``"lr"``, ``"schedule"``, ``"constant"``, ``"corrected"``.
    learning_rate: α (float or schedule); needed unless ``coupling="constant"``.
    peak_learning_rate: α_peak for ``"schedule"``/``"corrected"`` with a scheduled α.
    steps_per_epoch: to report τ and the run in epochs too.

  Returns:
    A `TimescaleReport` (print it).

  Raises:
    ValueError: an unknown coupling, a bad `total_steps` or λ, or no learning rate (or
      peak) where the coupling needs one.

  References:
    Wang & Aitchison, "How to set AdamW's weight decay as you scale model and dataset
    size", arXiv:2405.13698, 2024.
  """
  validation.check_choice("coupling", coupling, COUPLINGS)
  validation.check_int("total_steps", total_steps, lower=1)
  validation.check_weight_decay(weight_decay)
  if steps_per_epoch is not None:
    validation.check_number(
      "steps_per_epoch", steps_per_epoch, lower=0.0, lower_inclusive=False, allow_schedule=False
    )
  lams = _values(weight_decay, total_steps)
  c = _factors(coupling, learning_rate, peak_learning_rate, total_steps)
  rate = c * lams
  fastest = float(np.max(rate))
  return TimescaleReport(
    weight_decay=float(np.max(lams)),
    coupling=coupling,
    tau_steps=math.inf if fastest == 0 else 1.0 / fastest,
    total_steps=total_steps,
    total_shrink=float(np.exp(-np.sum(rate))),
    steps_per_epoch=None if steps_per_epoch is None else float(steps_per_epoch),
  )


_MATCHED = ("adam_l2", "adams")


def matched_weight_decay(
  tau_steps: float,
  *,
  optimizer: str,
  params: Any,
  grad_sq: Any,
  learning_rate: float,
  mask: Any = None,
  eps: float = 1e-8,
) -> float:
  r"""The λ of an Adam-preconditioned decay that shrinks the weights as fast, at the start, as
  decoupled decay with timescale τ: one unit of decay strength across decay kinds.

  Decoupled decay shrinks θ by 1/τ per step at the peak (`timescale_weight_decay`). Adam's own
  decays divide λθ by a preconditioner, so the same λ means a different shrink; this finds the λ
  whose initial per-step shrink of ‖θ‖² along θ, from the decay term alone, is 1/τ, with G the
  per-coordinate mean squared loss gradient at initialisation (Adam's v̂ at the start) and k the
  mask multipliers:

  - ``"adam_l2"`` (λθ added to the gradient, in m and v; `wd_jax.adam_l2`): the first step
    divides λkθ by √(G + (λkθ)²), so

    .. math::

      s(\lambda) = \alpha\, \frac{\sum_i k_i \theta_i^2\, \lambda k_i
        / (\sqrt{G_i + \lambda^2 k_i^2 \theta_i^2} + \epsilon)}{\sum_i k_i \theta_i^2}
      = \frac{1}{\tau}

    solved by bisection: s grows with λ and saturates at α Σ k|θ| / Σ kθ² once λθ dominates v
    (every coordinate then moves by α, whatever λ), so a τ shorter than that is refused.
  - ``"adams"`` (stable weight decay, `wd_jax.adams`): the shrink is αλ/√v̄ with v̄ the mean of
    G over all elements, so λ = √v̄ /(α τ).

  Later in training G shrinks and the L2 term's share of the step grows: matched at the start
  is the matching a grid can be set by before the run, not a claim that the decays act alike.

  Args:
    tau_steps: τ > 0 in steps (at the peak learning rate).
    optimizer: ``"adam_l2"`` or ``"adams"``.
    params: the initial parameters θ.
    grad_sq: per-coordinate mean squared loss gradient at θ (same tree as `params`), e.g. the
      mean of g² over a few batches.
    learning_rate: the peak α > 0.
    mask: which leaves decay and by how much (as the optimizer's `mask`).
    eps: Adam's ε.

  Returns:
    λ as a float.

  Raises:
    ValueError: a bad argument, no decayed parameter, or a 1/τ faster than Adam+L2 can shrink
      the weights at this learning rate (the message gives the fastest τ).

  Example:
    >>> p, g2 = {"w": jnp.ones(4)}, {"w": jnp.full(4, 1e-4)}
    >>> lam = wd_jax.matched_weight_decay(1000, optimizer="adams", params=p, grad_sq=g2,
    ...                                   learning_rate=1e-3)
    >>> print(round(lam, 6))
    0.01
    >>> lam = wd_jax.matched_weight_decay(2000, optimizer="adam_l2", params=p, grad_sq=g2,
    ...                                   learning_rate=1e-3)
    >>> print(round(lam, 6))  # αλ/√(G + λ²) = 1/τ: λ = √(G/3)
    0.005774

  References:
    Wang & Aitchison, "How to set AdamW's weight decay as you scale model and dataset
    size", arXiv:2405.13698, 2024. Xie et al., "On the overlooked pitfalls of weight decay
    and how to mitigate them", NeurIPS 2023 (stable weight decay).
  """
  validation.check_choice("optimizer", optimizer, _MATCHED)
  validation.check_number(
    "tau_steps", tau_steps, lower=0.0, lower_inclusive=False, allow_schedule=False
  )
  validation.check_number(
    "learning_rate", learning_rate, lower=0.0, lower_inclusive=False, allow_schedule=False
  )

  theta = [np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(params)]
  g2 = [np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(grad_sq)]
  if [t.size for t in theta] != [g.size for g in g2]:
    raise ValueError("grad_sq must have the same tree and shapes as params.")
  target, alpha = 1.0 / float(tau_steps), float(learning_rate)
  if optimizer == "adams":
    mean_v = float(np.concatenate(g2).mean()) if g2 else 0.0
    if mean_v <= 0:
      raise ValueError("grad_sq is zero everywhere: stable weight decay applies no decay.")
    return math.sqrt(mean_v) * target / alpha
  multipliers = leaf_multipliers(params, mask)  # as the optimizer resolves them
  k = np.concatenate([np.full(t.size, m) for t, m in zip(theta, multipliers)])
  th, g = np.concatenate(theta), np.concatenate(g2)
  w = k * th**2
  if w.sum() <= 0:
    raise ValueError("no decayed parameter is non-zero: the mask decays nothing.")

  def shrink(lam: float) -> float:
    return alpha * float(np.sum(w * lam * k / (np.sqrt(g + (lam * k * th) ** 2) + eps)) / w.sum())

  fastest = alpha * float(np.sum(w / (np.abs(th) + 1e-300) * (k > 0)) / w.sum())
  if target >= fastest * (1 - 1e-9):
    raise ValueError(
      f"tau_steps={tau_steps!r} is faster than Adam+L2 can shrink these weights at "
      f"learning_rate={learning_rate!r}: every coordinate moves by at most α, so τ must exceed "
      f"{1 / fastest:.4g} steps."
    )
  lo, hi = 0.0, 1.0
  while shrink(hi) < target:
    hi *= 2.0
  for _ in range(200):
    mid = 0.5 * (lo + hi)
    lo, hi = (mid, hi) if shrink(mid) < target else (lo, mid)
  return 0.5 * (lo + hi)
