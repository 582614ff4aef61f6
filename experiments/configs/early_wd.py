"""Golatkar's critical period for weight decay, in two phases: tune (pre-register), then confirm.

  python experiments/early_wd.py --config=experiments/configs/early_wd.py \
      --config.phase=tune --workdir=runs/early_wd-tune    # writes experiments/preregistered/...
  python experiments/early_wd.py --config=experiments/configs/early_wd.py --workdir=runs/early_wd
  (:smoke runs both phases in seconds)

Task, off the ceiling: MNIST-1D (3,600 training sequences; 4,000 carved for validation), a
bias-free Linear → LayerNorm → ReLU MLP (128, 128) whose hidden kernels are scale-invariant, SGD
with momentum 0.9 and *coupled* L2 (torch ``SGD(weight_decay=λ)``, Golatkar et al.'s optimizer),
2,000 steps of batch 128 (71 epochs), 5% warmup then cosine. Pilots on the tuning draw (seeds
0–2, before this design was frozen): at lr 0.2 validation accuracy 0.669 ± 0.004 without decay
and 0.729 ± 0.006 at τ/T = 1/16, a gain of ~15 sd of the seed-to-seed spread (a plain ReLU MLP
gained nothing: the decay acts here through the normalised layers' effective learning rate).

Strength is τ/T (`wd_jax.study.strength`): coupled L2 through momentum μ shrinks the weights by
α λ/(1 − μ) per step at the peak lr α, τ = (1 − μ)/(α λ). Tune: "whole" (decay all run) over
lr {0.1, 0.2, 0.4, 0.8} × τ/T {2, 1, 1/2, 1/4, 1/8, 1/16} plus λ = 0 (the "none" arm, over the
lrs), selected on 4,000 validation sequences. The grid stops at τ/T = 1/16: the decay timescale
is never shorter than the switch grid's finest step (5% of the run), so moving a switch by one
step of the grid always changes how much decay acts, and late-only decay cannot reach whole-run
decay's state within a few steps (the tune summary lists the decay each arm receives, Σ_t c_t λ
in timescales: with the cosine schedule, late-only from 50% receives ~1/5 of whole-run decay).

Confirm, at whole's tuned lr and λ: early-only (λ on for the first s of the steps, then 0) and
late-only (λ = 0 until s, then on) for s ∈ {5, 10, 25, 50}%, with whole (early at 100%, late at
0%) and none (early at 0%, late at 100%) at the same lr, and none at its own tuned lr; 12 fresh
seeds, a fresh draw with 20,000 test sequences, intervals over seeds × items, Holm over claims.
"""

import os

import ml_collections

from wd_jax.engine.config import base_config
from wd_jax.study.claims import claim, declare

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREREGISTERED = os.path.join(ROOT, "experiments", "preregistered")
SWITCHES = (
  0.05,
  0.10,
  0.25,
  0.50,
)  # switch points s (fraction of the steps); 0 and 1 are none/whole

GOLATKAR = (
  "Golatkar, Achille & Soatto 2019, abstract (REFERENCES §3): “removing regularization after an "
  "initial transient period has little effect on generalization”"
)
GOLATKAR_LATE = (
  "Golatkar, Achille & Soatto 2019, abstract: “if regularization is applied only after the "
  "initial transient, it has no effect on the final solution, whose generalization gap is as "
  "bad as if regularization never happened”"
)
BJORCK = (
  "Bjorck, Weinberger & Gomes 2021, abstract (REFERENCES §3, §8): “by applying WD only at the "
  "start, the network norm stays small throughout training”"
)


def claims() -> ml_collections.ConfigDict:
  """The claims, declared before the tune phase runs and frozen in its pre-registration.

  "Recovers most of the gain": the arm's test accuracy exceeds the midpoint of none (at the same
  lr) and whole, i.e. arm − (none + whole)/2 > 0, read per test item over seeds × items.
  Measurements: early_wd.measurement_names."""
  acc = lambda arm: f"{arm}/test_accuracy"
  return declare(
    decay_helps=claim(
      "Premise: tuned whole-run weight decay ends with a higher test accuracy than no decay "
      "tuned over the learning rate alone.",
      "the study's premise (Golatkar et al. 2019 study a task where weight decay helps)",
      "greater",
      a=acc("whole"),
      b=acc("none"),
      names=("whole", "none"),
    ),
    early_25_recovers_most=claim(
      "Decay during the first 25% of training only recovers most of whole-run decay's gain: "
      "early-only@25% − (none + whole)/2 > 0 on test accuracy (none at whole's lr).",
      GOLATKAR,
      "greater",
      a="early_25/above_midpoint",
      names=("early@25% − midpoint", "0"),
    ),
    late_50_recovers_little=claim(
      "Decay from 50% of training on only recovers little of whole-run decay's gain: "
      "late-only@50% − (none + whole)/2 < 0 on test accuracy.",
      GOLATKAR_LATE,
      "less",
      a="late_50/above_midpoint",
      names=("late@50% − midpoint", "0"),
    ),
    early_beats_late_at_25=claim(
      "The same switch at 25%: decay during the first quarter ends better than decay during the "
      "last three quarters (early-only@25% > late-only@25% on test accuracy).",
      GOLATKAR,
      "greater",
      a=acc("early_25"),
      b=acc("late_25"),
      names=("early@25%", "late@25%"),
    ),
    norm_stays_below_none=claim(
      "After early-only decay (switch at 25%) the scale-invariant weights' norm stays below the "
      "never-decayed run's to the end.",
      BJORCK,
      "less",
      a="early_25/final_log_norm",
      b="none@matched/final_log_norm",
      names=("early@25%", "none"),
    ),
    norm_stays_near_whole=claim(
      "After early-only decay (switch at 25%) the norm stays small in the stronger sense: it ends "
      "closer to whole-run decay's norm than to no decay's on a log scale, "
      "log‖w‖_early − (log‖w‖_whole + log‖w‖_none)/2 < 0 (the norm after the switch, against "
      "both references).",
      BJORCK,
      "less",
      a="early_25/log_norm_vs_midpoint",
      names=("log-norm − midpoint", "0"),
    ),
  )


