"""Why do we need weight decay? Andriushchenko et al.'s two regimes, in two phases each.

  python experiments/why_wd.py --config=experiments/configs/why_wd.py \
      --config.phase=tune --workdir=runs/why_wd-tune    # writes experiments/preregistered/...
  python experiments/why_wd.py --config=experiments/configs/why_wd.py --workdir=runs/why_wd
  (:vision is the over-parameterised SGD part, with its own pre-registration; :smoke and
  :smoke_vision run both phases in seconds; :bf16 is the bfloat16 divergence claim, a
  documented design the engine cannot run yet: its Transformer has no dtype argument)

**LLM part** (default, task "lm"): the character-level pre-LN Transformer on the standard
library's sources, trained for about one epoch with AdamW (decoupled, λ × α_t: torch AdamW), 5%
warmup then cosine. Batches are random windows of the training stream drawn with
replacement: at step t a share 1 − exp(−t/T) of a batch's characters was held by an earlier
window (~63% at the end), so the training loss per window of steps is near the online loss,
not equal to it; the held-out loss is the clean check. Tune: λ = 0 over the lr grid and AdamW
over lr × τ/T, selected on validation loss; confirm: λ = 0 at the tuned decay's lr
(``none@matched``, the paper's comparison: same lr, ± decay), λ = 0 at its own
tuned lr, the tuned ("moderate") λ and a "large" λ (× `large_factor`, the paper's 0.1 → 0.3),
on fresh seeds and files disjoint from the tuning draw's.

**Vision part** (``:vision``): a wide ReLU MLP (256, 256) on MNIST-1D (3,600 training
sequences, interpolated within the run), multipass plain SGD (no momentum) with *coupled* L2
(torch ``SGD(weight_decay=λ)``, the paper's setting; without momentum it is the same map as
SGDW with λ × α_t, Loshchilov & Hutter Prop. 1), a large constant lr then a ×0.1 step drop at
50% of the steps. Tune: lr × τ/T plus λ = 0 on validation accuracy; confirm: the tuned decay,
λ = 0 at the same lr and λ = 0 at its own tuned lr, on fresh seeds and a fresh draw with 20,000
test sequences; the validation split is evaluated at the drop and at the end.
"""

import os

import ml_collections
from configs import l2_pollution as l2

from wd_jax.engine.config import base_config
from wd_jax.study.claims import claim, declare

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREREGISTERED = os.path.join(ROOT, "experiments", "preregistered")

ABSTRACT = (
  "Andriushchenko, D'Angelo, Varre & Flammarion, “Why do we need weight decay in modern deep "
  "learning?” (NeurIPS 2024), abstract: "
)
LM_SOURCE = ABSTRACT + (
  "“for underparameterized large language models trained with nearly online SGD, we describe "
  "how weight decay balances the bias-variance tradeoff in stochastic optimization leading to "
  "lower training loss”; the shape of the curves as REFERENCES §8 reads the paper's LLM "
  "figures: “lower training loss (typically higher before the lr decays, lower after)”"
)
VISION_SOURCE = ABSTRACT + (
  "“For overparameterized deep networks, we show how weight decay modifies the optimization "
  "dynamics enhancing the ever-present implicit regularization of SGD via the loss "
  "stabilization mechanism”; REFERENCES §8: “WD with large lr enhances SGD's implicit "
  "regularisation through loss stabilisation” (the test gain shows after the lr drop: the "
  "paper's ResNet figures, as summarised in REFERENCES §8; body wording not re-checked here)"
)
BF16_SOURCE = ABSTRACT + (
  "“we show that weight decay also prevents sudden loss divergences for bfloat16 "
  "mixed-precision training which is a crucial tool for LLM training”"
)
NEVER_REGULARIZER = ABSTRACT + (
  "“weight decay is never useful as an explicit regularizer but instead changes the training "
  "dynamics in a desirable way”"
)


def lm_claims() -> ml_collections.ConfigDict:
  """The LLM part's claims. Training loss: the mean batch loss over a window of steps, per seed
  (about one epoch: near the online loss); seeds share their batches across arms (paired)."""
  m = lambda tag, what: f"lm/{tag}/{what}"
  out = {}
  for arm in ("moderate", "large"):
    out[f"{arm}_higher_before_decay"] = claim(
      f"Before the lr decays (steps 20–50% of the run, α_t ≥ α/2), AdamW at the {arm} λ has a "
      "*higher* training loss than λ = 0 at the same lr.",
      LM_SOURCE,
      "greater",
      a=m(arm, "train_loss@early"),
      b=m("none@matched", "train_loss@early"),
      names=(f"λ {arm}", "λ = 0"),
    )
    out[f"{arm}_lower_at_end"] = claim(
      f"At the end of the run (the last 10% of the steps, lr decayed), AdamW at the {arm} λ has "
      "a *lower* training loss than λ = 0 at the same lr (the crossover's second half).",
      LM_SOURCE,
      "less",
      a=m(arm, "train_loss@late"),
      b=m("none@matched", "train_loss@late"),
      names=(f"λ {arm}", "λ = 0"),
    )
  out["held_out_loss_lower"] = claim(
    "Tuned AdamW (moderate λ) ends with a lower held-out loss than λ = 0 tuned over the lr "
    "(test split of a fresh corpus draw, per sequence).",
    LM_SOURCE,
    "less",
    a=m("moderate", "test_loss"),
    b=m("none", "test_loss"),
    names=("λ moderate", "λ = 0"),
  )
  return declare(**out)


