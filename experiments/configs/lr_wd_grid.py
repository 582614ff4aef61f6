"""lr × λ heat maps (Loshchilov & Hutter 2019, Fig. 2) and the slope of best log λ on log lr.

  python experiments/lr_wd_grid.py --config=experiments/configs/lr_wd_grid.py --workdir=runs/grid
  (append :smoke for seconds, :full for paper scale on a GPU/TPU)

Variants (colours fixed across figures, see wd_jax.study.VARIANT_COLORS):
  adam_l2         coupled L2 through Adam (torch Adam(weight_decay=λ)); λ in "g + λθ"
  adamw           decoupled, θ ← θ − α_t λ θ (torch AdamW, optax.adamw); λ per unit lr
  adamw_schedule  decoupled, θ ← θ − (α_t/α) λ θ (L&H Alg. 2, Composer); λ per step at peak
  sgd_l2          coupled L2 through heavy-ball momentum 0.9 (torch SGD(weight_decay=λ))
  sgdw            decoupled, θ ← θ − (α_t/α) λ θ, momentum 0.9 (L&H's SGDW)
Each variant has its own lr and λ grids (log-spaced, lr ×2 steps, λ half-decade steps): the lrs
end at the best lr of a wider pilot grid (1000 steps, 2 seeds; higher lrs lose accuracy or
diverge) and the λs run from no visible effect to past the cliff where the decay kills training.
Task: MNIST-1D, MLP 40→128→128→10, batch 128, 5% warmup then cosine to 0.
The best λ at each lr is read on a validation split (10% of the training data); the test split
is read once, for the (lr, λ) each optimizer selects on it.
Default: 4 lr × 5 λ (SGDW: 6 λ) × 4 seeds per optimizer, 1000 steps (416 runs); the runtime and
the measured slopes are in experiments/README.md.
"""

import itertools

import ml_collections

from wd_jax.config import base_config
from wd_jax.study.claims import claim, declare

LH = "Loshchilov & Hutter 2019, Fig. 2; REFERENCES §1–2"
LABELS = {
  "adam_l2": "Adam+L2",
  "adamw": 'AdamW, "lr" coupling',
  "adamw_schedule": 'AdamW, "schedule" coupling',
  "sgd_l2": "SGD+L2 (momentum 0.9)",
  "sgdw": 'SGDW, "schedule" coupling',
}
# The slope d log λ* / d log α each coupling predicts (the reading of L&H's Fig. 2), and why.
PREDICTED_SLOPE = {
  "adam_l2": -1.0,
  "adamw": -1.0,
  "adamw_schedule": 0.0,
  "sgd_l2": -1.0,
  "sgdw": 0.0,
}
REASONS = {
  "adam_l2": (
    "the L2 gradient λθ is scaled by α_t after Adam divides it by √v̂: while the loss gradient "
    "dominates v̂, one step shrinks θ by ≈ α_t λ/√v̂, so only α·λ matters (slope −1); where λθ "
    "dominates v̂ the step becomes ≈ α_t·sign(θ) and the fixed point of loss + λ‖θ‖²/2 does not "
    "involve α (slope → 0). L&H's Fig. 2 shows the coupled, diagonal basin: predicted −1, "
    "possibly pulled towards 0"
  ),
  "adamw": (
    "one step shrinks θ by α_t λ: the product α·λ sets the decay, so the best λ ∝ 1/α. This is "
    "the schedule coupling re-indexed (λ_lr = λ_schedule/α), so its slope is the schedule "
    "coupling's minus 1"
  ),
  "adamw_schedule": (
    "one step shrinks θ by (α_t/α) λ, which does not involve the base lr α: if the decay acts "
    "through its own strength, the best λ does not depend on α (L&H's separable basin)"
  ),
  "sgd_l2": (
    "λθ is added to the gradient, accumulated by momentum and multiplied by α_t: one step shrinks "
    "θ by ≈ α_t λ/(1 − μ), so only α·λ matters (L&H's diagonal basin for SGD)"
  ),
  "sgdw": (
    "L&H's SGDW: one step shrinks θ by (α_t/α) λ, independent of α, so the best λ should not move "
    "(their separable basin)"
  ),
}
SLOPE_RANGE = 0.5  # a slope claim holds when the slope's interval lies within the prediction ± 0.5
REINDEX_RANGE = 0.25  # the re-indexing check: slope(lr) − slope(schedule) within −1 ± 0.25


