"""Does weight decay need to change with the size of the network and of the data? In two phases:
tune (pre-register), then confirm.

  python experiments/scaling.py --config=experiments/configs/scaling.py \
      --config.phase=tune --workdir=runs/scaling-tune    # writes experiments/preregistered/...
  python experiments/scaling.py --config=experiments/configs/scaling.py --workdir=runs/scaling
  (:smoke runs both phases in seconds)

The question (fast.ai's, and Wang & Aitchison 2024's answer): AdamW's weights are an exponential
moving average of recent updates with timescale τ_iter = 1/(ηλ) iterations, τ_epoch = τ_iter /
(iterations per epoch). Wang & Aitchison find the best τ_epoch roughly constant across model and
dataset size, so the best λ moves: it falls as the dataset grows and, with μP's lr ∝ 1/width,
grows with width. The rival is the reading "λ is per weight, the same whatever the size"
(REFERENCES §5): the best λ stays put and τ_epoch moves instead.

Task: MNIST-1D, a plain ReLU MLP with two hidden layers of width w ∈ {32, 64, 128}, trained on
n ∈ {500, 1000, 2000} sequences (2,000 more carved off for validation) for a fixed 30 epochs of
batch 100 (150, 300, 600 steps: iterations grow with n), AdamW (`wd_jax.adamw(lr,
weight_decay=λ)`, lr-coupled: θ ← θ − η_t λ θ), 5% warmup then cosine, decay on the kernels.
τ is read at the peak lr η. Two lr rules ("arms"): ``fixed``, the same lr grid {2, 4, 8}·1e-3 at
every width; ``mup``, that grid × 64/w for the *whole model* (the engine has no per-layer lr, so
this is μP's "hidden matrices ∝ 1/fan_in" applied to every layer, said as such).

Tune: per (arm, n, w) cell, lr over the arm's 3-point grid × λ over τ_epoch/E ∈ {4, 2, …, 1/16}
(λ = 1/(η τ_epoch · n/B), factor 2 apart, from barely acting to acting ~16 times over) plus
λ = 0, 2 seeds, selected on the validation items; the confirm λ grid is centred on the best
λ > 0 at the selected lr.

Confirm: each cell's selected lr and λ_c · 2^j, j ∈ {−3, …, 3} (7 λ), on 5 fresh seeds and a
fresh draw (4,000 test sequences). Per seed and cell, λ* is the vertex of a quadratic in log λ
fitted to the test accuracy at the argmax and its two neighbours on each side (the argmax when
the fit is not concave; clipped to the window), and τ*_epoch = 1/(η λ* n/B). Per seed, the OLS
slope of log λ* and of log τ* on log n (over the arm's 9 cells; the design is balanced, so it is
the slope at fixed width) and on log w.

What each hypothesis predicts, and what is true by construction. With the epochs fixed, the
iterations per epoch are n/B and log τ* = −log η − log λ* − log(n/B), so per seed, exactly,
  b_τ(n) = −b_λ(n) − b_η(n) − 1,    b_τ(w) = −b_λ(w) − b_η(w),
with b_η the slope of the tuned lr (a pre-registered constant, printed; 0 if the tune keeps the
lr across sizes, −1 on width under the μP arm if it keeps the base lr). So "τ's slope is nearer 0
than λ's" is, on size, "b_λ(n) below −(1 + b_η(n))/2": a claim about where λ* sits, not about τ
as a separate measurement. Predictions (b_η = 0 on n; fixed arm b_η(w) = 0, μP arm −1):

  ====================  ============================  ============================
  slope                 τ_epoch constant (W&A)        λ constant (per weight)
  ====================  ============================  ============================
  b_λ(n), both arms     −1                            0
  b_τ(n), both arms     0                             −1
  b_λ(w), fixed         0                             0
  b_τ(w), fixed         0                             0   (the arm cannot tell them apart)
  b_λ(w), μP            +1                            0
  b_τ(w), μP            0                             +1
  ====================  ============================  ============================

"τ's slope is nearer 0 than λ's" is therefore a statement about b_λ alone: with h the τ-constant
prediction of b_λ (−1 − b_η(n) on size, −b_η(w) on width) and 0 the λ-constant one, it holds
exactly when the share of the way from λ-constant to τ-constant, t = b_λ / h, exceeds 1/2
(for either sign of h). The claims read t − 1/2 per seed and ask it to exceed a margin of 0.1
(declared here, before the tune phase): t is 1 under W&A and 0 under λ-constant. (The literal
|b_λ| − |b_τ| is a clipped function of b_λ, constant at ±|h| once b_λ passes either
prediction, so its t interval would read a saturated sample as certain; it is printed, not
tested.) The fixed arm's width slope has h = −b_η(w), near 0 when the tuned lr does not move
with width, where both hypotheses agree; its claim is that τ's slope lies within ±0.5.
"""

