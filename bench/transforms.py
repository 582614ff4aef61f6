"""Overhead of wd_jax's optimizers against their optax counterparts, timed side by side.

What is measured, on one MLP (40→256→256→10, ReLU, softmax cross-entropy, float32, params a
plain dict, batch 512), per optimizer variant:

* ``step``: the jitted train step (loss+grad, ``opt.update``, ``optax.apply_updates``).
* ``update``: only ``opt.update`` + ``optax.apply_updates`` on a fixed, precomputed gradient.
  The optimizer is ~5% of the full step for this MLP, so the step ratio cannot resolve a 2%
  optimizer overhead; this mode isolates it (per-call dispatch included).

Every variant is compared with its own reference: wd_jax's recipes with the optax optimizer
they reproduce (same hyperparameters, same decay), ``with_weight_decay`` around
``optax.adam`` with the hand-written chain ``optax.adamw`` is (scale_by_adam →
add_decayed_weights → scale_by_learning_rate). Methodology, identical in both modes: one
separately compiled jit per variant, params and optimizer state donated. Every variant is
compiled and warmed up first; then each of `--rounds` rounds runs every variant for
`--steps` steps (default 50 for ``step``, 200 for ``update``) in a freshly shuffled order,
and the per-round ratio ``variant_time / reference_time`` is taken. Each table reports the
median over rounds of that ratio (robust to a noisy, shared machine), its interquartile
range, a 95% bootstrap interval of that median, and the median absolute time per step.
Second, separately compiled copies of ``optax.adamw`` and ``optax.contrib.muon`` against
themselves give the noise floor. The load average before and after is printed.

  python bench/transforms.py --mode=both --rounds=40 --json_out=/tmp/bench_transforms.json

Targets the project reports against: every recipe ≤ 1.05× its optax counterpart,
``with_weight_decay`` ≤ 1.02× the hand-written chain, ``adam_l2`` with
``track_moments=True`` ≤ 1.25× ``optax.adamw``.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import platform
import re
import shlex
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

import wd_jax

MODES = ("step", "update")
DEFAULT_STEPS = {"step": 50, "update": 200}

_MODE = flags.DEFINE_enum(
  "mode",
  "both",
  [*MODES, "both"],
  "step: loss+grad+update+apply; update: opt.update+apply_updates on a fixed gradient; "
  "both: run step then update, one table each.",
)
_ROUNDS = flags.DEFINE_integer("rounds", 15, "Timed rounds; each runs every variant once.")
_STEPS = flags.DEFINE_integer(
  "steps",
  None,
  "Steps per variant per round; default 50 in step mode, 200 in update mode. "
  "If set, used for every mode that runs.",
)
_BATCH = flags.DEFINE_integer("batch", 512, "Batch size.")
_WARMUP = flags.DEFINE_integer("warmup_rounds", 2, "Untimed rounds after compilation.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed for params, data and the round orders.")
_OPTIONAL = flags.DEFINE_bool(
  "optional", True, "Also time wd_jax.adamw(mask=default_mask) and wd_jax.adams."
)
_ONLY = flags.DEFINE_string(
  "only",
  None,
  "Comma-separated substrings: time only variants whose name contains one "
  "(their references and the noise floors are always timed).",
)
_HLO = flags.DEFINE_bool(
  "hlo_stats", True, "Print per-variant optimizer-state size and compiled-HLO op counts."
)
_JSON_OUT = flags.DEFINE_string("json_out", None, "Write the results as JSON to this path.")
_CLOCK = flags.DEFINE_enum(
  "clock",
  "wall",
  ["wall", "process"],
  "wall: time.perf_counter; process: time.process_time, the CPU time of every thread of this "
  "process (less sensitive to other processes taking the cores, on a shared machine).",
)

LR, WD = 1e-3, 1e-4
LAYERS = (40, 256, 256, 10)
BASELINE = "optax.adamw"
_OPCODE = re.compile(r"(?:^|\s)([a-z][\w.-]*)\(")


def variants(optional: bool) -> dict[str, tuple[Callable[[], optax.GradientTransformation], str]]:
  """Name → (optimizer factory, name of the variant it is compared with); references first."""
  out = {
    BASELINE: (lambda: optax.adamw(LR, weight_decay=WD), BASELINE),
    "optax.adamw (2nd copy)": (lambda: optax.adamw(LR, weight_decay=WD), BASELINE),
    "optax.nadamw": (lambda: optax.nadamw(LR, weight_decay=WD), "optax.nadamw"),
    "optax.lion": (lambda: optax.lion(LR, weight_decay=WD), "optax.lion"),
    "optax.lamb": (lambda: optax.lamb(LR, weight_decay=WD), "optax.lamb"),
    "optax.adan": (lambda: optax.adan(LR, weight_decay=WD), "optax.adan"),
    "optax.contrib.muon": (
      lambda: optax.contrib.muon(LR, weight_decay=WD),
      "optax.contrib.muon",
    ),
    "optax.contrib.muon (2nd copy)": (
      lambda: optax.contrib.muon(LR, weight_decay=WD),
      "optax.contrib.muon",
    ),
    "optax.adafactor": (lambda: optax.adafactor(LR, weight_decay_rate=WD), "optax.adafactor"),
    "optax.contrib.schedule_free_adamw": (
      lambda: optax.contrib.schedule_free_adamw(LR, weight_decay=WD),
      "optax.contrib.schedule_free_adamw",
    ),
    "wd_jax.adamw": (lambda: wd_jax.adamw(LR, weight_decay=WD), BASELINE),
    "wd_jax.with_weight_decay(optax.adam)": (
      lambda: wd_jax.with_weight_decay(optax.adam(LR), WD, learning_rate=LR),
      BASELINE,
    ),
    "wd_jax.nadamw": (lambda: wd_jax.nadamw(LR, weight_decay=WD), "optax.nadamw"),
    "wd_jax.lion": (lambda: wd_jax.lion(LR, weight_decay=WD), "optax.lion"),
    "wd_jax.lamb": (lambda: wd_jax.lamb(LR, weight_decay=WD), "optax.lamb"),
    "wd_jax.adan": (lambda: wd_jax.adan(LR, weight_decay=WD), "optax.adan"),
    "wd_jax.muon": (lambda: wd_jax.muon(LR, weight_decay=WD), "optax.contrib.muon"),
    "wd_jax.adafactor": (
      lambda: wd_jax.adafactor(LR, weight_decay_rate=WD),
      "optax.adafactor",
    ),
    "wd_jax.schedule_free_adamw": (
      lambda: wd_jax.schedule_free_adamw(LR, weight_decay=WD),
      "optax.contrib.schedule_free_adamw",
    ),
    "wd_jax.adam_l2": (lambda: wd_jax.adam_l2(LR, WD), BASELINE),
    "wd_jax.adam_l2(track_moments)": (
      lambda: wd_jax.adam_l2(LR, WD, track_moments=True),
      BASELINE,
    ),
  }
  if optional:
    out["wd_jax.adamw(mask=default_mask)"] = (
      lambda: wd_jax.adamw(LR, weight_decay=WD, mask=wd_jax.default_mask),
      BASELINE,
    )
    out["wd_jax.adams"] = (lambda: wd_jax.adams(LR, WD), BASELINE)
  if _ONLY.value:
    keep = [k for k in _ONLY.value.split(",") if k]
    chosen = {n for n in out if any(k in n for k in keep)}
    chosen |= {out[n][1] for n in chosen}  # their references ...
    chosen |= {n for n in out if "2nd copy" in n and out[n][1] in chosen}  # ... and noise floors
    out = {n: v for n, v in out.items() if n in chosen}
  return out


def init_params(key: jax.Array) -> dict[str, dict[str, jax.Array]]:
  params = {}
  for i, (n_in, n_out) in enumerate(itertools.pairwise(LAYERS)):
    key, sub = jax.random.split(key)
    params[f"dense{i}"] = {
      "kernel": jax.random.normal(sub, (n_in, n_out), jnp.float32) * np.sqrt(2.0 / n_in),
      "bias": jnp.zeros((n_out,), jnp.float32),
    }
  return params


def loss_fn(params: Any, x: jax.Array, y: jax.Array) -> jax.Array:
  h = x
  names = sorted(params)
  for i, name in enumerate(names):
    h = h @ params[name]["kernel"] + params[name]["bias"]
    if i < len(names) - 1:
      h = jax.nn.relu(h)
  return optax.softmax_cross_entropy_with_integer_labels(h, y).mean()


def make_step(opt: optax.GradientTransformation):
  """A fresh (separately traced and compiled) jitted train step for `opt`."""

  def step(params, opt_state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return jax.jit(step, donate_argnums=(0, 1))


def make_update(opt: optax.GradientTransformation):
  """A fresh jitted optimizer-only step for `opt`: update + apply on a given gradient."""

  def update(params, opt_state, grads):
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  return jax.jit(update, donate_argnums=(0, 1))


class Runner:
  """One variant in one mode: its optimizer, jitted function and (donated) buffers.

  `fn(params, opt_state, *args)` returns ``(params, opt_state, *aux)``; `args` are shared,
  never donated (the batch in step mode, the fixed gradient in update mode).
  """

  def __init__(
    self, name: str, mode: str, opt: optax.GradientTransformation, key: jax.Array, args: tuple
  ):
    self.name = name
    self.opt = opt
    self.fn = make_step(opt) if mode == "step" else make_update(opt)
    self.args = args
    self.params = init_params(key)
    self.opt_state = opt.init(self.params)
    self.aux: tuple = ()

  def run(self, n: int) -> float:
    """Seconds for `n` steps, blocking once at the end."""
    params, opt_state, fn, args = self.params, self.opt_state, self.fn, self.args
    aux = ()
    clock = time.process_time if _CLOCK.value == "process" else time.perf_counter
    t0 = clock()
    for _ in range(n):
      params, opt_state, *aux = fn(params, opt_state, *args)
    jax.block_until_ready((params, opt_state, aux))
    dt = clock() - t0
    self.params, self.opt_state, self.aux = params, opt_state, tuple(aux)
    return dt

  def check_finite(self) -> float | None:
    """Raises on non-finite params or loss; returns the last loss (step mode) or None."""
    for leaf in jax.tree.leaves(self.params):
      if not np.all(np.isfinite(np.asarray(leaf))):
        raise RuntimeError(f"{self.name}: non-finite params")
    if not self.aux:
      return None
    loss = float(self.aux[0])
    if not np.isfinite(loss):
      raise RuntimeError(f"{self.name}: non-finite loss {loss}")
    return loss


def hlo_stats(runner: Runner) -> dict[str, Any]:
  """Optimizer-state size and op counts of the compiled function (a separate compilation)."""
  state_leaves = jax.tree.leaves(runner.opt_state)
  text = runner.fn.lower(runner.params, runner.opt_state, *runner.args).compile().as_text()
  ops = collections.Counter()
  entry = False
  for line in text.splitlines():
    s = line.strip()
    if s.startswith("ENTRY"):
      entry = True
    elif entry and s == "}":
      entry = False
    elif entry and " = " in s:
      # "%fusion.3 = f32[40,256]{1,0} fusion(%p0, ...), kind=kLoop": the opcode precedes "(".
      m = _OPCODE.search(s.split(" = ", 1)[1])
      ops[m.group(1) if m else "?"] += 1
  return {
    "opt_state_leaves": len(state_leaves),
    "opt_state_floats": int(sum(np.size(a) for a in state_leaves)),
    "entry_ops": int(sum(ops.values())),
    "entry_fusions": int(ops.get("fusion", 0)),
    "entry_ops_by_kind": dict(ops.most_common()),
    "hlo_instructions_total": sum(1 for ln in text.splitlines() if " = " in ln),
  }


def median_ci(ratios: np.ndarray, seed: int, n_boot: int = 4000) -> tuple[float, float]:
  """95% bootstrap interval (percentile, over rounds) of the median per-round ratio."""
  rng = np.random.default_rng(seed)
  boots = np.median(rng.choice(ratios, size=(n_boot, len(ratios))), axis=1)
  lo, hi = np.percentile(boots, [2.5, 97.5])
  return float(lo), float(hi)


def quartiles(a: np.ndarray) -> tuple[float, float, float]:
  q25, q50, q75 = np.percentile(a, [25, 50, 75])
  return float(q25), float(q50), float(q75)


def time_rounds(runners: list, mode: str, rounds: int, steps: int) -> tuple[dict, list]:
  """Compiles and warms up every variant, then times `rounds` rounds of `steps` steps, each
  round in a fresh random order; the seconds per variant and each round's order."""
  t0 = time.perf_counter()
  for r in runners:
    r.run(1)
  print(f"compiled {len(runners)} variants in {time.perf_counter() - t0:.1f}s")
  rng = np.random.default_rng([_SEED.value, MODES.index(mode)])
  for _ in range(_WARMUP.value):
    for i in rng.permutation(len(runners)):
      runners[i].run(steps)
  names = [r.name for r in runners]
  times = {n: [] for n in names}
  orders = []
  for _ in range(rounds):
    order = rng.permutation(len(runners))
    orders.append([names[i] for i in order])
    for i in order:
      times[names[i]].append(runners[i].run(steps))
  return times, orders