def vision_claims(tolerance: float, floor: float) -> ml_collections.ConfigDict:
  """The vision part's claims, each against λ = 0 at the decay's lr unless said."""
  m = lambda tag, what: f"vision/{tag}/{what}"
  return declare(
    stabilised_above_none=claim(
      "During the large-lr phase (its second half) the training loss with weight decay stays "
      "above the no-decay run's at the same lr (loss stabilisation).",
      VISION_SOURCE,
      "greater",
      a=m("decay", "train_loss@early"),
      b=m("none@matched", "train_loss@early"),
      names=("decay", "no decay"),
    ),
    stabilised_above_floor=claim(
      f"During the large-lr phase (its second half) the training loss with weight decay stays "
      f"well above zero: above {floor:g} nats.",
      VISION_SOURCE,
      "greater",
      a=m("decay", "train_loss@early"),
      margin=floor,
      names=("decay's loss", ""),
    ),
    no_gain_before_drop=claim(
      f"Before the lr drop, weight decay does not yet help: validation accuracy with decay "
      f"minus without, less the declared tolerance {tolerance:g}, is < 0 (gain ≤ ~0).",
      VISION_SOURCE,
      "less",
      a="vision/gain@drop_minus_tolerance",
      names=("gain at the drop − tolerance", ""),
    ),
    gain_after_drop=claim(
      "After the lr drop, weight decay helps: test accuracy with decay is higher than without "
      "at the same lr.",
      VISION_SOURCE,
      "greater",
      a=m("decay", "test_accuracy"),
      b=m("none@matched", "test_accuracy"),
      names=("decay", "no decay"),
    ),
    gain_appears_at_drop=claim(
      "The benefit appears with the lr drop: (decay − no decay) validation accuracy at the end "
      "exceeds the same difference at the drop.",
      VISION_SOURCE,
      "greater",
      a="vision/gain_growth",
      names=("gain at end − gain at drop", ""),
    ),
    tuned_decay_beats_tuned_none=claim(
      "Each tuned on validation (lr × λ, and lr alone for λ = 0), decay ends with the higher "
      "test accuracy.",
      NEVER_REGULARIZER,
      "greater",
      a=m("decay", "test_accuracy"),
      b=m("none", "test_accuracy"),
      names=("decay", "no decay"),
    ),
  )