def claims(variants, metric: str = "val_accuracy") -> ml_collections.ConfigDict:
  """The claims, declared before the run (measurements: see lr_wd_grid.measurement_names).

  One per optimizer (the slope of the best log λ on log α, best λ read on `metric`, lies within
  `SLOPE_RANGE` of its prediction), and the re-indexing check when both AdamW couplings run."""
  out = {}
  for v in variants:
    p = PREDICTED_SLOPE[v]
    out[f"{v}_slope"] = claim(
      f"[{LABELS[v]}] best λ ∝ α^({p:+g}): {REASONS[v]}.",
      LH,
      "slope_within",
      measure=f"{v}/best_log_wd@{metric}",
      low=p - SLOPE_RANGE,
      high=p + SLOPE_RANGE,
    )
  if {"adamw", "adamw_schedule"} <= set(variants):
    out["reindexed_couplings"] = claim(
      "[AdamW] The two couplings are one family re-indexed (λ_lr = λ_schedule/α), so the "
      "lr-coupled slope is the schedule-coupled slope minus 1: per seed, the slope of "
      "best log λ_lr − best log λ_schedule on log α is −1 (a check of the measurement).",
      "REFERENCES §1 (algebra)",
      "slope_within",
      measure=f"adamw-adamw_schedule/best_log_wd@{metric}",
      low=-1.0 - REINDEX_RANGE,
      high=-1.0 + REINDEX_RANGE,
      kind="construction",
    )
  return declare(**out)


def _run(steps: int) -> ml_collections.ConfigDict:
  c = base_config()
  c.dataset.name = "mnist1d"
  c.model.name = "mlp"
  c.model.kwargs = {"widths": (128, 128)}
  c.optimizer.learning_rate = 1e-3  # replaced by each grid point (the schedule's peak)
  c.optimizer.lr_schedule = "warmup_cosine"
  c.optimizer.warmup_fraction = 0.05  # of all steps
  c.optimizer.mask = "default"  # kernels decayed, biases not, in every variant
  c.steps = steps
  c.batch_size = 128
  c.log_every = c.diagnostics_every = max(steps // 10, 1)
  c.eval_every = c.checkpoint_every = steps
  c.per_leaf_diagnostics = False
  c.dataset.validation_fraction = 0.1  # best λ is read on it; the test split is read once
  return c


def _grid(lrs, wds) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({"learning_rates": tuple(lrs), "weight_decays": tuple(wds)})


# Peak lr (per step) and λ grids per variant; λ's unit is what multiplies it (module docstring).
DEFAULT_GRIDS = {
  "adam_l2": ((4e-3, 8e-3, 1.6e-2, 3.2e-2), (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)),
  "adamw": ((4e-3, 8e-3, 1.6e-2, 3.2e-2), (0.03, 0.1, 0.3, 1.0, 3.0)),
  "adamw_schedule": ((4e-3, 8e-3, 1.6e-2, 3.2e-2), (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)),
  "sgd_l2": ((0.05, 0.1, 0.2, 0.4), (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)),
  # SGDW's grid starts half a decade lower than the others: with 3e-4 as the lower edge the best
  # λ sat on it in 4 of 16 (seed, lr) cells. From 1e-4, at α = 0.05 it is still on the edge in
  # 3 of 4 seeds (any decay hurts there within 1000 steps), so the SGDW slope is a lower bound.
  "sgdw": ((0.05, 0.1, 0.2, 0.4), (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)),
}


def _refine(values) -> tuple[float, ...]:
  """The grid with the geometric midpoint inserted between neighbours (twice as fine in log)."""
  out = [values[0]]
  for a, b in itertools.pairwise(values):
    out += [float(f"{(a * b) ** 0.5:.3g}"), b]
  return tuple(out)


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.strategy = "vmap"  # wd_jax.sweep strategy: each optimizer's grid is one compiled program
  # What "best λ" maximises (val_loss is minimised), what selects the (lr, λ) whose test split is
  # read, and what the heat maps show; the slopes on the other validation metric are reported
  # beside the claimed ones, without a verdict.
  c.metric = "val_accuracy"
  c.variants = ml_collections.ConfigDict()
  if variant == "default":
    c.run = _run(1000)
    c.seeds = (0, 1, 2, 3)
    for name, (lrs, wds) in DEFAULT_GRIDS.items():
      c.variants[name] = _grid(lrs, wds)
  elif variant == "smoke":
    c.run = _run(30)
    c.run.diagnostics_every = 0  # one compiled step per optimizer instead of two
    c.seeds = (0, 1)
    for name in ("adam_l2", "adamw", "adamw_schedule"):  # each optimizer is one compile
      lrs, wds = DEFAULT_GRIDS[name]
      c.variants[name] = _grid(lrs[::2], wds[1:4])
  elif variant == "full":  # paper-like lengths and finer grids; for a GPU/TPU
    c.run = _run(20_000)
    c.seeds = (0, 1, 2, 3, 4)
    for name, (lrs, wds) in DEFAULT_GRIDS.items():
      c.variants[name] = _grid(_refine(lrs), _refine(wds))
  else:
    raise ValueError(f"variant must be 'default', 'smoke' or 'full', got {variant!r}.")
  c.claims = claims(c.variants.keys(), c.metric)
  return c