def run_mode(
  mode: str, rounds: int, steps: int, pkey: jax.Array, x: jax.Array, y: jax.Array
) -> dict[str, Any]:
  """Compiles, warms up and times every variant in `mode`; prints its table(s)."""
  if mode == "step":
    args, what = (x, y), "loss+grad+update+apply"
  else:
    grads = jax.grad(loss_fn)(init_params(pkey), x, y)  # fixed; shared by every variant
    args, what = (grads,), "update+apply on a fixed gradient"
  print()
  print(f"== mode={mode} ({what}): {rounds} rounds x {steps} steps, {_WARMUP.value} warm-up rounds")
  table = variants(_OPTIONAL.value)
  runners = [Runner(name, mode, f(), pkey, args) for name, (f, _) in table.items()]
  names = [r.name for r in runners]
  reference = {name: ref for name, (_, ref) in table.items()}

  times, orders = time_rounds(runners, mode, rounds, steps)

  final_loss = {r.name: r.check_finite() for r in runners}

  results = {}
  for n in names:
    t = np.asarray(times[n])
    ratios = t / np.asarray(times[reference[n]])
    q25, med, q75 = quartiles(ratios)
    ci_lo, ci_hi = median_ci(ratios, _SEED.value)
    results[n] = {
      "reference": reference[n],
      "ratio_ci95": [ci_lo, ci_hi],
      "median_ms_per_step": float(np.median(t)) / steps * 1e3,
      "ratio_median": med,
      "ratio_q25": q25,
      "ratio_q75": q75,
      "ratio_iqr": q75 - q25,
      "round_seconds": t.tolist(),
    }
    if final_loss[n] is not None:
      results[n]["final_loss"] = final_loss[n]

  # Step mode in ms/step; update mode (tens of µs) in µs/step.
  unit, scale = ("ms", 1.0) if mode == "step" else ("µs", 1e3)
  print()
  print(
    f"| variant ({mode}) | median {unit}/step | compared with | ratio (median) | 95% CI | IQR |"
  )
  print("|---|---:|---|---:|---:|---:|")
  for n in names:
    res = results[n]
    if n == reference[n]:
      continue  # a reference against itself in the same run is 1 by construction
    print(
      f"| {n} | {res['median_ms_per_step'] * scale:.3f} | {reference[n]} | "
      f"{res['ratio_median']:.3f} | [{res['ratio_ci95'][0]:.3f}, {res['ratio_ci95'][1]:.3f}] | "
      f"{res['ratio_iqr']:.3f} [{res['ratio_q25']:.3f}, {res['ratio_q75']:.3f}] |"
    )

  if _HLO.value:
    print()
    print(
      f"| variant ({mode}) | opt-state leaves | opt-state floats | entry ops | entry fusions "
      "| HLO instructions |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in runners:
      st = hlo_stats(r)
      results[r.name]["hlo"] = st
      print(
        f"| {r.name} | {st['opt_state_leaves']} | {st['opt_state_floats']:,} | "
        f"{st['entry_ops']} | {st['entry_fusions']} | {st['hlo_instructions_total']} |"
      )

  return {"steps": steps, "rounds": rounds, "orders": orders, "variants": results}


def main(argv: list[str]) -> None:
  del argv
  modes = MODES if _MODE.value == "both" else (_MODE.value,)
  steps = {m: _STEPS.value or DEFAULT_STEPS[m] for m in modes}
  rounds, batch = _ROUNDS.value, _BATCH.value
  if rounds < 1 or batch < 1 or (_STEPS.value is not None and _STEPS.value < 1):
    raise app.UsageError("--rounds, --steps and --batch must be >= 1.")
  command = shlex.join([sys.executable, *sys.argv])
  device = jax.devices()[0]
  print(f"command: {command}")
  print(f"jax {jax.__version__}, optax {optax.__version__}, wd_jax {wd_jax.__version__}")
  print(
    f"device: {device.platform} {device.device_kind} ({device}), "
    f"{len(jax.devices())} device(s), {os.cpu_count()} host CPUs, {platform.processor() or '?'}"
  )
  print(
    f"MLP {'→'.join(map(str, LAYERS))}, batch {batch}, float32; modes: {', '.join(modes)}; "
    f"clock: {_CLOCK.value}"
  )

  key = jax.random.PRNGKey(_SEED.value)
  pkey, xkey, ykey = jax.random.split(key, 3)
  x = jax.random.normal(xkey, (batch, LAYERS[0]), jnp.float32)
  y = jax.random.randint(ykey, (batch,), 0, LAYERS[-1])
  load_before = os.getloadavg()
  results = {m: run_mode(m, rounds, steps[m], pkey, x, y) for m in modes}
  load_after = os.getloadavg()
  print(
    f"\nload average (1, 5, 15 min) before: {', '.join(f'{v:.2f}' for v in load_before)}; "
    f"after: {', '.join(f'{v:.2f}' for v in load_after)}"
  )

  if _JSON_OUT.value:
    payload = {
      "command": command,
      "jax_version": jax.__version__,
      "optax_version": optax.__version__,
      "wd_jax_version": wd_jax.__version__,
      "device": str(device),
      "platform": device.platform,
      "cpu_count": os.cpu_count(),
      "rounds": rounds,
      "batch": batch,
      "warmup_rounds": _WARMUP.value,
      "seed": _SEED.value,
      "noise_floors": ["optax.adamw (2nd copy)", "optax.contrib.muon (2nd copy)"],
      "clock": _CLOCK.value,
      "load_average_before": list(load_before),
      "load_average_after": list(load_after),
      "modes": results,
    }
    with open(_JSON_OUT.value, "w") as f:
      json.dump(payload, f, indent=2)
    print(f"\nwrote {_JSON_OUT.value}")


if __name__ == "__main__":
  app.run(main)
