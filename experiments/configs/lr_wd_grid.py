"""lr × strength grids (Loshchilov & Hutter 2019, Fig. 2) as a factorial: does the best λ move with
the learning rate, and does normalisation decide how?

  python experiments/lr_wd_grid.py --config=experiments/configs/lr_wd_grid.py --workdir=runs/grid
  (append :smoke for seconds, :full for paper scale on a GPU/TPU)

Factors: model {mlp: 40→128→128→10 ReLU MLP, no normalisation; mlp_ln: the same with every hidden
layer bias-free Linear → LayerNorm, so its hidden kernels are scale-invariant} × optimizer
{Adam+L2, AdamW, SGD+L2 (momentum 0.9), SGDW (momentum 0.9, "schedule" coupling)}. AdamW's two
couplings are one run set: at a strength τ/T, "lr" (θ ← θ − α_t λ θ) and "schedule"
(θ ← θ − (α_t/α) λ θ) are the same update with λ_lr = λ_schedule/α, so the grid of AdamW is read
in both units. Strength is gridded as τ/T, the decay's timescale over the run
(wd_jax.study.strength), at 6 learning rates a factor 2 apart (32×), straddling each optimizer's
optimum (pilot: runs/lr_wd_grid pilot, see experiments/README.md). λ is each optimizer's own.
Per model, optimizer and seed, the ridge of the best λ is fitted as a 2-D quadratic of the
validation accuracy in (log α, log λ) over the upper half of the grid; its slope d log λ*/d log α
is the measurement, decided per cell against the prediction its mechanism makes (REASONS).
"""

import itertools

import ml_collections

from wd_jax.engine.config import base_config
from wd_jax.study.claims import claim, declare

LH = "Loshchilov & Hutter 2019, Fig. 2; REFERENCES §1–2"
LABELS = {
  "adam_l2": "Adam+L2",
  "adamw": 'AdamW, "lr" coupling',
  "adamw_schedule": 'AdamW, "schedule" coupling',
  "sgd_l2": "SGD+L2 (momentum 0.9)",
  "sgdw": 'SGDW, "schedule" coupling',
}
# The views of the runs: (run set, λ unit). adamw_schedule reads AdamW's runs with
# λ_schedule = α·λ_lr.
VIEWS = {
  "adam_l2": "adam_l2",
  "adamw": "adamw",
  "adamw_schedule": "adamw",
  "sgd_l2": "sgd_l2",
  "sgdw": "sgdw",
}
MODELS = {
  "mlp": "ReLU MLP, no normalisation",
  "mlp_ln": "bias-free Linear → LayerNorm MLP (scale-invariant hidden kernels)",
}
# The slope d log λ* / d log α each cell predicts, and the mechanism that predicts it.
# With normalisation (mlp_ln), a hidden kernel's function is its direction alone, which moves
# by the angular update √(2·s·…) at equilibrium with s the per-step shrink (REFERENCES §4):
# only s matters, so λ_lr ∝ 1/α (s = α·λ_lr; also SGD+L2's and, while the loss dominates v,
# Adam+L2's), and λ_schedule = s is free of α: L&H's Fig. 2 reading. Without normalisation
# the weights' scale matters too: AdamW's weights are (1/λ_lr) times an average of bounded
# updates, so λ_lr alone sets their size, and coupled L2 drives θ to the minimiser of
# loss + λ‖θ‖²/2, which does not involve α: then the L2 and lr-coupled λ* stay still (0) and
# the schedule-coupled one follows α (+1).
PREDICTED_SLOPE = {
  "mlp_ln": {"adam_l2": -1.0, "adamw": -1.0, "adamw_schedule": 0.0, "sgd_l2": -1.0, "sgdw": 0.0},
  "mlp": {"adam_l2": 0.0, "adamw": 0.0, "adamw_schedule": 1.0, "sgd_l2": 0.0, "sgdw": 1.0},
}
REASONS = {
  "mlp_ln": "rotational equilibrium of the scale-invariant kernels: only the per-step shrink "
  "matters (L&H's Fig. 2 reading)",
  "mlp": "no normalisation: the weights' scale is set by λ (decoupled, λ_lr) or by the "
  "regularised minimiser (L2), neither of which involves α",
}
SLOPE_RANGE = 0.5  # a slope claim holds when the slope's interval lies within prediction ± 0.5


