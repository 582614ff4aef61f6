"""AdamW's decay couplings (lr, constant, corrected; schedule on request) under warmup + cosine.

  python experiments/coupling.py --config=experiments/configs/coupling.py --workdir=runs/coupling
  (append :smoke for seconds, :mlp for the MNIST-1D MLP, :full for paper scale on a GPU/TPU)

Colours: adamw ("lr"), adamw_schedule, adamw_constant, adamw_corrected (wd_jax.study).
Strength is τ/T, the decay's timescale over the run at the peak lr (wd_jax.study.strength), the
same grid for every coupling; each coupling's strength is selected on validation, and the claims
are read at each coupling's selected strength and at one strong strength named in advance
(`strong`), where the pilot showed the gradient-norm rise. "corrected" (AdamC) corrects the
layers followed by normalisation only (`corrected_layers`, the conv kernels); every other decayed
leaf (the head) keeps the "lr" coupling, as Defazio et al. do. At one τ/T, "lr" and "schedule"
are the same update (λ_lr·α = λ_schedule), so "schedule" is left out of the default.
Default: sklearn digits, a narrow BatchNorm ResNet (widths 4, 8) whose conv kernels are
scale-invariant, AdamW at peak lr 3e-3, 1500 steps of batch 64, τ/T ∈ {2, 1, 1/2, 1/4, 1/16,
1/64}, seeds 10-13 (the pilot ran seeds 0-1). 10% of the training data is held out for
validation; the test split is read for each coupling's selected strength and for the strong one.
The runtime and the measured verdicts are in experiments/README.md.
"""

import ml_collections

from wd_jax.engine.config import base_config
from wd_jax.study.claims import claim, declare

DEFAZIO = "Defazio et al. 2025; REFERENCES §4"
RISE_THRESHOLD = 1.1  # "the gradient norm rises": the rise ratio exceeds 1.1
ACCURACY_MARGIN = 0.01  # "costs nothing": AdamC is not below "lr" by 1 point of accuracy or more
# The pilot (seeds 0-1, digits ResNet, 1500 steps): "lr" rise 1.07/1.08 at τ/T = 1/4 (its best
# validation accuracy, 0.99), 1.18/1.07 at 1/16, 1.78/1.54 at 1/64 (validation 0.79/0.85), where
# "corrected" (all layers) rose 1.03/1.09 and kept 0.96/0.95.
STRONG = 1 / 64


