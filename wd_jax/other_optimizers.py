"""Recipes beyond Adam and SGD, each with every decay choice of `with_weight_decay`: Lion, Adan,
LAMB (decay in or after the trust ratio) and Muon (optax's and torch's conventions); Adafactor
and schedule-free AdamW live in `wd_jax.factored` and `wd_jax.schedule_free`. Each takes its
optax namesake's positional arguments and defaults, and matches its reference implementation at
its native decay placement (tests/test_parity_optax.py, tests/test_parity_torch.py);
`wd_jax.optimizers` registers them.
"""

from __future__ import annotations

from typing import Any

import optax

from wd_jax import _decay, _muon, validation
from wd_jax._recipe import (
  ScalarOrSchedule,
  check_adam,
  decayed,
  renamed,
  scaled_and_decayed,
  second_argument,
)
from wd_jax.decoupled import DecayDirectionState
from wd_jax.masks import Mask


def lion(
  learning_rate: ScalarOrSchedule,
  b1: float = 0.9,
  b2: float = 0.99,
  mu_dtype: Any = None,
  weight_decay: ScalarOrSchedule = 1e-3,
  mask: Mask = None,
  *,
  coupling: str = "lr",
  peak_learning_rate: float | None = None,
  cautious: bool = False,
  reference: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Lion (Chen et al. 2023) with decoupled weight decay: ``optax.lion``'s arguments.

  With μ_t Lion's momentum of the gradient:

  .. math::

    c = \beta_1 \mu_{t-1} + (1-\beta_1) g, \quad
    \theta \leftarrow \theta - \alpha_t \operatorname{sign}(c)
      - c_t \lambda_t k\, a \odot (\theta - \theta_0), \quad
    \mu_t = \beta_2 \mu_{t-1} + (1-\beta_2) g

  λ is multiplied by c_t (α_t by default, as optax and the paper). Lion's steps are ±α_t,
  so its λ is typically 3–10× AdamW's for the same α_t·λ (optax's docstring).

  Args:
    learning_rate: α ≥ 0, a float or a schedule.
    b1, b2, mu_dtype: as `optax.lion`.
    weight_decay: λ ≥ 0 (default 1e-3, as ``optax.lion``).
    mask: which leaves to decay, and by how much.
    coupling, peak_learning_rate, cautious, reference: see `with_weight_decay`.

  Returns:
    An `optax.GradientTransformationExtraArgs`: `with_weight_decay` around
    ``chain(scale_by_lion, scale_by_learning_rate)``; its `update` needs the params.

  Example:
    >>> opt = wd_jax.lion(0.1, weight_decay=0.5)
    >>> p = jnp.array([2.0])
    >>> u, _ = opt.update(jnp.zeros(1), opt.init(p), p)
    >>> print(p + u)  # zero gradient, sign(0) = 0: θ (1 − α λ)
    [1.9]
    >>> opt = wd_jax.lion(1e-4, weight_decay=1e-2, cautious=True)

  References:
    Chen et al., "Symbolic discovery of optimization algorithms", NeurIPS 2023 (Lion).
    ``optax.lion``. Chen et al., "Cautious weight decay", arXiv:2510.12402, 2025.
  """
  validation.check_learning_rate(learning_rate)
  with second_argument("lion", "b1"):
    validation.check_beta("b1", b1)
  validation.check_beta("b2", b2)
  direction = optax.scale_by_lion(b1=b1, b2=b2, mu_dtype=mu_dtype)
  return scaled_and_decayed(
    direction, weight_decay, learning_rate, coupling, peak_learning_rate, mask, cautious, reference
  )


def adan(
  learning_rate: ScalarOrSchedule,
  b1: float = 0.98,
  b2: float = 0.92,
  b3: float = 0.99,
  eps: float = 1e-8,
  eps_root: float = 1e-8,
  weight_decay: ScalarOrSchedule = 0.0,
  mask: Mask = None,
  *,
  coupling: str = "lr",
  peak_learning_rate: float | None = None,
  cautious: bool = False,
  reference: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Adan (Xie et al. 2022) with decoupled weight decay: ``optax.adan``'s arguments.

  With m, v, n optax's ``scale_by_adan`` moments (of g, of the gradient difference, and of
  the squared Nesterov-corrected gradient):

  .. math::

    \theta \leftarrow \theta
      - \alpha_t \frac{m + (1-\beta_2) v}{\sqrt{n + \epsilon_\text{root}} + \epsilon}
      - c_t \lambda_t k\, a \odot (\theta - \theta_0)

  λ is multiplied by c_t (α_t by default, as optax, which applies the decay additively
  rather than the paper's proximal 1/(1 + λα)).

  Args:
    learning_rate: α ≥ 0, a float or a schedule.
    b1, b2, b3, eps, eps_root: as `optax.adan`.
    weight_decay: λ ≥ 0 (default 0, as ``optax.adan``; the Adan paper uses 0.02).
    mask: which leaves to decay, and by how much.
    coupling, peak_learning_rate, cautious, reference: see `with_weight_decay`.

  Returns:
    An `optax.GradientTransformationExtraArgs`: `with_weight_decay` around
    ``chain(scale_by_adan, scale_by_learning_rate)``; its `update` needs the params.

  Example:
    >>> opt = wd_jax.adan(0.1, weight_decay=0.5)
    >>> p = jnp.array([2.0])
    >>> u, _ = opt.update(jnp.zeros(1), opt.init(p), p)
    >>> print(p + u)  # zero gradient: θ (1 − α λ)
    [1.9]

  References:
    Xie, Zhou, Li, Lin & Yan, "Adan: adaptive Nesterov momentum algorithm for faster
    optimizing deep models", arXiv:2208.06677, 2022 (TPAMI 2024). ``optax.adan``.
  """
  validation.check_learning_rate(learning_rate)
  for name, b in (("b1", b1), ("b2", b2), ("b3", b3)):
    with second_argument("adan", "b1"):
      validation.check_number(name, b, lower=0.0, upper=1.0, allow_schedule=False)
  validation.check_number("eps", eps, lower=0.0, allow_schedule=False)
  validation.check_number("eps_root", eps_root, lower=0.0, allow_schedule=False)
  direction = optax.scale_by_adan(b1=b1, b2=b2, b3=b3, eps=eps, eps_root=eps_root)
  return scaled_and_decayed(
    direction, weight_decay, learning_rate, coupling, peak_learning_rate, mask, cautious, reference
  )