def mnist1d_layernorm_mlp(steps: int) -> ml_collections.ConfigDict:
  """The MNIST-1D LayerNorm-MLP run of `steps` steps, evaluated once at the end (its optimizer,
  logging cadence and draw set by the study)."""
  c = base_config()
  c.dataset.name = "mnist1d"
  c.dataset.validation_fraction = 4000 / 7600  # 4,000 validation, 3,600 training sequences
  c.model.name = "mlp"
  c.model.kwargs = {"widths": (128, 128), "norm": "layer"}
  c.optimizer.mask = "default"  # kernels decayed; LayerNorm scales/biases and the head bias not
  c.steps = steps
  c.batch_size = 128
  c.eval_batch_size = 2000
  c.eval_every = c.checkpoint_every = steps
  return c


def mnist1d_run(steps: int) -> ml_collections.ConfigDict:
  """The MNIST-1D LayerNorm-MLP run with SGD + coupled L2 (its draw and schedule set later)."""
  c = mnist1d_layernorm_mlp(steps)
  c.optimizer.name = "sgd_l2"  # coupled: λθ enters the momentum buffer, then × α_t
  c.optimizer.kwargs = {"momentum": 0.9}
  c.optimizer.learning_rate = 0.2  # peak (5% warmup, then cosine); tuned
  c.log_every = c.diagnostics_every = max(steps // 40, 1)  # the norm trajectories
  c.per_leaf_diagnostics = False  # the scale-invariant norms are logged regardless
  return c


def mnist1d_draw(seed: int, num_test: int) -> dict:
  """A draw of MNIST-1D: 7,600 training sequences (4,000 of them carved for validation) and
  `num_test` test sequences."""
  return {"seed": seed, "num_train": 7600, "num_test": num_test}


def smoke_phases() -> tuple[dict, dict]:
  """The smoke variants' tune and confirm seeds and draws (400 training, 600 test sequences)."""
  small = {"num_train": 400, "num_test": 600}
  tune = {"seeds": (0, 1), "dataset": {"seed": 1, **small}}
  return tune, {"seeds": (10, 11, 12), "dataset": {"seed": 2, **small}, "min_seeds": 3}


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.phase = "confirm"  # "tune" selects and writes the pre-registration; "confirm" decides
  c.preregistration = os.path.join(PREREGISTERED, "early_wd.json")
  c.switches = SWITCHES
  c.strategy = "vmap"  # each arm's cells × seeds as one vmapped program (MLPs: fastest on CPU)
  c.resamples = 200  # bootstrap resamples of the validation items (selection stability)
  c.fallback_tau_over_T = 1 / 16  # the curve's strength if whole selects λ = 0 (said in summary)
  lrs, taus = (0.1, 0.2, 0.4, 0.8), (2.0, 1.0, 1 / 2, 1 / 4, 1 / 8, 1 / 16)
  if variant == "default":
    c.run = mnist1d_run(2000)
    tune = {"seeds": (0, 1, 2), "dataset": mnist1d_draw(1, 1000)}
    confirm = {"seeds": tuple(range(100, 112)), "dataset": mnist1d_draw(2, 20_000)}
    confirm["min_seeds"] = 10
  elif variant == "smoke":  # seconds; the tests point preregistration at a temporary file
    c.run = mnist1d_run(40)
    c.run.dataset.validation_fraction = 0.5
    c.switches = (0.25, 0.5)
    c.resamples = 50
    lrs, taus = (0.1, 0.2), (1.0, 1 / 16)
    tune, confirm = smoke_phases()
  else:
    raise ValueError(f"variant must be 'default' or 'smoke', got {variant!r}.")
  c.tune = ml_collections.ConfigDict({**tune, "learning_rates": lrs, "tau_over_T": taus})
  c.confirm = ml_collections.ConfigDict(confirm)
  c.claims = claims()
  return c
