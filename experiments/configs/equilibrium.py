"""Rotational equilibrium where it is reached: measured vs predicted angular update and norm of
every scale-invariant layer, in two phases (tune pre-registers the settings, confirm decides).

  python experiments/equilibrium.py --config=experiments/configs/equilibrium.py \
      --config.phase=tune --workdir=runs/equilibrium-tune   # writes experiments/preregistered/...
  python experiments/equilibrium.py --config=experiments/configs/equilibrium.py \
      --workdir=runs/equilibrium
  (:smoke runs both phases in seconds)

Kosson, Messmer & Jaggi (2023; REFERENCES §4): with a constant learning rate, a scale-invariant
weight settles where decay and gradient balance, with expected angular update per step
  AdamW  √(2αλ(1−β1)/(1+β1))          SGD with momentum μ (coupled L2)  √(2αλ/(1+μ))
and norm (C elements)
  AdamW  √(αC/(2λ))                   SGDM  (α‖g̃‖²/(2λ(1−μ)))^{1/4}, g̃ the gradient at unit norm.
`wd_jax.engine.train` logs both predictions beside the measurements for every scale-invariant
leaf. Here those leaves are the hidden kernels of a bias-free Linear → LayerNorm → ReLU MLP
(128, 128) on MNIST-1D (3,600 training sequences): 5,120 and 16,384 elements.

Where equilibrium is reached, by design:
- a constant learning rate (no warmup, no anneal), batch 128, 3,000 steps;
- ≥ 5 decay timescales within the run: the per-step shrink s (αλ for AdamW, αλ/(1−μ) for SGDM)
  is 2e-3 or 4e-3, τ = 1/s = 500 or 250 steps, 6 or 12 timescales (the config refuses fewer
  than `min_timescales`); the averaging window, the last third, starts after 4 or 8 of them;
- AdamW's β2 = 0.99: v̂ forgets in ~100 steps, a tenth of the window and under half a decay
  timescale, so Adam's step is normalised by the current gradient's scale (β2 = 0.999
  remembers ~1,000 steps, most of a run this short: the previous design's v̂ carried the large
  early gradients into the window and its norms decayed freely);
- the "free-decay share" checks it: the share of the window's logging intervals in which a
  layer's norm fell at ≥ 75% of the rate decay alone gives. At equilibrium the gradient pushes
  the norm back every step, so the share is ~0; the claim `equilibrium_reached` reads it.

Claims (declared here, pre-registered by the tune phase, decided by the confirm phase on 8
fresh seeds and a fresh draw): per setting, log(measured/predicted), averaged over layers and
over the window, one value per seed, is equivalent to 0 within log 1.1 (ratio within
[0.909, 1.1]; TOST at α = 0.05), for the angular update and for the norm. Pilot on the tuning
draw (seeds 0–1, before the claims were frozen): AdamW angle 0.98–1.04, norm 0.84–0.90; SGDM
angle 0.99–1.02, norm 0.95–0.98; free-decay share 0 everywhere.
"""

import math
import os

import ml_collections
from configs.early_wd import mnist1d_layernorm_mlp, smoke_phases

from wd_jax.study.claims import claim, declare

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREREGISTERED = os.path.join(ROOT, "experiments", "preregistered")
MARGIN = math.log(1.1)  # |log(measured/predicted)| < log 1.1: ratio within [0.909, 1.1]
KOSSON = (
  "Kosson, Messmer & Jaggi 2023 (REFERENCES §4): weight decay “can cause the expected magnitude "
  "and angular updates of a neuron's weight vector to converge to a steady state we call "
  "rotational equilibrium”; the predictions above"
)
LABELS = {"adamw": "AdamW", "sgdm": "SGD+momentum (L2)"}

# (name, optimizer variant, α, λ); the per-step shrink s in the comment, τ = 1/s steps.
SETTINGS = (
  ("adamw_a", "adamw", 1e-3, 2.0),  # s = αλ = 2e-3, τ = 500
  ("adamw_b", "adamw", 2e-3, 2.0),  # s = 4e-3, τ = 250
  ("adamw_c", "adamw", 4e-3, 1.0),  # s = 4e-3 again, at twice α/λ: the norm's √(α/λ) scaling
  ("sgdm_a", "sgdm", 0.05, 4e-3),  # s = αλ/(1−μ) = 2e-3
  ("sgdm_b", "sgdm", 0.1, 4e-3),  # s = 4e-3
  ("sgdm_c", "sgdm", 0.05, 8e-3),  # s = 4e-3 at half α/λ
)


