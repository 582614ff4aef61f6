"""L2 pollution of Adam's first moment, in two phases: tune (pre-register), then confirm.

  python experiments/l2_pollution.py --config=experiments/configs/l2_pollution.py \
      --config.phase=tune --workdir=runs/l2-tune     # writes experiments/preregistered/...
  python experiments/l2_pollution.py --config=experiments/configs/l2_pollution.py \
      --workdir=runs/l2                              # confirm (the main job, scripts/main.sh)
  (:replicate confirms again on other seeds and another data draw; :char_lm is the second
  task, a character-level Transformer; :smoke runs in seconds)

Arms (colours fixed across figures, see wd_jax.study.VARIANT_COLORS):
  adam        plain Adam (λ = 0), tuned over the learning rate only
  adam_l2     L2 gradient λθ in m and in v (torch Adam(weight_decay=λ))
  l2_m_only   λθ in m, not in v (the denominator is max(√v̂, |λθ|) where v never saw λθ)
  l2_v_only   λθ in v, not in m (added to the debiased m at the current step only)
  l2_neither  λθ in neither moment
  adams       stable weight decay: λθ divided by one global √v̄ (AdamS)
  adamw       decoupled: θ ← θ − α_t λ θ (torch AdamW)
Strength is τ/T, the decay's timescale over the run (wd_jax.study.strength), on a grid a
factor 2 apart from 4 (barely decays within the run) to 1/64 (decays 64 times over), plus
λ = 0; the learning rates are a factor 2 apart around the pilots' optimum (0.02-0.04). Every
arm is tuned over the same lr × strength grid on a tuning data draw; the confirm phase runs the
pre-registered cells on 20 fresh seeds and a fresh draw with 4,000 validation and 20,000 test
sequences. Runtimes on 2 CPU cores: experiments/README.md.
"""

import glob
import os

import ml_collections

from wd_jax.engine.config import base_config
from wd_jax.study.claims import claim, declare

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREREGISTERED = os.path.join(ROOT, "experiments", "preregistered")
ARMS = ("adam", "adam_l2", "adamw", "l2_m_only", "l2_v_only", "l2_neither", "adams")
DECAYS = ARMS[1:]

LH = (
  "Loshchilov & Hutter 2019 (REFERENCES §2): AdamW “improved test error by ~15% relative over "
  "Adam+L2 (CIFAR-10, ImageNet32x32)”"
)
BJORCK = (
  "Bjorck, Weinberger & Gomes 2021, abstract (REFERENCES §2, §8): decoupled weight decay's main "
  "benefit is keeping the L2 gradient out of Adam's first-moment buffer; “adaptivity itself is "
  "not problematic”"
)
XIE = (
  "Xie et al. 2023 (REFERENCES §2): CIFAR-10 ResNet-18 test error “AdamS 4.91%, AdamW 5.08%, "
  "Adam 6.53%”"
)
SOURCE = {
  "adam_l2": LH,
  "adamw": LH,
  "adams": XIE,
  "l2_m_only": BJORCK,
  "l2_v_only": BJORCK,
  "l2_neither": BJORCK,
}
NAMES = {
  "adam": "Adam",
  "adam_l2": "Adam+L2",
  "adamw": "AdamW",
  "adams": "AdamS",
  "l2_m_only": "λθ in m only",
  "l2_v_only": "λθ in v only",
  "l2_neither": "λθ in neither",
}