def claims(couplings) -> ml_collections.ConfigDict:
  """The claims, declared before the run, for the couplings present (measurements: see
  coupling.measurement_names; ``@strong`` at τ/T = STRONG, ``@selected`` at each coupling's own
  strength selected on validation; ``rise`` is the gradient-norm rise over all parameters)."""
  cs = set(couplings)
  out = {}
  if "lr" in cs:
    out["lr_rise"] = claim(
      'Under the "lr" coupling (torch AdamW) with strong decay (τ/T = 1/64) the gradient norm '
      "rises at the end of training: as α_t decays, the decay keeps dragging the weight norm "
      "down towards its equilibrium (∝ √α_t for Adam) and ‖g‖ of normalised weights grows as "
      f"1/‖w‖: the rise (‖g‖ over the tail / its minimum over the annealing half) exceeds "
      f"{RISE_THRESHOLD:g}.",
      DEFAZIO,
      "greater",
      a="lr/rise@strong",
      margin=RISE_THRESHOLD,
      names=('rise, "lr"', ""),
    )
    out["lr_rise_when_tuned"] = claim(
      'The same rise appears at the strength "lr" selects on validation.',
      DEFAZIO,
      "greater",
      a="lr/rise@selected",
      margin=RISE_THRESHOLD,
      names=('rise, "lr" (tuned)', ""),
    )
  if {"lr", "corrected"} <= cs:
    out["corrected_reduces_rise"] = claim(
      'The "corrected" coupling (AdamC, decay ∝ α_t²/α on the normalised layers) reduces that '
      'rise: at τ/T = 1/64 its rise is smaller than under "lr".',
      "Defazio et al. 2025; REFERENCES §1, §4",
      "less",
      a="corrected/rise@strong",
      b="lr/rise@strong",
      names=('rise "corrected"', 'rise "lr"'),
    )
    out["corrected_holds_norm"] = claim(
      "The mechanism: through the second half of training the weight norm keeps falling under "
      '"lr" (equilibrium √(α_t C/2λ) follows α_t) but levels off under "corrected" (equilibrium '
      "√(α C/2λ) constant): at τ/T = 1/64, ‖w‖ end / ‖w‖ mid-training (the scale-invariant "
      'kernels if the model has any, else all parameters) is larger for "corrected".',
      "Defazio et al. 2025; Kosson et al. 2023 (REFERENCES §4)",
      "greater",
      a="corrected/norm_ratio@strong",
      b="lr/norm_ratio@strong",
      names=('‖w‖ end/mid "corrected"', '"lr"'),
    )
    out["corrected_rescues_strong_decay"] = claim(
      'At the strong decay (τ/T = 1/64) "corrected" ends more accurate than "lr" on test: the '
      "norm it holds keeps the effective lr from collapsing as α_t anneals.",
      "Defazio et al. 2025 (their Fig. on loss); the pilot of this study",
      "greater",
      a="corrected/test_accuracy@strong",
      b="lr/test_accuracy@strong",
      names=('"corrected"', '"lr"'),
    )
    out["corrected_costs_accuracy"] = claim(
      f"AdamC costs accuracy: each at its own selected strength, it ends more than "
      f'{ACCURACY_MARGIN:g} below torch-style "lr" AdamW on test. Defazio et al. expect the '
      "correction to cost nothing: their claim is this one *not supported* (the data rule out a "
      f"loss of {ACCURACY_MARGIN:g} or more, at level α).",
      "Defazio et al. 2025",
      "less",
      a="corrected/test_accuracy@selected",
      b="lr/test_accuracy@selected",
      margin=ACCURACY_MARGIN,
      names=('"corrected"', '"lr"'),
    )
  if {"lr", "constant"} <= cs:
    out["constant_larger_rise"] = claim(
      'A "constant" decay (not falling with α_t) makes the rise larger than "lr" at τ/T = 1/64: '
      'its equilibrium norm ∝ α_t falls faster than the "lr" one ∝ √α_t.',
      "derived here from Defazio et al. 2025's steady state and REFERENCES §4",
      "greater",
      a="constant/rise@strong",
      b="lr/rise@strong",
      names=('rise "constant"', 'rise "lr"'),
    )
    out["constant_less_accurate"] = claim(
      'A decay that ignores the schedule ("constant", optax adafactor) keeps shrinking the '
      "weights after the lr has annealed: each at its own selected strength, it ends less "
      'accurate than "lr" on test.',
      "REFERENCES §1 (what each convention multiplies λ by)",
      "less",
      a="constant/test_accuracy@selected",
      b="lr/test_accuracy@selected",
      names=('"constant"', '"lr"'),
    )
  return declare(**out)


_NOTES = {
  "digits_resnet": (
    "Why this task: every conv kernel of the ResNet feeds a BatchNorm, so it is scale-invariant "
    "and ‖g‖ = ‖g̃‖/‖w‖ (REFERENCES §4), the setting of Defazio et al.'s argument; and the "
    "network is narrow (widths 4, 8) so that it cannot fit the 1437 training digits: the loss "
    "gradient at unit norm ‖g̃‖ stays roughly level, as in the long LLM runs where the rise was "
    "seen. Tried first (2 seeds, 1500 steps, same decay): widths 16, 32 fit the training set, "
    '‖g̃‖ fell ~50× over training and hid the 1/‖w‖ effect (rise 1.7–2.3 for "lr" and '
    '1.7–2.5 for "corrected"); the MNIST-1D MLP has no normalised layer and its ‖g‖ followed '
    'the loss (one seed, 2000 steps: rise 1.75 "lr", 1.71 "corrected").'
  ),
  "char_lm": (
    "Task: a pre-LayerNorm character-level Transformer on a corpus it cannot memorise, the "
    "LLM-like setting of Defazio et al.'s observation (its weights are only approximately "
    "scale-invariant, so all parameters' norms are used)."
  ),
  "mnist1d_mlp": (
    "Task: an MLP without normalisation; Defazio et al.'s steady-state argument assumes "
    "normalised layers, so this is the case where the theory is not expected to apply."
  ),
}
_BASELINE_NOTE = (
  "The minimum is taken over the annealing half (α_t ≤ α/2), where the couplings part: before "
  "it, ‖g‖ climbs for all of them while the decay shrinks the kernels from their initial norm "
  "to equilibrium (on the default task a ~20× climb over the first ~40% of the steps, see the "
  'figure). Measured with the minimum after the first 25% instead, the "lr" rise was 1.66 ± '
  "0.19 (supported), but its minimum then sat at the window's first point for every seed, on "
  "that climb; that is why the window was moved. The window was thus chosen after seeing runs "
  'of these seeds: on them the "lr" rise claim is not a clean pre-registration.'
)