def claims(settings) -> ml_collections.ConfigDict:
  """Per setting: angle and norm at the prediction (equivalence within `MARGIN`); and the
  precondition, equilibrium reached (free-decay share below 0.1 in every setting)."""
  out = {
    "equilibrium_reached": claim(
      "Precondition: the runs are at equilibrium in the window: the largest free-decay share "
      "over the settings (the share of intervals in which a layer's norm fell at ≥ 75% of the "
      "rate decay alone gives) is below 0.1 (measured: share − 0.1 < 0).",
      "the random-walk model's premise (Kosson et al. 2023): the gradient balances the decay",
      "less",
      a="all/max_free_decay_share_above_bound",
      names=("max share − 0.1", "0"),
    )
  }
  for name, variant, lr, wd in settings:
    for q, what in (("angle", "angular update per step"), ("norm", "weight norm")):
      out[f"{name}_{q}"] = claim(
        f"{LABELS[variant]} at α = {lr:g}, λ = {wd:g} (constant lr): the scale-invariant "
        f"layers' {what} is at the rotational-equilibrium prediction, measured/predicted within "
        "[0.909, 1.1] (log ratio within ±log 1.1).",
        KOSSON,
        "equivalent",
        a=f"{name}/log_{q}_ratio",
        margin=MARGIN,
        names=("log(measured/predicted)", "0"),
      )
  return declare(**out)


def mnist1d_run(steps: int) -> ml_collections.ConfigDict:
  """The constant-lr LayerNorm-MLP run (its optimizer set per variant, its draw per phase)."""
  c = mnist1d_layernorm_mlp(steps)
  c.optimizer.lr_schedule = "constant"  # an equilibrium needs a fixed α
  c.optimizer.warmup_fraction = 0.0
  c.log_every = c.diagnostics_every = max(steps // 60, 1)  # one step's angle and norms, per leaf
  c.per_leaf_diagnostics = True  # angular_update/<path>, param_norm/<path>
  return c


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.phase = "confirm"  # "tune" pre-registers the settings; "confirm" decides
  c.preregistration = os.path.join(PREREGISTERED, "equilibrium.json")
  # Optimizer variant -> (wd_jax recipe, its keyword arguments).
  c.optimizers = ml_collections.ConfigDict(
    {
      "adamw": {"name": "adamw", "kwargs": {"b1": 0.9, "b2": 0.99}},
      "sgdm": {"name": "sgd_l2", "kwargs": {"momentum": 0.9}},
    }
  )
  c.settings = SETTINGS
  c.strategy = "vmap"
  c.window = 1 / 3  # measurements averaged over this final share of the steps
  c.free_decay_rate = 0.75  # an interval is "free decay" if ‖w‖ fell at ≥ this × decay's rate
  c.min_timescales = 5.0  # the config refuses a setting whose run holds fewer decay timescales
  if variant == "default":
    c.run = mnist1d_run(3000)
    tune = {"seeds": (0, 1, 2), "dataset": {"seed": 1, "num_train": 7600, "num_test": 1000}}
    confirm = {"seeds": tuple(range(100, 108)), "min_seeds": 5}
    confirm["dataset"] = {"seed": 2, "num_train": 7600, "num_test": 1000}
  elif variant == "smoke":  # seconds; the tests point preregistration at a temporary file
    c.run = mnist1d_run(60)
    c.run.dataset.validation_fraction = 0.5
    c.run.log_every = c.run.diagnostics_every = 5
    c.settings = (("adamw_a", "adamw", 0.1, 1.0), ("sgdm_a", "sgdm", 0.5, 0.02))
    tune, confirm = smoke_phases()
  else:
    raise ValueError(f"variant must be 'default' or 'smoke', got {variant!r}.")
  c.tune = ml_collections.ConfigDict(tune)
  c.confirm = ml_collections.ConfigDict(confirm)
  c.claims = claims(c.settings)
  return c