def claims(task: str, arms=ARMS) -> ml_collections.ConfigDict:
  """The task's claims, declared before the tune phase runs and frozen in its pre-registration;
  only those whose arms are among `arms`. Measurements: l2_pollution.measurement_names."""
  acc = task == "mnist1d"
  metric = "test_accuracy" if acc else "test_loss"
  better = "greater" if acc else "less"
  gap = 0.01 if acc else 0.02  # the practical margin: one accuracy point / 0.02 nats per char
  unit = "accuracy" if acc else "loss (nats/char)"
  m = lambda arm, what=metric: f"{task}/{arm}/{what}"
  out = {}
  for arm in DECAYS:
    out[f"{arm}_beats_adam"] = claim(
      f"[{task}] Tuned {NAMES[arm]} ends better on test {unit} than tuned plain Adam (λ = 0).",
      SOURCE[arm],
      better,
      a=m(arm),
      b=m("adam"),
      names=(NAMES[arm], "Adam"),
    )
  tuned = f"[{task}] Each tuned on validation over lr × strength"
  out["adamw_beats_adam_l2"] = claim(
    f"{tuned}, AdamW ends better than Adam+L2 on test {unit} by more than {gap:g}.",
    LH,
    better,
    a=m("adamw"),
    b=m("adam_l2"),
    margin=gap,
    names=("AdamW", "Adam+L2"),
  )
  out["adamw_ties_adam_l2"] = claim(
    f"{tuned}, AdamW and Adam+L2 end within {gap:g} of each other on test {unit}.",
    "the tie this study's re-runs on fresh seeds found (+0.010 [−0.006, +0.026], +0.003 "
    "[−0.015, +0.022] with each optimizer over its own λ grid)",
    "equivalent",
    a=m("adamw"),
    b=m("adam_l2"),
    margin=gap,
    names=("AdamW", "Adam+L2"),
  )
  out["first_moment_is_the_harm"] = claim(
    f"[{task}] Bjorck's contrast at matched strength (Adam+L2's tuned lr and τ/T): λθ kept out "
    "of m (in v only) ends better than λθ kept out of v (in m only).",
    BJORCK,
    better,
    a=m("l2_v_only@matched"),
    b=m("l2_m_only@matched"),
    names=("v only", "m only"),
  )
  out["first_moment_is_the_harm_tuned"] = claim(
    f"[{task}] Bjorck's contrast, each arm tuned: λθ in v only ends better than λθ in m only.",
    BJORCK,
    better,
    a=m("l2_v_only"),
    b=m("l2_m_only"),
    names=("v only", "m only"),
  )
  out["l2_turns_the_step_where_it_acts"] = claim(
    f"[{task}] Where the decay acts (the steps with α_t ≥ α/2), at matched strength (Adam+L2's "
    "tuned lr and τ/T), coupled L2 turns Adam's step further from the loss-only step than "
    "decoupled decay turns AdamW's: 1 − cos(step, loss-only step) is larger for Adam+L2.",
    BJORCK,
    "greater",
    a=m("adam_l2@matched", "step_turn@active"),
    b=m("adamw@matched", "step_turn@active"),
    names=("Adam+L2", "AdamW"),
  )
  out["turn_predicts_harm"] = claim(
    f"[{task}] Across strengths (Adam+L2's tuned τ/T × 4, × 1, ÷ 4 at its tuned lr), the more "
    "λθ turns Adam+L2's step (1 − cos, α_t ≥ α/2), the more λθ in m costs: the slope of "
    f"({NAMES['l2_v_only']} − Adam+L2) test {unit} on Adam+L2's turn is positive.",
    BJORCK,
    "greater",
    a=f"{task}/turn_predicts_harm",
    names=("slope of harm on turn", ""),
  )
  out["v_only_first_moment_is_the_loss"] = claim(
    f"[{task}] With λθ kept out of m, m is the loss's own: the turn of the first moment's step "
    "is 0 (|1 − cos| < 1e-6). True by construction; a check on the measurement.",
    "the algebra of the update (m = m_loss + m_l2, m_l2 = 0)",
    "equivalent",
    a=m("l2_v_only@matched", "step_turn@active"),
    margin=1e-6,
    names=("turn of λθ-in-v-only", ""),
    kind="construction",
  )
  if not acc:  # the Transformer runs no strength series (its confirm stays within an hour)
    return declare(**{k: c for k, c in out.items() if _arms(c) <= set(arms)})
  out["turn_grows_with_strength"] = claim(
    f"[{task}] Adam+L2's step turns further at 4× its tuned strength than at a quarter of it "
    "(α_t ≥ α/2). True by construction (λθ grows with λ); a check on the measurement.",
    "the algebra of the update",
    "greater",
    a=m("adam_l2@strong", "step_turn@active"),
    b=m("adam_l2@weak", "step_turn@active"),
    names=("turn at τ*/4", "turn at 4τ*"),
    kind="construction",
  )
  return declare(**{k: c for k, c in out.items() if _arms(c) <= set(arms)})


def _arms(c) -> set[str]:
  """The arms a claim's measurements need (the slope reads Adam+L2 and λθ-in-v-only)."""
  if c.a.endswith("turn_predicts_harm"):
    return {"adam_l2", "l2_v_only"}
  return {x.split("/")[1].split("@")[0] for x in (c.get("a"), c.get("b")) if x}