def lm_run(steps: int, d_model: int, layers: int, seq_len: int, batch: int):
  """The character Transformer (l2_pollution's) with AdamW, a record every few steps."""
  c = l2.char_lm_run(steps, d_model, layers, seq_len)
  c.optimizer.name = "adamw"
  c.optimizer.lr_schedule = "warmup_cosine"
  c.batch_size = batch
  c.log_every = max(steps // 100, 1)  # the training-loss curve: ~100 batches per run
  c.diagnostics_every = 0
  return c


def vision_run(steps: int, widths=(256, 256)) -> ml_collections.ConfigDict:
  """The wide MLP on MNIST-1D, plain SGD + coupled L2, constant lr then × 0.1 at 50%."""
  c = base_config()
  c.dataset.name = "mnist1d"
  c.dataset.validation_fraction = 4000 / 7600  # 4,000 validation, 3,600 training sequences
  c.model.name = "mlp"
  c.model.kwargs = {"widths": widths}
  c.optimizer.name = "sgd_l2"  # coupled: g + λθ; no momentum
  c.optimizer.kwargs = {"momentum": 0.0}
  c.optimizer.learning_rate = 0.2  # tuned
  c.optimizer.lr_schedule = "drop"
  c.optimizer.lr_drop_fraction = 0.5
  c.optimizer.lr_drop_factor = 0.1
  c.optimizer.mask = "default"  # kernels decayed, biases not
  c.steps = steps
  c.batch_size = 128
  c.eval_batch_size = 2000
  c.log_every = max(steps // 100, 1)
  c.diagnostics_every = 0
  c.eval_every = steps // 2  # validation at the drop and at the end
  c.checkpoint_every = steps
  c.per_leaf_diagnostics = False
  return c


def _phases(c, tune_seeds, tune_draw, lrs, taus, confirm_seeds, confirm_draw, min_seeds):
  c.tune = ml_collections.ConfigDict(
    {"seeds": tune_seeds, "dataset": tune_draw, "learning_rates": lrs, "tau_over_T": taus}
  )
  c.confirm = ml_collections.ConfigDict(
    {"seeds": confirm_seeds, "dataset": confirm_draw, "min_seeds": min_seeds}
  )


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.phase = "confirm"  # "tune" selects and writes the pre-registration; "confirm" decides
  c.task = "lm"
  c.preregistration = os.path.join(PREREGISTERED, "why_wd.json")
  c.strategy = "vmap"  # each arm's cells × seeds as one vmapped program
  c.resamples = 200  # bootstrap resamples of the validation items (selection stability)
  c.large_factor = 3.0  # lm: the large λ is the tuned one × this (the paper's 0.1 → 0.3)
  c.fallback_tau_over_T = 0.25  # the decay arm's strength if tuning selects λ = 0 (said)
  c.early_window = (0.2, 0.5)  # fractions of the steps: lm before the lr decays
  c.late_window = (0.9, 1.0)  # lm: the end of the run
  c.tolerance = 0.01  # vision: "gain ≤ ~0" before the drop, in accuracy
  c.loss_floor = 0.05  # vision: "well above zero", nats
  if variant == "default":
    # 200k training characters (the tail 20% of the 250k-char stream carved for validation):
    # 400 steps × 16 windows × 32 characters = 205k characters, one epoch.
    c.run = lm_run(400, 64, 2, 32, 16)
    _phases(
      c,
      (0, 1),
      l2.char_lm_draw(0, 280_000, 0.1),
      (1e-3, 2e-3, 4e-3),
      (1.0, 1 / 4, 1 / 16),
      tuple(range(100, 108)),
      l2.char_lm_draw(1, 500_000, 0.5),  # the same 250k-char training stream, 250k test chars
      min_seeds=8,
    )
  elif variant == "vision":
    c.task = "vision"
    c.preregistration = os.path.join(PREREGISTERED, "why_wd_vision.json")
    c.early_window = (0.25, 0.5)  # the second half of the large-lr phase (drop at 0.5)
    c.late_window = (0.9, 1.0)
    c.run = vision_run(2000, (256, 256))
    _phases(
      c,
      (0, 1),
      {"seed": 1, "num_train": 7600, "num_test": 1000},
      (0.05, 0.1, 0.2),
      (1.0, 1 / 4, 1 / 16),
      tuple(range(100, 110)),
      {"seed": 2, "num_train": 7600, "num_test": 20_000},
      min_seeds=8,
    )
  elif variant == "smoke":  # seconds; the tests point preregistration at a temporary file
    c.resamples = 50
    c.run = lm_run(24, 16, 1, 16, 8)
    c.run.dataset.kwargs = {"seq_len": 16}
    _phases(
      c,
      (0, 1),
      l2.char_lm_draw(0, 20_000, 0.2),
      (2e-3, 4e-3),
      (1.0, 1 / 4),
      (10, 11, 12),
      l2.char_lm_draw(1, 20_000, 0.2),
      min_seeds=3,
    )
  elif variant == "smoke_vision":
    c.task = "vision"
    c.resamples = 50
    c.early_window = (0.25, 0.5)
    c.run = vision_run(40, (64,))
    c.run.dataset.validation_fraction = 0.5
    small = {"num_train": 400, "num_test": 600}
    _phases(c, (0, 1), {"seed": 1, **small}, (0.05, 0.1), (1.0, 1 / 4), (10, 11, 12),
            {"seed": 2, **small}, min_seeds=3)  # fmt: skip
  elif variant == "bf16":
    # Design only (GPU/TPU, a real LM size): GPT-2-small-like width, bfloat16 parameters and
    # compute, AdamW λ ∈ {0, 0.1} at a high lr, 8 seeds; claim: λ = 0 diverges (a non-finite or
    # spiking loss) in more runs than λ = 0.1. The engine's Transformer takes no dtype, so
    # `why_wd.run` refuses this variant by name (no CPU smoke form either).
    c.task = "bf16"
    c.preregistration = os.path.join(PREREGISTERED, "why_wd_bf16.json")
    c.run = lm_run(20_000, 768, 12, 256, 64)
    c.run.model.kwargs = {**dict(c.run.model.kwargs), "max_len": 256, "dtype": "bfloat16"}
    _phases(
      c,
      (0, 1),
      l2.char_lm_draw(0, 50_000_000, 0.1),
      (1e-3, 3e-3),
      (1 / 3,),
      tuple(range(100, 108)),
      l2.char_lm_draw(1, 50_000_000, 0.1),
      min_seeds=8,
    )
  else:
    raise ValueError(
      f"variant must be 'default', 'vision', 'smoke', 'smoke_vision' or 'bf16', got {variant!r}."
    )
  if c.task == "vision":
    c.claims = vision_claims(c.tolerance, c.loss_floor)
  elif c.task == "lm":
    c.claims = lm_claims()
  else:
    c.claims = declare(
      bf16_no_decay_diverges=claim(
        "In bfloat16, AdamW without weight decay has loss divergences that λ = 0.1 prevents.",
        BF16_SOURCE,
        "greater",
        a="bf16/none/diverged",
        b="bf16/decay/diverged",
        names=("λ = 0", "λ = 0.1"),
      )
    )
  return c
