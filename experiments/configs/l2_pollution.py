"""L2 pollution of Adam's first moment: Adam+L2 vs AdamW vs the 2×2 ablation, across λ.

  python experiments/l2_pollution.py --config=experiments/configs/l2_pollution.py --workdir=runs/l2
  (append :smoke for seconds, :full for paper scale on a GPU/TPU)

Variants (colours fixed across figures, see wd_jax.study.VARIANT_COLORS):
  adam_l2     L2 gradient λθ in m and in v (torch Adam(weight_decay=λ))
  l2_m_only   λθ in m, not in v
  l2_v_only   λθ in v, not in m (added to the debiased m at the current step only)
  l2_neither  λθ in neither moment
  adamw       decoupled: θ ← θ − α_t λ θ (torch AdamW)
Default: MNIST-1D MLP (3 seeds × 4 λ; at λ = 1 every Adam+L2 variant collapses to chance, which
says nothing about where λθ enters) and a character-level Transformer on the standard library's
sources (2 seeds × 3 λ). Runtime on 2 CPU cores: see experiments/README.md.
"""

import ml_collections

from wd_jax.config import base_config
from wd_jax.study.claims import claim, declare

BJORCK = "Bjorck et al. 2021; REFERENCES §2"


def claims(tasks) -> ml_collections.ConfigDict:
  """The claims, declared before the run, for each task (measurements: see
  l2_pollution.measurement_names)."""
  out = {}
  for task in tasks:
    metric = "test_accuracy" if task == "mnist1d" else "test_loss"
    better = "greater" if task == "mnist1d" else "less"
    margin = 0.02 if task == "mnist1d" else 0.05  # accuracy points / nats per char
    out[f"{task}_share_grows"] = claim(
      f"[{task}] Under coupled L2 the λθ term takes over Adam's first moment as λ grows: the "
      "final ‖m_l2‖/(‖m_loss‖+‖m_l2‖) is larger at the largest λ than at the smallest.",
      BJORCK,
      "greater",
      a=f"{task}/adam_l2/l2_share@max_wd",
      b=f"{task}/adam_l2/l2_share@min_wd",
    )
    out[f"{task}_first_moment_is_the_harm"] = claim(
      f"[{task}] Keeping λθ out of the first moment removes the harm of coupled L2: at the "
      "largest λ, λθ in v only ends better than λθ in m and v.",
      BJORCK,
      better,
      a=f"{task}/l2_v_only/{metric}@max_wd",
      b=f"{task}/adam_l2/{metric}@max_wd",
    )
    out[f"{task}_adaptivity_is_not_the_harm"] = claim(
      f"[{task}] Adaptivity is not the harm: taking λθ out of v alone does not rescue Adam+L2 "
      f"(at the largest λ, λθ in m only ≈ Adam+L2 within {margin:g}).",
      BJORCK,
      "equivalent",
      a=f"{task}/l2_m_only/{metric}@max_wd",
      b=f"{task}/adam_l2/{metric}@max_wd",
      margin=margin,
    )
    out[f"{task}_adamw_beats_tuned"] = claim(
      f"[{task}] With λ tuned for each (on validation), AdamW ends better than Adam+L2 on test.",
      "Loshchilov & Hutter 2019; REFERENCES §2",
      better,
      a=f"{task}/adamw/{metric}@tuned",
      b=f"{task}/adam_l2/{metric}@tuned",
    )
  return declare(**out)


def _mnist1d(steps: int) -> ml_collections.ConfigDict:
  c = base_config()
  c.dataset.name = "mnist1d"
  c.model.name = "mlp"
  c.model.kwargs = {"widths": (128, 128)}
  c.optimizer.learning_rate = 3e-3  # peak; 5% warmup then cosine
  c.optimizer.mask = "default"  # biases undecayed in every variant
  c.steps = steps
  c.batch_size = 128
  c.log_every = c.diagnostics_every = max(steps // 20, 1)
  c.eval_every = c.checkpoint_every = steps
  c.per_leaf_diagnostics = False
  c.dataset.validation_fraction = 0.1  # λ is selected on it; the test split is read once
  return c


def _char_lm(steps: int, d_model: int, layers: int, seq_len: int) -> ml_collections.ConfigDict:
  c = base_config()
  c.dataset.name = "char_corpus"
  c.dataset.kwargs = {"seq_len": seq_len, "max_chars": 400_000}
  c.model.name = "transformer"
  c.model.kwargs = {"d_model": d_model, "num_heads": 4, "num_layers": layers}
  c.optimizer.learning_rate = 3e-3
  c.optimizer.mask = "default"
  c.steps = steps
  c.batch_size = 32
  c.eval_batch_size = 64
  c.log_every = c.diagnostics_every = max(steps // 20, 1)
  c.eval_every = c.checkpoint_every = steps
  c.per_leaf_diagnostics = False
  c.dataset.validation_fraction = 0.1  # the tail of the training stream
  return c


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.variants = ("adam_l2", "l2_m_only", "l2_v_only", "l2_neither", "adamw")
  c.strategy = "vmap"  # wd_jax.sweep strategy for the λ × seed grid of each variant
  c.tasks = ml_collections.ConfigDict()
  if variant == "default":
    c.tasks.mnist1d = ml_collections.ConfigDict(
      {"run": _mnist1d(1500), "weight_decays": (1e-4, 1e-3, 1e-2, 1e-1), "seeds": (0, 1, 2)}
    )
    c.tasks.char_lm = ml_collections.ConfigDict(
      {"run": _char_lm(300, 64, 1, 32), "weight_decays": (1e-3, 1e-2, 1e-1), "seeds": (0, 1)}
    )
  elif variant == "smoke":
    c.tasks.mnist1d = ml_collections.ConfigDict(
      {"run": _mnist1d(40), "weight_decays": (1e-3, 1e-1), "seeds": (0, 1)}
    )
    c.tasks.char_lm = ml_collections.ConfigDict(
      {"run": _char_lm(10, 32, 1, 32), "weight_decays": (1e-2, 1e-1), "seeds": (0,)}
    )
  elif variant == "full":  # paper-scale lengths; for a GPU/TPU
    c.tasks.mnist1d = ml_collections.ConfigDict(
      {
        "run": _mnist1d(20_000),
        "weight_decays": (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 3.0),
        "seeds": (0, 1, 2, 3, 4),
      }
    )
    c.tasks.char_lm = ml_collections.ConfigDict(
      {
        "run": _char_lm(20_000, 256, 4, 128),
        "weight_decays": (1e-3, 1e-2, 1e-1, 1.0),
        "seeds": (0, 1, 2),
      }
    )
  else:
    raise ValueError(f"variant must be 'default', 'smoke' or 'full', got {variant!r}.")
  c.claims = claims(c.tasks.keys())
  return c
