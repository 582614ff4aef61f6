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
Default: 4 lr × 5 λ (SGDW: 6 λ) × 4 seeds per optimizer, 1000 steps (416 runs); the runtime and
the measured slopes are in experiments/README.md.
"""

import itertools

import ml_collections

from wd_jax.config import base_config


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
  c.metric = "test_accuracy"  # what "best λ" maximises (test_loss is minimised)
  c.secondary_metric = "test_loss"  # its slopes are reported too, without a verdict ("" = none)
  c.level = 0.95  # confidence level of the slope's t interval over seeds
  c.equivalence = 0.5  # supported: the slope's CI lies within ±0.5 of the prediction
  c.tolerance = 0.25  # not supported: the CI misses the prediction by more than 0.25
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
  return c