def lamb(
  learning_rate: ScalarOrSchedule,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-6,
  eps_root: float = 0.0,
  weight_decay: ScalarOrSchedule = 0.0,
  mask: Mask = None,
  *,
  mu_dtype: Any = None,
  decay_in_trust_ratio: bool = True,
  coupling: str = "lr",
  peak_learning_rate: float | None = None,
  cautious: bool = False,
  reference: Any = None,
) -> optax.GradientTransformation:
  r"""LAMB (You et al. 2020), with the decay inside the trust ratio (``optax.lamb``) or after it.

  With d = m̂/(√(v̂ + ε_root) + ε) Adam's direction, per layer:

  .. math::

    \texttt{decay\_in\_trust\_ratio=True:}\quad
    r = d + \lambda_t k\, a \odot (\theta - \theta_0), \quad
    \theta \leftarrow \theta - \alpha_t \frac{\lVert\theta\rVert}{\lVert r\rVert} r

    \texttt{decay\_in\_trust\_ratio=False:}\quad
    \theta \leftarrow \theta - \alpha_t \frac{\lVert\theta\rVert}{\lVert d\rVert} d
      - c_t \lambda_t k\, a \odot (\theta - \theta_0)

  - ``True`` (optax, the paper): the decay enters the trust ratio, so λ is multiplied by α_t
    and by the ratio ‖θ‖/‖r‖; only ``coupling="lr"`` is defined.
  - ``False``: the trust ratio sees the Adam direction alone and λ is multiplied by c_t only,
    with any coupling.

  Args:
    learning_rate: α ≥ 0, a float or a schedule.
    b1, b2, eps, eps_root: as `optax.lamb` (eps 1e-6).
    weight_decay: λ ≥ 0 (default 0, as ``optax.lamb``; the LAMB paper uses 0.01).
    mask: which leaves to decay, and by how much.
    mu_dtype: dtype of Adam's first moment (None: the params').
    decay_in_trust_ratio: where the decay goes (above).
    coupling, peak_learning_rate, cautious, reference: see `with_weight_decay`.

  Returns:
    An optax transformation: ``chain(scale_by_adam, decay, scale_by_trust_ratio,
    scale_by_learning_rate)`` (``True``), or `with_weight_decay` around the chain without
    the decay (``False``); its `update` needs the params.

  Raises:
    ValueError: ``decay_in_trust_ratio=True`` with a coupling other than ``"lr"``, or a bad
      argument (named).

  Example:
    >>> p = jnp.array([2.0])
    >>> for inside in (True, False):  # zero gradient: only the decay moves θ
    ...   opt = wd_jax.lamb(0.1, weight_decay=0.5, decay_in_trust_ratio=inside)
    ...   u, _ = opt.update(jnp.zeros(1), opt.init(p), p)
    ...   print(inside, p + u)  # inside: r = λθ, ratio ‖θ‖/‖r‖ = 2, θ − 2 α λ θ
    True [1.8]
    False [1.9]

  References:
    You et al., "Large batch optimization for deep learning: training BERT in 76 minutes",
    ICLR 2020 (LAMB). ``optax.lamb``.
  """
  validation.check_learning_rate(learning_rate)
  with second_argument("lamb", "b1"):
    check_adam(b1, b2, eps, eps_root)
  adam = optax.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype)
  if not decay_in_trust_ratio:
    base = optax.chain(
      adam, optax.scale_by_trust_ratio(), optax.scale_by_learning_rate(learning_rate)
    )
    return decayed(
      base, weight_decay, learning_rate, coupling, peak_learning_rate, mask, cautious, reference
    )
  if coupling != "lr":
    raise ValueError(
      f"coupling must be 'lr' when decay_in_trust_ratio=True (the decay is scaled by α_t "
      f"and the trust ratio), got coupling={coupling!r}; use decay_in_trust_ratio=False."
    )
  if not isinstance(cautious, bool):
    raise ValueError(f"cautious must be a bool, got {cautious!r}.")
  direction_decay = _decay.decay_in_chain(
    weight_decay,
    mask=mask,
    reference=reference,
    state=DecayDirectionState,
    name="lamb",
    cautious=cautious,
  )
  return optax.chain(
    adam,
    direction_decay,
    optax.scale_by_trust_ratio(),
    optax.scale_by_learning_rate(learning_rate),
  )


