"""The one training loop under every run: `train.fit`, each sweep strategy and every study.

`run_loop` drives K ≥ 1 configurations that share one compiled program (`Program`): one
configuration (`train.fit`, a sequential sweep), K stacked under ``jax.vmap`` (a vmapped sweep),
or one configuration spread over devices (``pmap`` / sharded ``jit``). The loop owns the
cadence of logging, diagnostics, evaluation and checkpoints, the host-side records of each run
(`RunRecord`: metrics.jsonl, learning rate and λ, equilibrium predictions, best evaluation,
divergence), and the progress callback. Because every path calls the same functions, "a sweep
row equals the same configuration trained alone" holds by construction.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from wd_jax import diagnostics as diag_lib
from wd_jax.engine import config as config_lib
from wd_jax.engine import data as data_lib
from wd_jax.engine import experiment
from wd_jax.transforms import decay_factor


@dataclasses.dataclass(frozen=True)
class Cadence:
  """When the loop logs, measures diagnostics, evaluates and checkpoints (steps are 1-based)."""

  steps: int
  log_every: int
  diagnostics_every: int  # 0: never
  eval_every: int
  checkpoint_every: int = 0  # 0: never

  @classmethod
  def from_config(cls, config: Any, *, checkpoints: bool = True) -> Cadence:
    """The config's cadence; unset fields scale with the run (`wd_jax.engine.config.cadence`)."""
    c = config_lib.cadence(config)
    if not checkpoints:
      c["checkpoint_every"] = 0
    return cls(steps=config.steps, **c)

  def logs(self, nxt: int) -> bool:
    return nxt % self.log_every == 0 or nxt == self.steps

  def diagnoses(self, nxt: int) -> bool:
    return bool(self.diagnostics_every) and nxt % self.diagnostics_every == 0

  def evaluates(self, nxt: int) -> bool:
    return nxt % self.eval_every == 0 or nxt == self.steps

  def checkpoints(self, nxt: int) -> bool:
    return bool(self.checkpoint_every) and (nxt % self.checkpoint_every == 0 or nxt == self.steps)

  def first_bookkeeping_step(self) -> int:
    """The first step that logs, measures diagnostics or ends the run."""
    bounds = [self.steps, self.log_every]
    if self.diagnostics_every:
      bounds.append(self.diagnostics_every)
    return min(bounds)


# ----------------------------------------------------------------------------------------------
# The host side of one run.


# Optimizers whose rotational equilibrium has a closed form (REFERENCES §4).
PREDICTED = ("adamw", "sgdw", "sgd_l2")


def equilibrium_predictions(exp: Any, step: int, metrics: dict[str, float]) -> dict[str, float]:
  """Predicted angular update and norm of each scale-invariant leaf (REFERENCES §4)."""
  o = exp.config.optimizer
  name, kwargs = o.name, dict(o.kwargs)
  if name not in PREDICTED or not exp.scale_invariant_sizes:
    return {}
  lr = float(exp.lr_schedule(step))
  lam = float(exp.wd_schedule(step) if callable(exp.wd_schedule) else exp.wd_schedule)
  if lr <= 0 or lam <= 0:
    return {}
  if name in ("adamw", "sgdw"):
    # The random-walk model needs the per-step shrink s = c_t λ: write it as α·(s/α).
    c = float(
      decay_factor(
        kwargs.get("coupling", "lr"),
        exp.lr_schedule,
        kwargs.get("peak_learning_rate", o.learning_rate),
        step,
      )
    )
    lam_eff = c * lam / lr
  else:
    lam_eff = lam
  out = {}
  b1, mu = kwargs.get("b1", 0.9), kwargs.get("momentum", 0.0)
  angle = diag_lib.predicted_angular_update(name, lr, lam_eff, b1=b1, momentum=mu)
  for p, size in exp.scale_invariant_sizes.items():
    if math.isfinite(angle):
      out[f"pred_angular_update/{p}"] = angle
    g_unit = metrics.get(f"grad_norm_unit/{p}")
    if name in ("sgd_l2", "sgdw") and g_unit is not None:
      out[f"pred_norm/{p}"] = diag_lib.predicted_equilibrium_norm(
        name, lr, lam_eff, size, grad_norm_at_unit_norm=g_unit, momentum=mu
      )
    elif name == "adamw":
      out[f"pred_norm/{p}"] = diag_lib.predicted_equilibrium_norm(name, lr, lam_eff, size)
  return out


