"""Norm growth on true vs random labels, with and without early decay, and a scale-invariant
metric that tracks generalisation, in two phases: tune (pre-register), then confirm.

  python experiments/norms.py --config=experiments/configs/norms.py \
      --config.phase=tune --workdir=runs/norms-tune     # writes experiments/preregistered/...
  python experiments/norms.py --config=experiments/configs/norms.py --workdir=runs/norms
  (:smoke runs both phases in seconds)

Bjorck, Weinberger & Gomes (2021) make three statements this study tests: early-only weight
decay keeps the network's norm small; norm growth depends on the dataset and how well it
generalises; traditional generalisation metrics miss early decay's effect where "a simple
scale-invariant metric" captures it. The paper's body was not available to this study, only its
abstract (REFERENCES §8), so the metric is this study's reading of it:
`wd_jax.diagnostics.relative_sharpness`, the rise of the training loss when every kernel moves
by ±ρ of its own norm along random directions (ρ = 0.05, 16 direction pairs, 1,000 training
examples). It is sharpness (Keskar et al. 2017; Jiang et al. 2020's magnitude-aware variant)
made scale-invariant: rescaling a normalised layer leaves it unchanged, whereas the classic
metrics it is set against — the raw weight norm, and the absolute sharpness (the same
perturbation of fixed size, ``relative=False``) — change with the scale weight decay sets.

Arms (one lr and λ, tuned on validation with true labels): {true, random} training labels ×
{no decay, early-only decay (λ on for the first 25% of the steps)}. Random labels: every training
label (validation included, carved from the training data) replaced by a uniform draw over the
10 classes, seeded by the data draw; the test labels stay true, so a random-label network's test
accuracy is chance. Task, model and optimizer as the early/late study (MNIST-1D, LayerNorm MLP
(128, 128) whose hidden kernels are scale-invariant, SGD momentum 0.9 + coupled L2, 2,000 steps).

"Tracks generalisation", declared: in a contrast between two arms whose test accuracies differ,
a metric tracks it when its paired (by seed) log difference has the sign of "worse generalises
higher" (one-sided paired t at α = 0.05); across the label contrast it must hold whatever the
decay: the smaller of the two random-label arms' values exceeds the larger of the two true-label
arms' (per seed, on the log scale). Pilot on the tuning draw (2 seeds, lr 0.2, τ/T = 1/16):
final ‖w‖ 36.6 (true, none), 27.8 (true, early), 47.3 (random, none), 33.3 (random, early);
relative sharpness 0.0009, 0.0008, 0.011, 0.022; absolute sharpness 0.035, 0.051, 0.20, 0.49.
"""

import os

import ml_collections
from configs.early_wd import mnist1d_draw, mnist1d_run, smoke_phases

from wd_jax.study.claims import claim, declare

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREREGISTERED = os.path.join(ROOT, "experiments", "preregistered")

BJORCK = "Bjorck, Weinberger & Gomes 2021, abstract (REFERENCES §3, §8)"
GROWTH = (
  f"{BJORCK}: “the growth of network weights is heavily influenced by the dataset and its "
  "generalization properties”"
)
SMALL = (
  f"{BJORCK}: “by applying WD only at the start, the network norm stays small throughout training”"
)
METRIC = (
  f"{BJORCK}: “traditional generalizations metrics fail to capture this effect of WD, and we show "
  "how a simple scale-invariant metric can”"
)