def mnist1d_run(steps: int) -> ml_collections.ConfigDict:
  """The MNIST-1D MLP run (its data draw is set per phase)."""
  c = base_config()
  c.dataset.name = "mnist1d"
  c.dataset.validation_fraction = 4000 / 7600  # 4,000 validation, 3,600 training sequences
  c.model.name = "mlp"
  c.model.kwargs = {"widths": (128, 128)}
  c.optimizer.learning_rate = 0.02  # peak (5% warmup, then cosine); tuned per arm
  c.optimizer.mask = "default"  # biases undecayed in every arm
  c.steps = steps
  c.batch_size = 128
  c.eval_batch_size = 2000
  c.log_every = c.diagnostics_every = max(steps // 20, 1)
  c.eval_every = c.checkpoint_every = steps
  c.per_leaf_diagnostics = False
  return c


def mnist1d_draw(seed: int, num_test: int) -> dict:
  """A draw of MNIST-1D: its generator seed and sizes (7,600 training sequences, 4,000 of them
  carved for validation, and `num_test` test sequences)."""
  return {"seed": seed, "num_train": 7600, "num_test": num_test}


def char_lm_run(steps: int, d_model: int, layers: int, seq_len: int) -> ml_collections.ConfigDict:
  """The character-level pre-LN Transformer (LayerNorm and embeddings: where theory expects
  coupled L2 to hurt most); its corpus draw is set per phase."""
  c = base_config()
  c.dataset.name = "char_corpus"
  c.dataset.validation_fraction = 0.2  # the tail of the training stream
  c.model.name = "transformer"
  c.model.kwargs = {"d_model": d_model, "num_heads": 4, "num_layers": layers}
  c.optimizer.learning_rate = 3e-3
  c.optimizer.mask = "default"  # matrices and embeddings decayed; LayerNorm scales and biases not
  c.steps = steps
  c.batch_size = 32
  c.eval_batch_size = 64
  c.log_every = c.diagnostics_every = max(steps // 20, 1)
  c.eval_every = c.checkpoint_every = steps
  c.per_leaf_diagnostics = False
  c.dataset.kwargs = {"seq_len": seq_len}
  return c


def char_lm_draw(part: int, max_chars: int, test_fraction: float) -> dict:
  """A draw of the corpus: every third file of the standard library's sources (sorted), from
  `part` (0, 1 or 2): the three draws share no file."""
  files = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))[part::3]
  return {"paths": tuple(files), "max_chars": max_chars, "test_fraction": test_fraction}


def _phases(c, tune_seeds, tune_draw, lrs, taus, confirm_seeds, confirm_draw, min_seeds=20):
  c.tune = ml_collections.ConfigDict(
    {"seeds": tune_seeds, "dataset": tune_draw, "learning_rates": lrs, "tau_over_T": taus}
  )
  c.confirm = ml_collections.ConfigDict(
    {"seeds": confirm_seeds, "dataset": confirm_draw, "min_seeds": min_seeds}
  )


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.phase = "confirm"  # "tune" selects and writes the pre-registration; "confirm" decides
  c.task = "mnist1d"
  c.preregistration = os.path.join(PREREGISTERED, "l2_pollution.json")
  c.arms = ARMS
  c.strategy = "vmap"  # wd_jax.engine.sweep strategy for each arm's cells × seeds
  c.resamples = 200  # bootstrap resamples of the validation items (selection stability)
  c.strength_factors = (4.0, 0.25)  # the pollution–harm slope's strengths: τ* × these, and τ*
  c.matched_fallback = 0.25  # τ/T of the matched cells if Adam+L2 selects λ = 0
  steps_grid = (4.0, 2.0, 1.0, 1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64)
  lrs = (0.005, 0.01, 0.02, 0.04, 0.08)
  confirm = tuple(range(100, 120))
  if variant in ("default", "replicate"):
    c.run = mnist1d_run(1500)
    _phases(c, (0, 1, 2), mnist1d_draw(1, 1000), lrs, steps_grid, confirm, mnist1d_draw(2, 20_000))
    if variant == "replicate":  # other seeds, another draw: the verdicts must not move
      c.confirm.seeds, c.confirm.dataset = tuple(range(200, 220)), mnist1d_draw(3, 20_000)
  elif variant == "char_lm":
    c.task = "char_lm"
    c.arms = ("adam", "adam_l2", "adamw")
    c.preregistration = os.path.join(PREREGISTERED, "l2_pollution_char_lm.json")
    c.run = char_lm_run(500, 32, 2, 32)
    _phases(
      c,
      (0, 1),
      char_lm_draw(0, 300_000, 0.1),
      (1e-3, 2e-3, 4e-3, 8e-3),
      (2.0, 1.0, 1 / 2, 1 / 4, 1 / 8, 1 / 16),
      confirm,
      char_lm_draw(1, 540_000, 0.5),  # the same 270k-char training stream, 270k test chars
    )
  elif variant == "smoke":  # seconds; the tests point preregistration at a temporary file
    c.arms = ("adam", "adam_l2", "adamw", "l2_m_only", "l2_v_only")
    c.resamples = 50
    c.run = mnist1d_run(40)
    c.run.dataset.validation_fraction = 0.5
    small = {"num_train": 400, "num_test": 600}
    _phases(
      c,
      (0, 1),
      {"seed": 1, **small},
      (0.01, 0.02),
      (16.0, 4.0),
      (10, 11, 12),
      {"seed": 2, **small},
      min_seeds=3,
    )
    c.strength_factors = (4.0,)
    c.matched_fallback = 4.0
  else:
    raise ValueError(
      f"variant must be 'default', 'replicate', 'char_lm' or 'smoke', got {variant!r}."
    )
  c.claims = claims(c.task, c.arms)
  return c