def _digits_resnet(steps: int, widths=(4, 8)) -> ml_collections.ConfigDict:
  c = base_config()
  c.dataset.name = "digits"
  c.model.name = "resnet"
  c.model.kwargs = {"widths": tuple(widths), "blocks_per_stage": 1}
  c.batch_size = 64
  c.eval_batch_size = 512
  return _common(c, steps, lr=3e-3)


def _mnist1d_mlp(steps: int, widths=(128, 128)) -> ml_collections.ConfigDict:
  c = base_config()
  c.dataset.name = "mnist1d"
  c.model.name = "mlp"
  c.model.kwargs = {"widths": tuple(widths)}
  c.batch_size = 128
  return _common(c, steps, lr=3e-3)


def _char_lm(steps: int) -> ml_collections.ConfigDict:
  c = base_config()
  c.dataset.name = "char_corpus"
  c.dataset.kwargs = {"seq_len": 128}
  c.model.name = "transformer"
  c.model.kwargs = {"d_model": 256, "num_heads": 4, "num_layers": 4}
  c.batch_size = 64
  c.eval_batch_size = 64
  return _common(c, steps, lr=1e-3)


def _common(c: ml_collections.ConfigDict, steps: int, lr: float) -> ml_collections.ConfigDict:
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = lr  # peak (per step); 5% warmup then cosine to 0
  c.optimizer.lr_schedule = "warmup_cosine"
  c.optimizer.warmup_fraction = 0.05
  c.optimizer.mask = "default"  # kernels decayed; biases and BatchNorm scales/offsets not
  c.steps = steps
  c.log_every = c.diagnostics_every = max(steps // 100, 1)  # 100 points per curve
  c.eval_every = c.checkpoint_every = steps
  c.per_leaf_diagnostics = True  # per-leaf norms: the scale-invariant kernels' ‖g‖ and ‖w‖
  c.dataset.validation_fraction = 0.1  # nothing is tuned; the test split is read once per run
  return c


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.couplings = ("lr", "constant", "corrected")
  c.strategy = "vmap"  # every coupling × strength × seed is one vmapped program
  # Each coupling's strength is selected among these. The first grid (1/4, 1/16, 1/64) put every
  # coupling's pick on its weak edge, 1/4: the grid now runs to τ/T = 2, weaker by factors of 2.
  c.tau_over_T = (2.0, 1.0, 0.5, 0.25, 0.0625, STRONG)
  c.strong = STRONG  # the strong strength the rise claims are read at, named in advance
  # AdamC corrects the layers followed by normalisation only; other decayed leaves keep "lr".
  c.corrected_layers = r".*conv/kernel"
  c.tail_fraction = 0.1  # "the end of training": the last 10% of the steps
  c.baseline_from = 0.5  # the minimum ‖g‖ is taken over the annealing half (α_t ≤ α/2)
  c.task = "digits_resnet"
  if variant == "default":
    c.run = _digits_resnet(1500)
    c.seeds = (10, 11, 12, 13)
  elif variant == "mlp":
    c.task = "mnist1d_mlp"
    c.run = _mnist1d_mlp(2000)
    c.corrected_layers = ""  # no normalised layer: "corrected" applies to every decayed leaf
    c.seeds = (10, 11, 12)
  elif variant == "smoke":
    # Two strengths and a small MLP, which compiles in a fraction of the ResNet's time: tests/
    # must stay fast. The scale-invariant measurements are unit-tested.
    c.task = "mnist1d_mlp"
    c.run = _mnist1d_mlp(20, widths=(16,))
    c.run.log_every = c.run.diagnostics_every = 1  # every step a diagnostics step: one compile
    c.corrected_layers = r"hidden/0/kernel"  # exercises the split (corrected / "lr" elsewhere)
    c.tau_over_T = (1.0, 0.25)
    c.strong = 0.25
    c.seeds = (0, 1)
  elif variant == "full":  # the LLM-like setting where the rise was reported; for a GPU/TPU
    c.task = "char_lm"
    c.run = _char_lm(20_000)
    c.tau_over_T = (0.5, 0.25, 0.1, 0.05)  # torch AdamW's λ = 0.1 at α = 1e-3 is τ/T = 0.5
    c.strong = 0.05
    c.corrected_layers = r".*(attn|mlp).*kernel"  # the projections that feed a LayerNorm
    c.seeds = (0, 1, 2)
  else:
    raise ValueError(f"variant must be 'default', 'mlp', 'smoke' or 'full', got {variant!r}.")
  c.task_note = _NOTES[c.task]
  c.baseline_note = _BASELINE_NOTE
  c.claims = claims(c.couplings)
  return c