def claims(models, views) -> ml_collections.ConfigDict:
  """The claims, declared before the run (measurements: see lr_wd_grid.measurement_names): per
  model and optimizer, the ridge slope lies within `SLOPE_RANGE` of its cell's prediction."""
  out = {}
  for m in models:
    for v in views:
      p = PREDICTED_SLOPE[m][v]
      out[f"{m}_{v}_ridge"] = claim(
        f"[{m}, {LABELS[v]}] best λ ∝ α^({p:+g}) along the ridge of validation accuracy: "
        f"{REASONS[m]}.",
        LH if m == "mlp_ln" else "the weight-scale hypothesis (this study's footer)",
        "equivalent",
        a=f"{m}/{v}/ridge_slope_minus_prediction",
        margin=SLOPE_RANGE,
      )
  return declare(**out)


def _run(steps: int, model_kwargs) -> ml_collections.ConfigDict:
  c = base_config()
  c.dataset.name = "mnist1d"
  c.model.name = "mlp"
  c.model.kwargs = dict(model_kwargs)
  c.optimizer.learning_rate = 1e-3  # replaced by each grid point (the schedule's peak)
  c.optimizer.lr_schedule = "warmup_cosine"
  c.optimizer.warmup_fraction = 0.05  # of all steps
  c.optimizer.mask = "default"  # kernels decayed, biases and norm scales not, in every variant
  c.steps = steps
  c.batch_size = 128
  c.log_every = c.diagnostics_every = max(steps // 10, 1)
  c.eval_every = c.checkpoint_every = steps
  c.per_leaf_diagnostics = False
  c.dataset.validation_fraction = 0.1  # best λ is read on it; the test split is read once
  return c


MODEL_KWARGS = {"mlp": {"widths": (128, 128)}, "mlp_ln": {"widths": (128, 128), "norm": "layer"}}
# Peak lrs per run set: 6 values a factor 2 apart (32×), straddling the optimum.
ADAM_LRS = (2.5e-3, 5e-3, 1e-2, 2e-2, 4e-2, 8e-2)
SGD_LRS = (0.025, 0.05, 0.1, 0.2, 0.4, 0.8)
DEFAULT_LRS = {"adam_l2": ADAM_LRS, "adamw": ADAM_LRS, "sgd_l2": SGD_LRS, "sgdw": SGD_LRS}
# τ/T: 4 barely decays within the run, 1/16 decays sixteen times over.
DEFAULT_TAUS = (4.0, 1.0, 0.25, 0.0625)


def _refine(values) -> tuple[float, ...]:
  """The grid with the geometric midpoint inserted between neighbours (twice as fine in log)."""
  out = [values[0]]
  for a, b in itertools.pairwise(values):
    out += [float(f"{(a * b) ** 0.5:.3g}"), b]
  return tuple(out)


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.strategy = "vmap"  # wd_jax.engine.sweep strategy: each run set's grid is one compiled program
  # What the ridge is fitted to and what selects the (lr, λ) whose test split is read.
  c.metric = "val_accuracy"
  c.views = tuple(VIEWS)
  c.models = ml_collections.ConfigDict()
  if variant == "default":
    steps, seeds, taus, lrs = 600, (0, 1, 2, 3, 4), DEFAULT_TAUS, DEFAULT_LRS
  elif variant == "smoke":
    steps, seeds, taus = 30, (0, 1), (4.0, 1.0)
    lrs = {k: v[2::2] for k, v in DEFAULT_LRS.items()}  # 2 lrs
    c.views = ("adam_l2", "adamw", "adamw_schedule")  # two run sets per model: tests stay fast
  elif variant == "full":  # paper-like lengths and finer grids; for a GPU/TPU
    steps, seeds = 20_000, tuple(range(10))
    taus, lrs = _refine(DEFAULT_TAUS), {k: _refine(v) for k, v in DEFAULT_LRS.items()}
  else:
    raise ValueError(f"variant must be 'default', 'smoke' or 'full', got {variant!r}.")
  c.seeds = seeds
  c.tau_over_T = taus
  c.learning_rates = ml_collections.ConfigDict({k: tuple(v) for k, v in lrs.items()})
  for m, kwargs in MODEL_KWARGS.items():
    c.models[m] = _run(steps, kwargs)
  if variant == "smoke":
    for m in c.models:
      c.models[m].diagnostics_every = 0  # one compiled step per run set instead of two
  c.claims = claims(c.models.keys(), c.views)
  return c