class RunRecord:
  """The host side of one run: its records, its best evaluation, whether and where it diverged.

  Args:
    exp: the run's `experiment.Experiment` (its config, lr and λ schedules, scale-invariant leaves).
    writer: where records go (`runlog.MetricWriter`), or None to keep them in memory only.
    select_metric: the evaluation metric whose best value and step are kept
      (``"val_accuracy"`` when the dataset has a validation split, else ``"test_accuracy"``).
  """

  def __init__(self, exp: Any, writer: Any = None, *, select_metric: str = "test_accuracy"):
    self.exp, self.writer, self.select_metric = exp, writer, select_metric
    self.final: dict[str, Any] = {}
    self.best: float | None = None
    self.best_step: int | None = None
    self.diverged_at: int | None = None
    self.message = ""
    self.done = False
    self.step = 0  # the last step logged
    self.t0 = time.perf_counter()

  def mark_diverged(self, step: int, message: str) -> None:
    if self.diverged_at is None:
      self.diverged_at, self.message = step, message
    self.done = True

  def log(
    self,
    nxt: int,
    step: int,
    m: dict[str, float],
    *,
    evals: dict[str, float] | None,
    steps_per_sec: float,
    diagnostics: bool,
  ) -> None:
    """Writes the record of step `nxt` (or marks the run diverged if its loss is not finite)."""
    if not math.isfinite(m["loss"]):
      self.mark_diverged(nxt, f"non-finite loss {m['loss']} at step {nxt}")
      return
    exp = self.exp
    lr = float(exp.lr_schedule(step))
    for p in exp.scale_invariant_sizes:  # α/‖w‖² of a scale-invariant weight (REFERENCES §4)
      norm = m.get(f"param_norm/{p}")
      if norm is not None:
        m[f"effective_lr/{p}"] = lr / max(norm * norm, 1e-30)
    m["steps_per_sec"] = steps_per_sec
    m["learning_rate"] = lr
    wd = exp.wd_schedule
    m["weight_decay"] = float(wd(step) if callable(wd) else wd)
    if diagnostics:
      m.update(equilibrium_predictions(exp, step, m))
    if evals is not None:
      m.update(evals)
      value = evals.get(self.select_metric)
      if value is not None and math.isfinite(value) and (self.best is None or value > self.best):
        self.best, self.best_step = value, nxt
    if self.writer is not None:
      self.writer.write(nxt, m)
    self.final, self.step = m, nxt

  def close(self) -> None:
    if self.writer is not None:
      self.writer.close()
      self.writer = None
    self.done = True


# ----------------------------------------------------------------------------------------------
# The compiled side.

# Backend compilations per jitted function name, counted from JAX's own monitoring events (one
# ``backend_compile`` event per executable XLA builds; a reused executable emits none).
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_compiles: collections.Counter[str] = collections.Counter()
_program_ids = itertools.count()


def _count_compile(event: str, duration: float, **kwargs: Any) -> None:
  del duration
  if event == _COMPILE_EVENT:
    _compiles[kwargs.get("fun_name", "")] += 1


jax.monitoring.register_event_duration_secs_listener(_count_compile)


