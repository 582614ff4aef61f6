"""Ridge: L2 as ridge regression / Gaussian-prior MAP, and where AdamW lands instead.

  python experiments/ridge.py --config=experiments/configs/ridge.py --workdir=runs/ridge
  (append :smoke for seconds, :full for a longer, larger problem)

Synthetic linear regression (`wd_jax.engine.data.linear_regression`: x ~ N(0, I_d), y = x·w* +
noise),
a bias-free linear model in float64, loss ½‖Xθ − y‖²/n (the engine's regression loss), full-batch
gradients, trained by `wd_jax.engine.sweep.run_sweep` through the one training loop. Optimizers
(colours
fixed across figures): sgd_l2 and adam_l2 (coupled L2: their fixed point is ∇loss + λθ = 0, the
ridge solution θ*(λ) = (XᵀX/n + λI)⁻¹Xᵀy/n) and adamw (decoupled, lr-coupled:
θ ← θ − α_t λθ − α_t u). Each seed is a different data set and initial θ ~ N(0, I/d).
Expected (default, 3 seeds): sgd_l2 and adam_l2 end within ~1e-15 of θ*(λ) (largest 1.4e-15);
AdamW ends 0.008 / 0.08 / 0.4 away from θ*(λ) at λ = 0.01 / 0.1 / 1, closest to the ridge
solution of a ~30-60× smaller λ'; ∇(−log posterior) at θ* is ~1e-15 of its scale under the
N(0, 1/(nλ)) prior. About 11-15 s on 2 busy CPU cores: 9 programs (seed × optimizer, each
vmapped over λ) are compiled and their 3000 steps dispatched one at a time.
"""

import ml_collections

from wd_jax.study.claims import claim, declare

RIDGE = "REFERENCES §5 (L2 = ridge); Hoerl & Kennard 1970"


def claims() -> ml_collections.ConfigDict:
  """The claims, declared before the run (measurements: see ridge.measurement_names)."""
  return declare(
    sgd_l2_reaches_ridge=claim(
      "Full-batch SGD + L2 with a decaying lr ends at the ridge solution θ*(λ) (its fixed point "
      "is ∇loss + λθ = 0, and gradient descent with α < 2/L converges on a strongly convex "
      "quadratic): the largest ‖θ − θ*(λ)‖₂ over λ is within 1e-10 of 0 in float64.",
      RIDGE,
      "equivalent",
      a="sgd_l2/max_distance",
      margin=1e-10,
      kind="construction",
    ),
    adam_l2_reaches_ridge=claim(
      "Full-batch Adam + L2 with a decaying lr ends at the ridge solution θ*(λ) (the "
      "preconditioner changes the path, not the fixed point ∇loss + λθ = 0; that Adam reaches "
      "it is not guaranteed): the largest ‖θ − θ*(λ)‖₂ over λ is within 1e-5 of 0.",
      RIDGE,
      "equivalent",
      a="adam_l2/max_distance",
      margin=1e-5,
    ),
    adamw_misses_ridge=claim(
      "AdamW's decay is not L2 regularisation: AdamW does not minimise the ridge objective "
      "(the smallest ‖θ − θ*(λ)‖₂ over λ exceeds 1e-3).",
      "Loshchilov & Hutter 2019; REFERENCES §1–2",
      "greater",
      a="adamw/min_distance",
      margin=1e-3,
    ),
    ridge_is_map=claim(
      "Ridge with λ on the mean loss is the MAP estimate under a N(0, 1/(nλ)) prior per weight "
      "(unit-variance Gaussian likelihood): the closed form θ*(λ) zeroes the gradient of the "
      "negative log posterior (the largest relative norm over λ is within 1e-10 of 0), which is "
      "convex, so θ* maximises it.",
      "REFERENCES §5",
      "equivalent",
      a="closed_form/max_map_grad_rel",
      margin=1e-10,
      kind="construction",
    ),
  )


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.data = ml_collections.ConfigDict(
    {"num_examples": 256, "dim": 16, "noise": 0.1}  # n, d, label-noise std
  )
  c.optimizers = ("sgd_l2", "adam_l2", "adamw")
  # Peak lr of a cosine decay to 0 over `steps` (full-batch steps). SGD: below 2/L, L ≈ 1.6 + λ.
  c.learning_rates = ml_collections.ConfigDict({"sgd_l2": 0.5, "adam_l2": 1e-2, "adamw": 1e-2})
  c.ridge_path = ml_collections.ConfigDict({"min": 1e-8, "max": 1e2, "num": 401})  # λ' grid
  c.strategy = "vmap"  # wd_jax.engine.sweep strategy: each optimizer's λ grid one vmapped program
  if variant == "default":
    c.steps = 3000
    c.log_every = 50  # steps between logged training losses (the convergence figure)
    c.weight_decays = (1e-2, 1e-1, 1.0)  # λ of the mean loss
    c.seeds = (0, 1, 2)
  elif variant == "smoke":
    c.steps = 400
    c.log_every = 10
    c.weight_decays = (1e-1, 1.0)
    c.seeds = (0, 1)
    c.learning_rates.adam_l2 = c.learning_rates.adamw = 3e-2
  elif variant == "full":
    c.data.num_examples, c.data.dim = 4096, 256
    c.steps = 20_000
    c.log_every = 200
    c.weight_decays = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
    c.seeds = (0, 1, 2, 3, 4)
    c.learning_rates.sgd_l2 = 0.1  # L ≈ (1 + √(d/n))² + λ reaches 11 at λ = 10
  else:
    raise ValueError(f"variant must be 'default', 'smoke' or 'full', got {variant!r}.")
  c.claims = claims()
  return c