@renamed("muon", mask="weight_decay_mask={}")
def muon(
  learning_rate: ScalarOrSchedule,
  ns_coeffs: Any = _muon.DEFAULT_NS_COEFFS,
  ns_steps: int = 5,
  beta: float = 0.95,
  eps: float = 1e-8,
  weight_decay: ScalarOrSchedule = 0.0,
  weight_decay_mask: Mask = None,
  mu_dtype: Any = None,
  *,
  nesterov: bool = True,
  adaptive: bool = False,
  preconditioning: str = "frobenius",
  adam_b1: float = 0.9,
  adam_b2: float = 0.999,
  adam_eps_root: float = 0.0,
  adam_weight_decay: ScalarOrSchedule = 0.0,
  adam_learning_rate: ScalarOrSchedule | None = None,
  muon_weight_dimension_numbers: Any = None,
  consistent_rms: float | None = None,
  convention: str = "optax",
  adam_eps: float | None = None,
  coupling: str = "lr",
  peak_learning_rate: float | None = None,
  cautious: bool = False,
  reference: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Muon (Jordan 2024) with decoupled weight decay: ``optax.contrib.muon``'s arguments.

  For each Muon leaf (2-D by default, an (in, out) kernel) with momentum buffer B:

  .. math::

    O = \mathrm{NS}_5\big(\tilde B / \lVert \tilde B \rVert\big), \quad
    \theta \leftarrow \theta - \alpha_t\, s\, O - c_t \lambda_t k\, a \odot (\theta - \theta_0),
    \quad s = \sqrt{\max(1, \text{fan\_out}/\text{fan\_in})}

  (``consistent_rms=ρ``: s = ρ √max(fan_in, fan_out)). NS₅ is the quintic Newton–Schulz
  iteration. ``convention="optax"`` is ``optax.contrib.muon`` itself (built without decay):
  B̃ the debiased EMA (Nesterov: β m̂_{t+1} + (1−β) ĝ_t), normalised by ‖B̃‖ + ε, and every
  option of it. ``convention="torch"`` is ``torch.optim.Muon``: B = βB + (1−β)g, B̃ = B or,
  with Nesterov, (1−β)g + βB, normalised by max(‖B̃‖, ε) (torch's ε is 1e-7); torch's s is
  its "original" ``adjust_lr_fn`` on its (out, in) layout, ρ = 0.2 its "match_rms_adamw".
  Leaves of other ranks take an AdamW step (optax's; torch leaves them to another optimizer).

  λ is multiplied by c_t (α_t by default: torch's θ ← θ(1 − α_t λ), and optax's), never by s.
  As in optax, `weight_decay` and `weight_decay_mask` decay the Muon leaves and
  `adam_weight_decay` (c_t from `adam_learning_rate`) the Adam leaves.

  Args:
    learning_rate: α ≥ 0, a float or a schedule.
    ns_coeffs, ns_steps, beta, eps, mu_dtype: as ``optax.contrib.muon``. `ns_steps` is a
      Python int, also under `optax.inject_hyperparams` (``static_args=('ns_steps',)``).
    weight_decay: λ ≥ 0 of the Muon leaves (default 0, as ``optax.contrib.muon``).
    weight_decay_mask: which Muon leaves to decay, and by how much (any wd_jax mask).
    nesterov, consistent_rms: as ``optax.contrib.muon``.
    adaptive, preconditioning, muon_weight_dimension_numbers: as ``optax.contrib.muon``; the
      torch convention keeps their defaults (torch's Muon: 2-D, Frobenius-normalised).
    adam_b1, adam_b2, adam_eps_root, adam_learning_rate: as ``optax.contrib.muon``.
    adam_weight_decay: λ ≥ 0 of the Adam leaves (default 0).
    convention: ``"optax"`` or ``"torch"`` (above).
    adam_eps: the Adam leaves' ε with ``convention="torch"`` (None: `eps`, as optax).
    coupling, peak_learning_rate, cautious, reference: see `with_weight_decay`.

  Returns:
    An `optax.GradientTransformationExtraArgs`: `with_weight_decay` around Muon's base (and
    around that, for the Adam leaves, when `adam_weight_decay` is not 0); its `update` needs
    the params.

  Raises:
    ValueError: a bad argument, named; `ns_coeffs` that are not coefficients say that λ is a
      keyword now; ``mask=`` (now ``weight_decay_mask=``).

  Example:
    >>> opt = wd_jax.muon(0.1, weight_decay=0.5)
    >>> params = {"w": jnp.full((2, 2), 2.0), "b": jnp.ones(2)}
    >>> u, _ = opt.update(jax.tree.map(jnp.zeros_like, params), opt.init(params), params)
    >>> print(params["w"][0] + u["w"][0], params["b"] + u["b"])  # θ (1 − α λ), never scaled by s
    [1.9 1.9] [1. 1.]
    >>> opt = wd_jax.muon(0.02, weight_decay=0.1, convention="torch", coupling="schedule")

  References:
    Jordan, "Muon: an optimizer for hidden layers in neural networks", 2024.
    Liu et al., "Muon is scalable for LLM training", arXiv:2502.16982, 2025 (decay and
    ``consistent_rms``). ``optax.contrib.muon``; PyTorch ``torch.optim.Muon``.
  """
  validation.check_learning_rate(learning_rate)
  validation.check_choice("convention", convention, _muon.CONVENTIONS)
  with second_argument("muon", "ns_coeffs"):
    ns_coeffs = _muon.check_ns_coeffs(ns_coeffs, convention)
  _muon.check_ns_steps(ns_steps)
  validation.check_beta("beta", beta)
  validation.check_number("eps", eps, lower=0.0, allow_schedule=False)
  if adam_learning_rate is None:
    adam_learning_rate = learning_rate
  validation.check_learning_rate(adam_learning_rate, "adam_learning_rate")
  check_adam(adam_b1, adam_b2, eps if adam_eps is None else adam_eps, adam_eps_root)
  dims = muon_weight_dimension_numbers
  base = _muon.muon_base(
    convention,
    learning_rate,
    ns_coeffs,
    ns_steps,
    beta,
    eps,
    mu_dtype,
    nesterov=nesterov,
    adaptive=adaptive,
    preconditioning=preconditioning,
    adam_b1=adam_b1,
    adam_b2=adam_b2,
    adam_eps=adam_eps,
    adam_eps_root=adam_eps_root,
    adam_learning_rate=adam_learning_rate,
    muon_weight_dimension_numbers=dims,
    consistent_rms=consistent_rms,
  )
  opt = decayed(
    base,
    weight_decay,
    learning_rate,
    coupling,
    peak_learning_rate,
    _muon.branch_mask(weight_decay_mask, dims, muon=True),
    cautious,
    reference,
  )
  if validation.is_static_zero(adam_weight_decay):
    return opt
  adam_peak = peak_learning_rate if adam_learning_rate is learning_rate else None
  return decayed(
    opt,
    adam_weight_decay,
    adam_learning_rate,
    coupling,
    adam_peak,
    _muon.branch_mask(None, dims, muon=False),
    cautious,
    reference,
  )