import os

import ml_collections
from configs.early_wd import mnist1d_run

from wd_jax.study.claims import claim, declare

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREREGISTERED = os.path.join(ROOT, "experiments", "preregistered")

WANG = (
  "Wang & Aitchison, “How to set AdamW's weight decay as you scale model and dataset size”, "
  "arXiv 2405.13698 (v3), ICML 2025"
)
TAU_CONSTANT = (
  f"{WANG}, abstract: “We find that the optimal timescale, measured in epochs, is roughly "
  "constant as we change model and dataset size.”"
)
LAMBDA_FALLS = (
  f"{WANG}, abstract: “if the optimal EMA timescale is constant, that implies that as the dataset "
  "size increases, the optimal weight decay should fall”"
)
LAMBDA_GROWS = (
  f"{WANG}, abstract: “[…] and as the model size increases, the optimal weight decay should "
  "increase (if we follow the muP recommendation for scaling the learning rate)”"
)
MARGIN = 0.1  # t − 1/2 must exceed this (t: 1 under W&A, 0 under λ-constant)


def claims(rules=("fixed", "mup")) -> ml_collections.ConfigDict:
  """The claims, declared before the tune phase runs and frozen in its pre-registration; those
  of the lr rules in `rules` (the smoke variant runs one). Measurements:
  scaling.measurement_names. ``<rule>/<axis>/nearer_zero`` is, per seed, |b_λ| − |b_τ| (slopes
  of log λ* and log τ*_epoch on log n or log w over the rule's cells)."""
  nearer = lambda arm, axis, what: claim(
    f"{arm} arm: the best timescale τ*_epoch changes less with {what} than the best λ does: the "
    f"slope of log λ* on log {what} goes more than half the way (by {MARGIN}) from the "
    "λ-constant prediction (0) to the τ-constant one (t − 1/2 > margin, t = b_λ / h).",
    TAU_CONSTANT,
    "greater",
    a=f"{arm}/{axis}/toward_tau_constant",
    margin=MARGIN,
    names=("t − 1/2", "0"),
  )
  declared = dict(
    tau_flat_in_data_fixed=nearer("fixed", "size", "training-set size"),
    tau_flat_in_data_mup=nearer("mup", "size", "training-set size"),
    tau_flat_in_width_mup=nearer("mup", "width", "width"),
    tau_flat_in_width_fixed=claim(
      "fixed arm: the slope of log τ*_epoch on log width lies within ±0.5 (nearer W&A's 0 than "
      "μP-scaled λ-constant's +1; with a fixed lr, τ's and λ's width slopes are equal and "
      "opposite by construction).",
      TAU_CONSTANT,
      "slope_within",
      measure="fixed/width/tau_points",
      low=-0.5,
      high=0.5,
    ),
    lambda_falls_with_data=claim(
      "fixed arm: the best λ falls as the training set grows (slope of log λ* on log n < 0).",
      LAMBDA_FALLS,
      "less",
      a="fixed/size/lam_slope",
      names=("b_λ(n)", "0"),
    ),
    lambda_grows_with_width_mup=claim(
      "mup arm: the best λ grows with width (slope of log λ* on log w > 0).",
      LAMBDA_GROWS,
      "greater",
      a="mup/width/lam_slope",
      names=("b_λ(w)", "0"),
    ),
    tau_identity=claim(
      "By construction: per seed, b_τ(n) + b_λ(n) + b_η(n) + 1 = 0 (τ_epoch = 1/(η λ n/B)).",
      f"the definition τ_iter = 1/(ηλ), τ_epoch = τ_iter / (iterations per epoch) ({WANG}, §2)",
      "equivalent",
      a="fixed/size/identity",
      margin=1e-6,
      kind="construction",
      names=("b_τ + b_λ + b_η + 1", "0"),
    ),
  )
  rule_of = lambda c: (c.get("a") or c.get("measure")).split("/")[0]
  return declare(**{k: c for k, c in declared.items() if rule_of(c) in rules})