def claims() -> ml_collections.ConfigDict:
  """The claims, declared before the tune phase runs and frozen in its pre-registration.
  Measurements: norms.measurement_names."""
  m = lambda arm, what: f"{arm}/{what}"
  return declare(
    random_labels_grow_the_norm=claim(
      "Without decay, the scale-invariant weights' norm grows more on random labels than on true "
      "labels (final log ‖w‖, random > true).",
      GROWTH,
      "greater",
      a=m("random_none", "final_log_norm"),
      b=m("true_none", "final_log_norm"),
      names=("random labels", "true labels"),
    ),
    early_decay_keeps_the_norm_small=claim(
      "With true labels, early-only decay ends with a smaller scale-invariant norm than no decay.",
      SMALL,
      "less",
      a=m("true_early", "final_log_norm"),
      b=m("true_none", "final_log_norm"),
      names=("early", "none"),
    ),
    early_decay_generalises=claim(
      "Premise: with true labels, early-only decay ends with a higher test accuracy than no decay "
      "(same lr).",
      "the study's premise (Golatkar et al. 2019; Bjorck et al. 2021: early decay regularises)",
      "greater",
      a=m("true_early", "test_accuracy"),
      b=m("true_none", "test_accuracy"),
      names=("early", "none"),
    ),
    sharpness_tracks_early_decay=claim(
      "The scale-invariant metric tracks early decay's effect: with true labels, the early-decay "
      "network has a lower relative sharpness than the undecayed one.",
      METRIC,
      "less",
      a=m("true_early", "log_sharpness"),
      b=m("true_none", "log_sharpness"),
      names=("early", "none"),
    ),
    classic_sharpness_misses_early_decay=claim(
      "A classic metric misses it: the absolute sharpness (perturbation of fixed size) calls the "
      "early-decay network sharper than the undecayed one, though it generalises better.",
      METRIC,
      "greater",
      a=m("true_early", "log_abs_sharpness"),
      b=m("true_none", "log_abs_sharpness"),
      names=("early", "none"),
    ),
    sharpness_separates_labels=claim(
      "The scale-invariant metric tracks the labels whatever the decay: per seed, the smaller "
      "random-label relative sharpness exceeds the larger true-label one (log difference > 0).",
      METRIC,
      "greater",
      a="labels/sharpness_separation",
      names=("min random − max true (log)", "0"),
    ),
    raw_norm_misses_labels=claim(
      "The raw norm does not: per seed, the smaller random-label norm (early decay) is below the "
      "larger true-label norm (no decay) (log difference < 0).",
      METRIC,
      "less",
      a="labels/norm_separation",
      names=("min random − max true (log)", "0"),
    ),
  )


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.phase = "confirm"  # "tune" selects and writes the pre-registration; "confirm" decides
  c.preregistration = os.path.join(PREREGISTERED, "norms.json")
  c.switch = 0.25  # early-only decay: λ on for the steps before this fraction of the run
  c.strategy = "vmap"
  c.resamples = 200  # bootstrap resamples of the validation items (selection stability)
  c.fallback_tau_over_T = 1 / 16  # the strength if early decay selects λ = 0 (said in summary)
  c.label_seed_offset = 1000  # random labels of a draw: seeded by its seed + this
  c.sharpness = ml_collections.ConfigDict({"radius": 0.05, "directions": 16, "examples": 1000})
  lrs, taus = (0.1, 0.2, 0.4, 0.8), (1.0, 1 / 2, 1 / 4, 1 / 8, 1 / 16)
  if variant == "default":
    c.run = mnist1d_run(2000)
    tune = {"seeds": (0, 1, 2), "dataset": mnist1d_draw(1, 1000)}
    confirm = {"seeds": tuple(range(100, 110)), "dataset": mnist1d_draw(2, 20_000)}
    confirm["min_seeds"] = 8
  elif variant == "smoke":  # seconds; the tests point preregistration at a temporary file
    c.run = mnist1d_run(40)
    c.run.dataset.validation_fraction = 0.5
    c.resamples = 50
    c.sharpness = ml_collections.ConfigDict({"radius": 0.05, "directions": 2, "examples": 100})
    lrs, taus = (0.1, 0.2), (1.0, 1 / 16)
    tune, confirm = smoke_phases()
  else:
    raise ValueError(f"variant must be 'default' or 'smoke', got {variant!r}.")
  c.tune = ml_collections.ConfigDict({**tune, "learning_rates": lrs, "tau_over_T": taus})
  c.confirm = ml_collections.ConfigDict(confirm)
  c.claims = claims()
  return c