def _named(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
  """`fn` under a name of its own, which JAX's compile events then carry (``jit(<name>)``)."""

  def named(*args):
    return fn(*args)

  named.__name__ = named.__qualname__ = name
  return named


def all_finite(tree) -> jax.Array:
  """Whether every element of every leaf of `tree` is finite (a traced boolean)."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


class Program:
  """The compiled step, diagnostics step and evaluation shared by the runs of one loop.

  Args:
    exp: the `experiment.Experiment` every run shares (its optimizer may hold injected
      hyperparameters, so runs differing in lr/λ/seed share one program).
    batched: the state stacks K configurations on a leading axis (``jax.vmap``).
    parallel: a `wd_jax.engine.parallel.DataParallel` for one configuration over several devices.
  """

  def __init__(self, exp: Any, *, batched: bool = False, parallel: Any = None):
    if batched and parallel is not None and parallel.strategy != "none":
      raise ValueError("a batched (vmapped) program runs on one device: parallel must be 'none'.")
    self.exp, self.batched, self.parallel = exp, batched, parallel
    self.eval_split = "val" if exp.dataset.has_validation else "test"
    self._name = f"wd_jax_program{next(_program_ids)}_{'vmap' if batched else 'single'}"
    self._steps: dict[bool, Any] = {}
    self._eval = None
    self._items = None

  def step(self, diagnostics: bool = False):
    """The jitted ``(state, batch_source) -> (state, metrics)``, compiled once per kind."""
    if diagnostics not in self._steps:
      name = f"{self._name}_{'diagnostics_' if diagnostics else ''}step"
      if self.parallel is not None:

        def factory(*args, **kwargs):
          return _named(experiment.make_train_step(*args, **kwargs), name)

        fn = self.parallel.compile_step(self.exp, factory, with_diagnostics=diagnostics)
      else:
        fn = experiment.make_train_step(self.exp, with_diagnostics=diagnostics)
        if self.batched:
          fn = jax.vmap(fn, in_axes=(0, None))
        fn = jax.jit(_named(fn, name), donate_argnums=0)
      self._steps[diagnostics] = fn
    return self._steps[diagnostics]

  def num(self, state: Any) -> int:
    return int(np.shape(state.step)[0]) if self.batched else 1

  def local(self, tree: Any) -> Any:
    return self.parallel.local(tree) if self.parallel is not None else tree

  def fetch(self, metrics: dict[str, jax.Array], num: int) -> list[dict[str, float]]:
    """Per-configuration metrics as Python floats (the loop's only host sync)."""
    host = jax.device_get(self.local(metrics))
    return [
      {k: float(np.broadcast_to(np.asarray(v), (num,))[i]) for k, v in host.items()}
      for i in range(num)
    ]

  def evaluate(self, state: Any, split: str | None = None) -> list[dict[str, float]]:
    """Exact metrics over a whole split for every configuration (padded fixed-shape batches)."""
    split = split or self.eval_split
    num = self.num(state)
    if self._eval is None:
      fn = experiment.make_eval_step(self.exp)
      if self.batched:
        fn = jax.vmap(fn, in_axes=(0, 0, None, None, None))
      self._eval = jax.jit(_named(fn, f"{self._name}_eval"))
    local = self.local(state)
    totals: dict[str, np.ndarray] = {}
    batches = data_lib.eval_batches(self.exp.dataset, self.exp.config.eval_batch_size, split=split)
    for x, y, w in batches:
      out = jax.device_get(self._eval(local.params, local.rest, x, y, w))
      for k, v in out.items():
        totals[k] = totals.get(k, 0.0) + np.asarray(v, np.float64)
    n = np.maximum(totals.pop("count"), 1.0)
    per = {f"{split}_{k}": np.broadcast_to(v / n, (num,)) for k, v in totals.items()}
    return [{k: float(v[i]) for k, v in per.items()} for i in range(num)]

  def evaluate_items(self, state: Any, split: str = "test") -> dict[str, np.ndarray]:
    """Per-example metrics of one (unbatched) configuration over a whole split, in split order.

    Returns ``{"loss": (N,), "accuracy": (N,)}`` (no accuracy for regression): what an interval
    over test items (not only over seeds) is computed from. Padding is dropped.
    """
    if self.batched:
      raise ValueError("evaluate_items reads one configuration: use an unbatched Program.")
    if self._items is None:
      self._items = jax.jit(_named(experiment.make_item_step(self.exp), f"{self._name}_items"))
    local = self.local(state)
    parts: dict[str, list[np.ndarray]] = {}
    batches = data_lib.eval_batches(self.exp.dataset, self.exp.config.eval_batch_size, split=split)
    for x, y, w in batches:
      out = jax.device_get(self._items(local.params, local.rest, x, y))
      keep = np.asarray(w) > 0
      for k, v in out.items():
        parts.setdefault(k, []).append(np.asarray(v, np.float64)[keep])
    return {k: np.concatenate(v) for k, v in parts.items()}

  def params_finite(self, state: Any) -> list[bool]:
    local = self.local(state)
    check = jax.vmap(all_finite) if self.batched else all_finite
    ok = jax.device_get(check(local.params))
    return [bool(x) for x in np.broadcast_to(np.asarray(ok), (self.num(state),))]

  def compile_counts(self) -> dict[str, int]:
    """Executables XLA compiled for each jitted step and the evaluation (1 each: hyperparameters
    are state), counted from JAX's compile events (``jax.monitoring``); pmapped steps are not
    counted."""
    kind = "vmap" if self.batched else "single"
    out = {}
    for diag in self._steps:
      suffix = f"{'diagnostics_' if diag else ''}step"
      out[f"{kind}_{suffix}"] = _compiles[f"jit({self._name}_{suffix})"]
    if self._eval is not None:
      out[f"{kind}_eval"] = _compiles[f"jit({self._name}_eval)"]
    return out


# ----------------------------------------------------------------------------------------------
# The loop.


def run_loop(
  program: Program,
  state: Any,
  records: Sequence[RunRecord],
  *,
  cadence: Cadence,
  source: Callable[[int], Any],
  start: int = 0,
  on_checkpoint: Callable[[int, Any, list[dict[str, float]]], None] | None = None,
  progress: Callable[[int, Sequence[RunRecord], float], None] | None = None,
  stop: Callable[[], bool] | None = None,
) -> Any:
  """Trains `records` (one per configuration of `state`) from step `start` to `cadence.steps`.

  At every logging or diagnostics step it fetches the metrics, evaluates (at evaluation steps)
  and lets each live `RunRecord` write its record; a run whose loss is non-finite is marked
  diverged there and logs nothing more (under vmap it keeps computing in its own slice, which
  nothing mixes with the others). The loop ends early once every run is done, or after the
  step during which `stop()` became true (a preemption signal). At checkpoint steps it calls
  ``on_checkpoint(step, state, metrics)`` with that step's fetched metrics, which may mark runs
  diverged. At the end, a run whose parameters are not finite is marked diverged too.

  Returns:
    The final state.
  """
  plain = program.step(False)
  diag = program.step(True) if cadence.diagnostics_every else None
  num = len(records)
  last_t, last_step = time.perf_counter(), start
  for step in range(start, cadence.steps):
    nxt = step + 1
    diag_now = cadence.diagnoses(nxt)
    state, metrics = (diag if diag_now else plain)(state, source(step))
    per_run = None
    if cadence.logs(nxt) or diag_now:
      per_run = program.fetch(metrics, num)
      now = time.perf_counter()
      rate = (nxt - last_step) / max(now - last_t, 1e-9)
      last_t, last_step = now, nxt
      live = [i for i, r in enumerate(records) if not r.done and math.isfinite(per_run[i]["loss"])]
      evals = program.evaluate(state) if live and cadence.evaluates(nxt) else None
      for i, record in enumerate(records):
        if not record.done:
          e = evals[i] if evals is not None else None
          record.log(nxt, step, per_run[i], evals=e, steps_per_sec=rate, diagnostics=diag_now)
      if progress is not None:
        progress(nxt, records, rate)
      if all(r.done for r in records):
        break
    if on_checkpoint is not None and cadence.checkpoints(nxt):
      on_checkpoint(nxt, state, per_run if per_run is not None else program.fetch(metrics, num))
      if all(r.done for r in records):
        break
    if stop is not None and stop():
      break
  for record, finite in zip(records, program.params_finite(state)):
    if not finite:
      record.mark_diverged(cadence.steps, "non-finite parameters at the end")
  return state