def scaling_run(batch_size: int) -> ml_collections.ConfigDict:
  """The MNIST-1D plain-MLP AdamW run; each cell sets its widths, draw, steps and lr."""
  c = mnist1d_run(100)  # steps: set per cell (epochs × n / batch)
  c.model.kwargs = {"widths": (128, 128)}  # plain ReLU MLP (no normalisation); width per cell
  c.optimizer.name = "adamw"  # lr-coupled decoupled decay: θ ← θ − η_t λ θ
  c.optimizer.kwargs = {}
  c.optimizer.learning_rate = 4e-3  # peak; per cell
  c.optimizer.weight_decay = 0.0  # per cell
  c.dataset.validation_fraction = 0.5  # per cell: validation_size / (n + validation_size)
  c.batch_size = batch_size
  c.diagnostics_every = 0
  c.log_every = c.eval_every = c.checkpoint_every = None
  return c


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.phase = "confirm"  # "tune" selects and writes the pre-registration; "confirm" decides
  c.preregistration = os.path.join(PREREGISTERED, "scaling.json")
  c.strategy = "vmap"  # each cell's lr × λ × seeds as one vmapped program
  c.resamples = 200  # bootstrap resamples of the validation items (selection stability)
  c.rules = ("fixed", "mup")  # lr rules: the same lr grid at every width; grid × base/width
  c.base_width = 128  # where the μP grid equals the fixed grid
  c.confirm_steps = 3  # confirm λ grid: λ_c · 2^j, |j| ≤ this
  if variant == "default":
    c.run = scaling_run(100)
    c.sizes = (500, 1000, 2000)  # training sequences n
    c.widths = (32, 64, 128)
    c.base_width = 64
    c.epochs = 30  # passes over the n training sequences (steps = epochs · n / batch)
    c.validation_size = 2000
    lrs = (2e-3, 4e-3, 8e-3)
    taus = (4.0, 2.0, 1.0, 1 / 2, 1 / 4, 1 / 8, 1 / 16)  # τ_epoch / epochs
    tune = {"seeds": (0, 1), "dataset": {"seed": 1, "num_test": 1000}}
    confirm = {"seeds": tuple(range(100, 105)), "dataset": {"seed": 2, "num_test": 4000}}
    confirm["min_seeds"] = 5
  elif variant == "smoke":  # seconds; the tests point preregistration at a temporary file
    c.run = scaling_run(50)
    c.rules = ("fixed",)
    c.sizes = (100, 200)
    c.widths = (16, 32)
    c.base_width = 16
    c.epochs = 4
    c.validation_size = 200
    c.resamples = 50
    c.confirm_steps = 2
    lrs, taus = (4e-3, 8e-3), (1.0, 1 / 4, 1 / 16)
    tune = {"seeds": (0, 1), "dataset": {"seed": 1, "num_test": 300}}
    confirm = {"seeds": (10, 11, 12), "dataset": {"seed": 2, "num_test": 300}, "min_seeds": 3}
  else:
    raise ValueError(f"variant must be 'default' or 'smoke', got {variant!r}.")
  c.tune = ml_collections.ConfigDict({**tune, "learning_rates": lrs, "tau_over_T": taus})
  c.confirm = ml_collections.ConfigDict(confirm)
  c.claims = claims(c.rules)
  return c
