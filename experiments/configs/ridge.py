"""Ridge: L2 as ridge regression / Gaussian-prior MAP, and where AdamW lands instead.

  python experiments/ridge.py --config=experiments/configs/ridge.py --workdir=runs/ridge
  (append :smoke for seconds, :full for a longer, larger problem)

Synthetic linear regression (`wd_jax.data.linear_regression`: x ~ N(0, I_d), y = x·w* + noise),
loss ½‖Xθ − y‖²/n, full-batch gradients, float64 throughout. Optimizers (colours fixed across
figures): sgd_l2 and adam_l2 (coupled L2: their fixed point is ∇loss + λθ = 0, the ridge
solution θ*(λ) = (XᵀX/n + λI)⁻¹Xᵀy/n) and adamw (decoupled, lr-coupled: θ ← θ − α_t λθ − α_t u).
Each seed is a different data set and initial θ ~ N(0, I/d).
Expected (default, 3 seeds, measured on 2 busy CPU cores in ~15 s): sgd_l2 and adam_l2 end within
~1e-15 of θ*(λ) (the claim's tolerance is 1e-5); AdamW ends 0.008 / 0.08 / 0.4 away from θ*(λ) at
λ = 0.01 / 0.1 / 1, closest to the ridge solution of a ~40-60× smaller λ'; ∇(−log posterior) at θ*
is ~1e-15 of its scale under the N(0, 1/(nλ)) prior.
"""

import ml_collections


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.data = ml_collections.ConfigDict(
    {"num_examples": 256, "dim": 16, "noise": 0.1}  # n, d, label-noise std
  )
  c.optimizers = ("sgd_l2", "adam_l2", "adamw")
  # Peak lr of a cosine decay to 0 over `steps` (full-batch steps). SGD: below 2/L, L ≈ 1.6 + λ.
  c.learning_rates = ml_collections.ConfigDict({"sgd_l2": 0.5, "adam_l2": 1e-2, "adamw": 1e-2})
  c.tolerance = 1e-5  # ‖θ − θ*(λ)‖₂ an optimizer must reach to count as minimising the ridge loss
  c.adamw_gap = 1e-3  # AdamW "does not minimise it" when ‖θ − θ*(λ)‖₂ stays above this (100× tol)
  c.ridge_path = ml_collections.ConfigDict({"min": 1e-8, "max": 1e2, "num": 401})  # λ' grid
  c.trace_points = 60  # log-spaced steps at which ‖θ − θ*‖ is kept in metrics.jsonl
  if variant == "default":
    c.steps = 3000
    c.weight_decays = (1e-2, 1e-1, 1.0)  # λ of the mean loss
    c.seeds = (0, 1, 2)
  elif variant == "smoke":
    c.steps = 400
    c.weight_decays = (1e-1, 1.0)
    c.seeds = (0, 1)
    c.learning_rates.adam_l2 = c.learning_rates.adamw = 3e-2
    c.trace_points = 20
  elif variant == "full":
    c.data.num_examples, c.data.dim = 4096, 256
    c.steps = 20_000
    c.weight_decays = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
    c.seeds = (0, 1, 2, 3, 4)
    c.learning_rates.sgd_l2 = 0.1  # L ≈ (1 + √(d/n))² + λ reaches 11 at λ = 10
  else:
    raise ValueError(f"variant must be 'default', 'smoke' or 'full', got {variant!r}.")
  return c
