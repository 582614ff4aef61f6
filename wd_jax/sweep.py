"""Hyperparameter sweeps: K configurations of one base config, trained as one compiled program.

A sweep is a base run config (`wd_jax.config.base_config` schema) plus either a grid (field ->
list of values, Cartesian product) or an explicit list of overrides:

>>> rows = run_sweep(config, {"learning_rate": [1e-3, 1e-2], "weight_decay": [1e-4, 1e-2]},
...                  "runs/sweep", strategy="vmap")

A field is ``learning_rate`` or ``weight_decay`` (config.optimizer.learning_rate / weight_decay,
the peak of the lr schedule and λ), ``seed``, or any dotted config path
(``optimizer.kwargs.b1``, ``batch_size``, ``optimizer.name`` ...).

Configurations that differ only in the peak lr, λ and seed form a *group*: the lr and λ live in
`optax.inject_hyperparams` state (`wd_jax.config.build_injectable_optimizer`) and the seed in
the initial parameters and the batch key, so the whole group shares one Experiment and one
compiled step. Any other difference (optimizer name, model, batch size, steps...) starts a new
group. Strategies, per group:

* ``vmap``: the group's TrainStates stacked on a leading axis and trained by
  ``jax.jit(jax.vmap(step, in_axes=(0, None)), donate_argnums=0)`` with the shared batch
  sampler, in chunks of
  `chunk_size` configurations (default: as many as fit the memory budget, `default_chunk_size`).
* ``sequential``: the configurations one after another through ONE jitted step (the
  hyperparameters are state, not constants: no recompilation; `strategy.json` records the
  compile count of every jitted step).
* ``processes``: `num_workers` worker processes, each pinned to its own cores
  (``os.sched_setaffinity``, ``PJRT_NPROC`` = its core count, which sizes XLA:CPU's thread
  pool, and ``--xla_cpu_multi_thread_eigen=false`` when it has one core), each running its share
  of the configurations with the sequential strategy and writing its runs' files itself.
* ``auto``: compiles and times a few steps of ``vmap``, then of ``sequential`` (skipped when
  vmap has less left to run than a compilation costs), on the group with the most work, and
  extrapolates both to the whole sweep. The winner's compilation is reused, and so are its
  measured steps when they all come before the first logging step (the winner's runs continue
  from the measured state, bitwise as if it had not been measured); the loser's compilation and
  ~0.2 s of steps are the price of measuring. For ``processes``
  it adds an optimistic estimate (this process's build + compile time, plus the measured CPU
  time of the work shared over the workers); only when that could win are the workers started
  in standby to time their own steps, and kept if they win. The choice and every measurement go
  to ``strategy.json`` and ``summary.md``. The choice is also recorded per sweep shape
  (`auto_cache_key`: jax/jaxlib versions, backend, device kind and count, usable cores, every
  group's program and size) in `auto_cache_path()`, like an autotuning cache: a later sweep of
  the same shape takes it without measuring (``remeasure=True`` measures again; setting
  ``WD_JAX_AUTO_CACHE=off`` disables the record).

Every configuration trains on the default device (config.parallel must be ``"none"``); the
sweep writes no checkpoints.

A configuration whose loss is non-finite at a logging step is marked diverged there, as
`wd_jax.train.fit` marks it, and logs nothing more; under vmap it keeps computing (NaNs stay in
its own slice: nothing in the step mixes configurations) until its chunk ends, because freezing
it on the device (``jnp.where`` over the whole state every step) cost 10-20% of a vmapped MLP
step here; a chunk stops early once all its configurations have diverged.

Each configuration's run is `train.fit`'s run of the same config: same seed, same batches,
same records, up to float rounding: injected (traced) hyperparameters instead of constants and,
under vmap, batched matmuls change a few float32 roundings (max |Δθ| 3e-8 to 6e-8 after 40
steps, tests/test_sweep.py). Rounding differences grow chaotically at large learning rates:
at peak lr 3e-2 on MNIST-1D the losses agree to 1e-7 for 100 steps and differ by 1e-2 at step
130, so long runs agree only to within run-to-run noise (Δ final test accuracy up to 0.02 in
bench/sweep.py). The sequential strategy is bitwise `train.fit` with the injectable optimizer
(checked over 1000 steps at lr 3e-2); fit itself bakes lr and λ in as constants.

Outputs, all in ONE workdir and all written atomically: ``config.json`` (base config, grid,
configurations, requested strategy), ``results.csv`` and ``results.md`` (one row per
configuration), ``runs/<index>-<name>/{config.json,metrics.jsonl}`` (the records `train.fit`
writes, at the base config's log_every/eval_every; no checkpoints), ``strategy.json`` and
``summary.md``. Bad grid input raises `ValueError` naming the field before anything is written.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import itertools
import json
import math
import os
import pickle
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.extend.core as jex_core
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from wd_jax import config as config_lib
from wd_jax import data as data_lib
from wd_jax import models as models_lib
from wd_jax import train
from wd_jax.runlog import MetricWriter, write_atomic

STRATEGIES = ("auto", "vmap", "sequential", "processes")
# Short grid names for the two injected hyperparameters.
ALIASES = {"learning_rate": "optimizer.learning_rate", "weight_decay": "optimizer.weight_decay"}
# Fields that live in the TrainState, not in the compiled program: configurations that differ
# only in these share one group (one Experiment, one compiled step).
BATCHED_FIELDS = ("optimizer.learning_rate", "optimizer.weight_decay", "seed")
# Columns every results row has, before the other grid fields and the metrics.
HYPER_COLUMNS = ("optimizer", "learning_rate", "weight_decay", "seed")
METRIC_COLUMNS = (
  "loss",
  "accuracy",
  "test_loss",
  "test_accuracy",
  "best_test_accuracy",
  "best_test_step",
  "diverged",
  "diverged_at_step",
  "steps",
  "strategy",
  "run_dir",
)
_COLUMN_OF_PATH = {
  "optimizer.name": "optimizer",
  "optimizer.learning_rate": "learning_rate",
  "optimizer.weight_decay": "weight_decay",
  "seed": "seed",
}
_ABBREVIATIONS = {
  "optimizer.learning_rate": "lr",
  "optimizer.weight_decay": "wd",
  "optimizer.name": "opt",
  "seed": "seed",
}
# Share of the free host memory one vmapped chunk may use (accelerators: of the free device memory).
HOST_MEMORY_FRACTION = 0.25
DEVICE_MEMORY_FRACTION = 0.5
# auto: time each candidate for at least this long (and at least _MIN_TIMED_STEPS steps).
_MEASURE_SECONDS = 0.2
_MIN_TIMED_STEPS = 3
_STATUS_SECONDS = 10.0


# ----------------------------------------------------------------------------------------------
# Grid -> configurations (everything here runs before the workdir exists).


@dataclasses.dataclass
class Run:
  """One configuration of a sweep.

  Attributes:
    index: position in the sweep (0-based; the order of the grid's Cartesian product, the last
      field varying fastest, or of the explicit list).
    name: ``<index>-<short name>``, e.g. ``"03-lr=0.003_wd=0.01"``; its directory under ``runs/``.
    overrides: grid field (as the user wrote it) -> value.
    config: the full run config.
  """

  index: int
  name: str
  overrides: dict[str, Any]
  config: ml_collections.ConfigDict


def _field_path(config: ml_collections.ConfigDict, field: Any) -> str:
  """The dotted config path of a grid field; `ValueError` naming it if the config lacks it."""
  if not isinstance(field, str) or not field:
    raise ValueError(f"sweep grid field names must be non-empty strings, got {field!r}.")
  path = ALIASES.get(field, field)
  parts = path.split(".")
  node: Any = config
  for i, part in enumerate(parts):
    if isinstance(node, ml_collections.ConfigDict) and part in node:
      node = node[part]
      continue
    # A new keyword argument (optimizer.kwargs.b1) is checked by the constructor it is passed to.
    if i == len(parts) - 1 and i > 0 and parts[i - 1] == "kwargs":
      return path
    raise ValueError(
      f"sweep grid field {field!r}: the config has no field {path!r}. Use learning_rate, "
      "weight_decay, seed or a dotted config path (e.g. optimizer.kwargs.b1)."
    )
  if isinstance(node, ml_collections.ConfigDict):
    raise ValueError(f"sweep grid field {field!r}: {path!r} is a group of fields, not a field.")
  return path


def _check_value(field: str, path: str, value: Any) -> Any:
  if path in ("optimizer.learning_rate", "optimizer.weight_decay"):
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or value < 0:
      raise ValueError(
        f"sweep grid field {field!r}: values must be finite numbers >= 0, got {value!r}."
      )
    return float(value)
  if path == "seed":
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
      raise ValueError(f"sweep grid field {field!r}: values must be ints >= 0, got {value!r}.")
    return int(value)
  return value


def _set_field(config: ml_collections.ConfigDict, field: str, path: str, value: Any) -> None:
  *parents, leaf = path.split(".")
  node = config
  for p in parents:
    node = node[p]
  try:
    # A config from --config is locked; a grid may add new keys (e.g. optimizer.kwargs.coupling).
    with node.unlocked():
      node[leaf] = value
  except (TypeError, ValueError) as e:
    raise ValueError(
      f"sweep grid field {field!r}: {value!r} does not fit config.{path}: {e}"
    ) from e


def _format_value(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:g}"
  if isinstance(value, (tuple, list)):
    return "x".join(_format_value(v) for v in value)
  return str(value)


def _short_name(overrides: Mapping[str, Any], paths: Mapping[str, str]) -> str:
  if not overrides:
    return "base"
  parts = [
    f"{_ABBREVIATIONS.get(paths[k], paths[k].split('.')[-1])}={_format_value(v)}"
    for k, v in overrides.items()
  ]
  return re.sub(r"[^A-Za-z0-9._=+-]", "_", "_".join(parts))[:80]


def expand_grid(
  base_config: ml_collections.ConfigDict, grid_or_list: Mapping[str, Any] | Sequence[Any]
) -> list[Run]:
  """The sweep's configurations, each validated; nothing is built or written.

  Args:
    base_config: a run config (`wd_jax.config.base_config` schema).
    grid_or_list: a dict field -> non-empty list of values (Cartesian product, in the dict's
      order, the last field varying fastest), or a non-empty list of dicts field -> value.

  Returns:
    One `Run` per configuration.

  Raises:
    ValueError: naming the field, for an unknown field, an empty list, a non-numeric or negative
      learning rate / weight decay, a value of the wrong type, or a config that fails
      `wd_jax.config.validate`.
  """
  config_lib.validate(base_config)
  if isinstance(grid_or_list, Mapping):
    if not grid_or_list:
      raise ValueError("sweep grid is empty: give at least one field and its values.")
    for field, values in grid_or_list.items():
      if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"sweep grid field {field!r}: values must be a list, got {values!r}.")
      if not values:
        raise ValueError(f"sweep grid field {field!r}: the list of values is empty.")
    fields = list(grid_or_list)
    combos = [dict(zip(fields, vs)) for vs in itertools.product(*grid_or_list.values())]
  elif isinstance(grid_or_list, Sequence) and not isinstance(grid_or_list, (str, bytes)):
    if not grid_or_list:
      raise ValueError("sweep list of configurations is empty.")
    for i, item in enumerate(grid_or_list):
      if not isinstance(item, Mapping):
        raise ValueError(f"sweep configuration {i} must be a dict field -> value, got {item!r}.")
    combos = [dict(item) for item in grid_or_list]
  else:
    raise ValueError(
      f"sweep grid must be a dict field -> list or a list of dicts, got {grid_or_list!r}."
    )
  paths = {f: _field_path(base_config, f) for combo in combos for f in combo}
  width = len(str(len(combos) - 1))
  runs = []
  for index, combo in enumerate(combos):
    config = base_config.copy_and_resolve_references()
    overrides = {}
    for field, value in combo.items():
      value = _check_value(field, paths[field], value)
      _set_field(config, field, paths[field], value)
      overrides[field] = value
    try:
      config_lib.validate(config)
      if config.get("parallel", "none") != "none":
        raise ValueError(
          "a sweep trains every configuration on one device: config.parallel must be 'none', "
          f"got {config.parallel!r}."
        )
    except (TypeError, ValueError) as e:
      fields = ", ".join(repr(f) for f in overrides) or "none"
      raise ValueError(f"sweep configuration {index} (fields {fields}; {overrides}): {e}") from e
    runs.append(Run(index, f"{index:0{width}d}-{_short_name(overrides, paths)}", overrides, config))
  return runs


def group_key(config: ml_collections.ConfigDict) -> str:
  """What a compiled program depends on: the config without `BATCHED_FIELDS` (as JSON)."""
  c = config.copy_and_resolve_references()
  for path in BATCHED_FIELDS:
    *parents, leaf = path.split(".")
    node = c
    for p in parents:
      node = node[p]
    node[leaf] = type(node[leaf])(0)
  return c.to_json_best_effort(sort_keys=True)


def group_runs(runs: Sequence[Run]) -> list[list[Run]]:
  """Runs grouped by `group_key`, groups in order of their first run."""
  groups: dict[str, list[Run]] = {}
  for run in runs:
    groups.setdefault(group_key(run.config), []).append(run)
  return list(groups.values())


# ----------------------------------------------------------------------------------------------
# The engine of one group.


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _tree_bytes(tree) -> int:
  return sum(int(np.prod(np.shape(x))) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def _itemsize(dtype: Any) -> int:
  try:
    return np.dtype(dtype).itemsize
  except TypeError:  # extended dtypes (PRNG keys)
    return int(getattr(dtype, "itemsize", 8))


def _jaxpr_bytes(jaxpr: jex_core.Jaxpr) -> int:
  """Σ of the sizes of every value a jaxpr computes (recursively): an upper bound of its live
  memory, since XLA fuses and reuses buffers."""
  total = 0
  for eqn in jaxpr.eqns:
    for v in eqn.outvars:
      aval = v.aval
      if hasattr(aval, "shape") and hasattr(aval, "dtype"):
        total += int(np.prod(aval.shape)) * _itemsize(aval.dtype)
    for sub in jex_core.jaxprs_in_params(eqn.params):
      total += _jaxpr_bytes(sub)
  return total


def memory_budget_bytes() -> int:
  """Memory one vmapped chunk may use: `DEVICE_MEMORY_FRACTION` of the default device's free
  memory when it reports it (GPU/TPU), else `HOST_MEMORY_FRACTION` of the free host memory."""
  with contextlib.suppress(Exception):
    stats = jax.devices()[0].memory_stats()
    if stats and "bytes_limit" in stats:
      free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
      return int(DEVICE_MEMORY_FRACTION * free)
  free = None
  with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
    for line in f:
      if line.startswith("MemAvailable:"):
        free = int(line.split()[1]) * 1024
  if free is None:
    try:
      free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
      free = 4 << 30
  return int(HOST_MEMORY_FRACTION * free)


class _Group:
  """Runs that differ only in lr, λ and seed: one Experiment and one compiled step for all."""

  def __init__(self, runs: Sequence[Run]):
    self.runs = list(runs)
    self.config = config = self.runs[0].config
    t0 = time.perf_counter()
    base = train.build(config)
    self.optimizer = config_lib.build_injectable_optimizer(config)
    # The step's effective_lr diagnostic reads exp.lr_schedule: give it the unit-peak schedule
    # and scale by each run's own peak lr on the host.
    self.exp = dataclasses.replace(
      base, optimizer=self.optimizer, lr_schedule=config_lib.learning_rate_schedule(config, 1.0)
    )
    self.base_exp = base
    self.sampler = data_lib.make_batch_fn(base.dataset, config.batch_size)
    self._model_states = {config.seed: (base.init_state.params, base.init_state.rest)}
    self._steps: dict[tuple[bool, bool], Any] = {}
    self._evals: dict[bool, Any] = {}
    self._bytes_per_config: int | None = None
    self.build_seconds = time.perf_counter() - t0

  def bytes_per_config(self) -> int:
    """Memory one configuration needs in a vmapped step (see `default_chunk_size`), cached."""
    if self._bytes_per_config is None:
      state = self.init_states(self.runs[:1], batched=False)
      closed = jax.make_jaxpr(train.make_train_step(self.exp))(state, self.sampler)
      self._bytes_per_config = 3 * _tree_bytes(state) + _jaxpr_bytes(closed.jaxpr)
    return self._bytes_per_config

  @property
  def work(self) -> int:
    """Configuration-steps this group trains."""
    return len(self.runs) * self.config.steps

  def init_state(self, run: Run) -> train.TrainState:
    """`train.build(run.config).init_state`, with the injectable optimizer's state."""
    cfg = run.config
    if cfg.seed not in self._model_states:
      model = models_lib.build_model(  # as train.build does, without reloading the dataset
        cfg.model.name,
        num_classes=self.base_exp.dataset.num_classes,
        input_shape=self.base_exp.dataset.input_shape,
        rngs=nnx.Rngs(cfg.seed),
        **dict(cfg.model.kwargs),
      )
      # Plain dicts, as train.build keeps them (nnx.State would cost Python time per call).
      self._model_states[cfg.seed] = tuple(
        nnx.to_pure_dict(s) for s in models_lib.split_model(model)[2:]
      )
    # Copies: the jitted step donates its input, and the cached arrays serve several runs.
    params, rest = jax.tree.map(jnp.copy, self._model_states[cfg.seed])
    opt_state = config_lib.set_hyperparams(
      self.optimizer.init(params),
      learning_rate=cfg.optimizer.learning_rate,
      weight_decay=cfg.optimizer.weight_decay,
    )
    return train.TrainState(
      step=jnp.zeros([], jnp.int32),
      params=params,
      rest=rest,
      opt_state=opt_state,
      key=jax.random.PRNGKey(cfg.seed + 1),
    )

  def init_states(self, runs: Sequence[Run], batched: bool):
    states = [self.init_state(r) for r in runs]
    if batched:
      return jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    (state,) = states
    return state

  def step_fn(self, batched: bool, diagnostics: bool = False):
    """The jitted (vmapped if `batched`) step; one object per kind, so it compiles once."""
    key = (batched, diagnostics)
    if key not in self._steps:
      fn = train.make_train_step(self.exp, with_diagnostics=diagnostics)
      if batched:
        fn = jax.vmap(fn, in_axes=(0, None))
      self._steps[key] = jax.jit(fn, donate_argnums=0)
    return self._steps[key]

  def compile_counts(self) -> dict[str, int]:
    """Compiled executables of every jitted function of this group (1 each: no recompilation)."""
    out = {}
    for (batched, diag), fn in self._steps.items():
      out[f"{'vmap' if batched else 'single'}_{'diagnostics_' if diag else ''}step"] = (
        fn._cache_size()
      )
    for batched, fn in self._evals.items():
      out[f"{'vmap' if batched else 'single'}_eval"] = fn._cache_size()
    return out

  def evaluate(self, state, batched: bool, num: int) -> list[dict[str, float]]:
    """`train.evaluate` of every configuration of `state` (the same sums, in the same order)."""
    if batched not in self._evals:
      fn = train.make_eval_step(self.exp)
      if batched:
        fn = jax.vmap(fn, in_axes=(0, 0, None, None, None))
      self._evals[batched] = jax.jit(fn)
    fn = self._evals[batched]
    totals: dict[str, np.ndarray] = {}
    for x, y, w in data_lib.eval_batches(self.exp.dataset, self.config.eval_batch_size):
      out = jax.device_get(fn(state.params, state.rest, x, y, w))
      for k, v in out.items():
        totals[k] = totals.get(k, 0.0) + np.asarray(v, np.float64)
    n = np.maximum(totals.pop("count"), 1.0)
    per = {f"test_{k}": np.broadcast_to(v / n, (num,)) for k, v in totals.items()}
    return [{k: float(v[i]) for k, v in per.items()} for i in range(num)]

  def train(
    self,
    runs: Sequence[Run],
    workdir: str,
    *,
    batched: bool,
    strategy: str,
    tensorboard: bool = False,
    status: Callable[[str], None] | None = None,
    return_states: bool = False,
    warm: tuple[Any, int] | None = None,
  ) -> list[dict[str, Any]]:
    """Trains `runs` (one at a time, or stacked if `batched`), writing their run directories.

    `warm` = (state, steps): continue from the state `auto` measured, `steps` steps in (none of
    them a logging or diagnostics step, see `_reusable_steps`), instead of from step 0.
    """
    config = self.config
    num = len(runs)
    if not batched and num != 1:
      raise ValueError(f"an unbatched call trains one run, got {num}.")
    trackers = [_Tracker(self, run, workdir, tensorboard, strategy) for run in runs]
    state, start = warm if warm is not None else (self.init_states(runs, batched), 0)
    plain = self.step_fn(batched)
    diag = self.step_fn(batched, True) if config.diagnostics_every else None
    unit_lr = config_lib.learning_rate_schedule(config, 1.0)
    last_t, last_step = time.perf_counter(), start
    last_status = last_t
    try:
      for step in range(start, config.steps):
        nxt = step + 1
        log_now = nxt % config.log_every == 0 or nxt == config.steps
        diag_now = bool(config.diagnostics_every) and nxt % config.diagnostics_every == 0
        state, metrics = (diag if diag_now else plain)(state, self.sampler)
        if not (log_now or diag_now):
          continue
        metrics = jax.device_get(metrics)
        now = time.perf_counter()
        steps_per_sec = (nxt - last_step) / max(now - last_t, 1e-9)
        last_t, last_step = now, nxt
        evals = None
        if nxt % config.eval_every == 0 or nxt == config.steps:
          evals = self.evaluate(state, batched, num)
        unit = np.float32(unit_lr(step))
        metrics = {k: np.broadcast_to(np.asarray(v), (num,)) for k, v in metrics.items()}
        for i, tracker in enumerate(trackers):
          if not tracker.done:
            tracker.log(
              nxt,
              step,
              {k: float(v[i]) for k, v in metrics.items()},
              evals=evals[i] if evals else None,
              steps_per_sec=steps_per_sec,
              diagnostics=diag_now,
              unit_lr=unit,
            )
        live = [t for t in trackers if not t.done]
        # Progress at every evaluation, else at most every _STATUS_SECONDS.
        if status is not None and (evals or not live or now - last_status > _STATUS_SECONDS):
          status(_status_line(nxt, config.steps, live, num, steps_per_sec))
          last_status = now
        if not live:
          break
      finite = jax.device_get(
        jax.vmap(_all_finite)(state.params) if batched else _all_finite(state.params)
      )
      steps_done = np.broadcast_to(np.asarray(jax.device_get(state.step)), (num,))
    finally:
      for tracker in trackers:
        tracker.close()
    finite = np.broadcast_to(np.asarray(finite), (num,))
    rows = []
    host_state = jax.device_get(state) if return_states else None
    for i, tracker in enumerate(trackers):
      if not finite[i]:
        tracker.mark_diverged(config.steps, "non-finite parameters at the end")
      row = tracker.result(int(steps_done[i]))
      if return_states:
        row["state"] = jax.tree.map(lambda x, i=i: x[i], host_state) if batched else host_state
      rows.append(row)
    return rows


def _status_line(step: int, steps: int, live: list[_Tracker], num: int, rate: float) -> str:
  losses = [t.final.get("loss", math.nan) for t in live]
  text = f"step {step}/{steps}  running {len(live)}/{num}"
  if losses:
    text += f"  loss {min(losses):.4f}..{max(losses):.4f}"
  accs = [t.final["test_accuracy"] for t in live if "test_accuracy" in t.final]
  if accs:
    text += f"  test_accuracy {min(accs):.4f}..{max(accs):.4f}"
  return text + f"  {rate:.0f} steps/s"


class _Tracker:
  """The host side of one run: its metrics file, its best test accuracy, its divergence."""

  def __init__(self, group: _Group, run: Run, workdir: str, tensorboard: bool, strategy: str):
    self.run, self.strategy = run, strategy
    cfg = run.config
    self.rel_dir = os.path.join("runs", run.name)
    run_dir = os.path.join(workdir, self.rel_dir)
    os.makedirs(run_dir, exist_ok=True)
    write_atomic(
      os.path.join(run_dir, "config.json"), cfg.to_json_best_effort(indent=2, sort_keys=True) + "\n"
    )
    self.writer = MetricWriter(run_dir, tensorboard=tensorboard)
    self.lr = cfg.optimizer.learning_rate
    self.wd_schedule = config_lib.weight_decay_schedule(cfg)
    # For train.equilibrium_predictions, which reads the run's own config and schedules.
    self.exp = dataclasses.replace(
      group.base_exp,
      config=cfg,
      lr_schedule=config_lib.learning_rate_schedule(cfg),
      wd_schedule=self.wd_schedule,
    )
    self.final: dict[str, float] = {}
    self.best_test_accuracy: float | None = None
    self.best_test_step: int | None = None
    self.diverged_at: int | None = None
    self.message = ""
    self.done = False
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
    unit_lr: np.float32,
  ) -> None:
    """Writes the record `train.fit` writes at step `nxt` (or marks the run diverged)."""
    if not math.isfinite(m["loss"]):
      self.mark_diverged(nxt, f"non-finite loss at step {nxt}")
      return
    for k in m:
      if k.startswith("effective_lr/"):
        m[k] *= self.lr
    m["steps_per_sec"] = steps_per_sec
    # train.fit logs float32(peak × shape(t)): the same float32 product.
    m["learning_rate"] = float(np.float32(self.lr) * unit_lr)
    wd = self.wd_schedule
    m["weight_decay"] = float(wd(step) if callable(wd) else wd)
    if diagnostics:
      m.update(train.equilibrium_predictions(self.exp, step, m))
    if evals is not None:
      m.update(evals)
      acc = evals.get("test_accuracy")
      if acc is not None and math.isfinite(acc):
        if self.best_test_accuracy is None or acc > self.best_test_accuracy:
          self.best_test_accuracy, self.best_test_step = acc, nxt
    self.writer.write(nxt, m)
    self.final = m

  def close(self) -> None:
    if self.writer is not None:
      self.writer.close()
      self.writer = None
    self.done = True

  def result(self, steps_done: int) -> dict[str, Any]:
    cfg = self.run.config
    row: dict[str, Any] = {
      "index": self.run.index,
      "name": self.run.name,
      "optimizer": cfg.optimizer.name,
      "learning_rate": cfg.optimizer.learning_rate,
      "weight_decay": cfg.optimizer.weight_decay,
      "seed": cfg.seed,
    }
    for field, value in self.run.overrides.items():
      column = _COLUMN_OF_PATH.get(ALIASES.get(field, field), field)
      row.setdefault(column, value)
    diverged = self.diverged_at is not None
    final = {} if diverged else self.final
    for k in ("loss", "accuracy", "test_loss", "test_accuracy"):
      row[k] = final.get(k, math.nan)
    row["best_test_accuracy"] = (
      math.nan if self.best_test_accuracy is None else self.best_test_accuracy
    )
    row["best_test_step"] = self.best_test_step
    row["diverged"] = diverged
    row["diverged_at_step"] = self.diverged_at
    row["steps"] = self.diverged_at if diverged else steps_done  # train.fit stops there too
    row["strategy"] = self.strategy
    row["run_dir"] = self.rel_dir
    row["wall_time_sec"] = time.perf_counter() - self.t0
    return row


# ----------------------------------------------------------------------------------------------
# Strategies.


def _build_groups(runs: Sequence[Run]) -> list[_Group]:
  groups = []
  for rs in group_runs(runs):
    try:
      groups.append(_Group(rs))
    except (TypeError, ValueError) as e:
      fields = sorted({f for r in rs for f in r.overrides})
      names = ", ".join(r.name for r in rs[:3]) + (" ..." if len(rs) > 3 else "")
      raise ValueError(
        f"sweep configurations {names} (grid fields {fields}) fail to build: {e}"
      ) from e
  return groups


def _split(items: Sequence[Any], size: int) -> list[list[Any]]:
  """`items` in ceil(len/size) chunks of balanced sizes (at most two distinct sizes)."""
  n = max(1, math.ceil(len(items) / max(1, size)))
  base, extra = divmod(len(items), n)
  out, start = [], 0
  for i in range(n):
    stop = start + base + (1 if i < extra else 0)
    out.append(list(items[start:stop]))
    start = stop
  return out


def default_chunk_size(group: _Group, budget_bytes: int | None = None) -> int:
  """Configurations per vmapped program that fit the memory budget.

  Bytes per configuration: its TrainState three times (input, output, gradients/updates) plus
  every value the step computes (Σ of the sizes in its jaxpr: an upper bound, XLA fuses and
  reuses buffers). The budget is `memory_budget_bytes()` unless given. Never more than the
  group's number of configurations, never less than 1.
  """
  budget = memory_budget_bytes() if budget_bytes is None else budget_bytes
  return int(max(1, min(len(group.runs), budget // max(group.bytes_per_config(), 1))))


def _run_vmap(
  groups, workdir, chunk_size, tensorboard, say, return_states, warm=None
) -> list[dict]:
  """`warm`: {(group index, first run index of the chunk): (state, steps)} from `auto`."""
  warm = warm or {}
  rows = []
  for g, group in enumerate(groups):
    size = chunk_size or default_chunk_size(group)
    chunks = _split(group.runs, size)
    for c, chunk in enumerate(chunks):
      label = f"[vmap] group {g + 1}/{len(groups)} chunk {c + 1}/{len(chunks)} ({len(chunk)} runs)"
      rows += group.train(
        chunk,
        workdir,
        batched=True,
        strategy="vmap",
        tensorboard=tensorboard,
        status=(lambda s, label=label: say(f"{label} {s}")) if say else None,
        return_states=return_states,
        warm=warm.get((g, chunk[0].index)),
      )
  return rows


def _run_sequential(
  groups, workdir, tensorboard, say, return_states, strategy: str = "sequential", warm=None
) -> list[dict]:
  """`warm`: {(group index, run index): (state, steps)} from `auto`."""
  warm = warm or {}
  rows = []
  total = sum(len(g.runs) for g in groups)
  done = 0
  for g, group in enumerate(groups):
    for run in group.runs:
      done += 1
      label = f"[{strategy}] run {done}/{total} {run.name}"
      rows += group.train(
        [run],
        workdir,
        batched=False,
        strategy=strategy,
        tensorboard=tensorboard,
        status=(lambda s, label=label: say(f"{label} {s}")) if say else None,
        return_states=return_states,
        warm=warm.get((g, run.index)),
      )
  return rows


def _time_steps(fn, state, sampler, limit: int) -> tuple[float, float, float, int, Any]:
  """(compile + first step seconds, wall s per step, CPU s per step, steps timed, final state).

  Times at least `_MIN_TIMED_STEPS` steps, then stops after `_MEASURE_SECONDS` or when `limit`
  steps (the first, untimed one included) have run.
  """
  t0 = time.perf_counter()
  state, _ = fn(state, sampler)
  jax.block_until_ready(state)
  first = time.perf_counter() - t0
  n, t1, c1 = 0, time.perf_counter(), time.process_time()
  while n < _MIN_TIMED_STEPS or (time.perf_counter() - t1 < _MEASURE_SECONDS and n + 1 < limit):
    state, _ = fn(state, sampler)
    n += 1
    if n % 4 == 0:
      jax.block_until_ready(state)
  jax.block_until_ready(state)
  wall, cpu = time.perf_counter() - t1, time.process_time() - c1
  return first, wall / n, cpu / n, n, state


def _reusable_steps(config: ml_collections.ConfigDict) -> int:
  """Steps `auto` may time and then keep as training: all before the first step that logs,
  runs diagnostics or ends the run (those need the training loop's bookkeeping)."""
  bounds = [config.steps, config.log_every]
  if config.diagnostics_every:
    bounds.append(config.diagnostics_every)
  return min(bounds) - 1


# ----------------------------------------------------------------------------------------------
# Worker processes.

_WORKER_BOOT = (
  "import os, sys; os.sched_setaffinity(0, {int(c) for c in sys.argv[2].split(',')}); "
  "from wd_jax import sweep; sys.exit(sweep._worker_main(sys.argv[1]))"
)


def _assign(runs: Sequence[Run], num_workers: int) -> list[list[Run]]:
  """Runs dealt to workers by total steps (longest first), each worker's runs kept in order."""
  loads = [0] * num_workers
  shares: list[list[Run]] = [[] for _ in range(num_workers)]
  for run in sorted(runs, key=lambda r: (-r.config.steps, r.index)):
    w = loads.index(min(loads))
    shares[w].append(run)
    loads[w] += run.config.steps
  return [sorted(s, key=lambda r: r.index) for s in shares if s]


def _worker_env(cores: Sequence[int]) -> dict[str, str]:
  env = dict(os.environ)
  flags = [
    f
    for f in env.get("XLA_FLAGS", "").split()
    if not f.startswith(("--xla_force_host_platform_device_count", "--xla_cpu_multi_thread_eigen"))
  ]
  if len(cores) == 1:
    flags.append("--xla_cpu_multi_thread_eigen=false")
  env["XLA_FLAGS"] = " ".join(flags)
  env["PJRT_NPROC"] = str(len(cores))  # sizes XLA:CPU's intra-op thread pool
  env["OMP_NUM_THREADS"] = str(len(cores))
  env["JAX_PLATFORMS"] = "cpu"
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
  return env


class _Workers:
  """`num_workers` worker processes, each pinned to its own cores, running shares of the runs."""

  def __init__(self, runs, workdir, num_workers, *, standby, tensorboard, return_states):
    self.tmp = tempfile.mkdtemp(prefix="wd_jax_sweep_")
    cores = sorted(os.sched_getaffinity(0))
    shares = _assign(runs, num_workers)
    self.procs, self.logs, self.shares = [], [], shares
    self.t0 = time.perf_counter()
    for w, share in enumerate(shares):
      mine = cores[w :: len(shares)] or [cores[w % len(cores)]]
      spec = {
        "runs": share,
        "workdir": os.path.abspath(workdir),
        "standby": standby,
        "tensorboard": tensorboard,
        "return_states": return_states,
        "ready": os.path.join(self.tmp, f"ready-{w}.json"),
        "out": os.path.join(self.tmp, f"out-{w}.pkl"),
        "launched_at": time.time(),
      }
      spec_path = os.path.join(self.tmp, f"spec-{w}.pkl")
      with open(spec_path, "wb") as f:
        pickle.dump(spec, f)
      log_path = os.path.join(self.tmp, f"worker-{w}.log")
      log = open(log_path, "w")  # closed in close()
      self.logs.append((log, log_path, spec))
      self.procs.append(
        subprocess.Popen(
          [sys.executable, "-c", _WORKER_BOOT, spec_path, ",".join(map(str, mine))],
          stdin=subprocess.PIPE,
          stdout=log,
          stderr=subprocess.STDOUT,
          env=_worker_env(mine),
          text=True,
        )
      )

  def _failed(self, w: int) -> RuntimeError:
    self.logs[w][0].flush()
    with open(self.logs[w][1]) as f:
      tail = f.read()[-3000:]
    return RuntimeError(f"sweep worker {w} exited with {self.procs[w].returncode}:\n{tail}")

  def wait_ready(self) -> list[dict[str, Any]]:
    """Each worker's measurement (standby mode), once all have built and timed their step."""
    out: list[dict[str, Any] | None] = [None] * len(self.procs)
    while any(o is None for o in out):
      for w, (_, _, spec) in enumerate(self.logs):
        if out[w] is None and os.path.exists(spec["ready"]):
          with open(spec["ready"]) as f:
            out[w] = json.load(f) | {"startup_sec": time.perf_counter() - self.t0}
        elif out[w] is None and self.procs[w].poll() is not None:
          raise self._failed(w)
      time.sleep(0.02)
    return out  # type: ignore[return-value]

  def send(self, word: str) -> None:
    for p in self.procs:
      with contextlib.suppress(BrokenPipeError, OSError):
        p.stdin.write(word + "\n")
        p.stdin.flush()
        p.stdin.close()

  def join(self, say) -> tuple[list[dict], list[dict]]:
    rows, infos = [], []
    for w, p in enumerate(self.procs):
      p.wait()
      if p.returncode != 0:
        raise self._failed(w)
      with open(self.logs[w][2]["out"], "rb") as f:
        out = pickle.load(f)
      rows += out["rows"]
      infos.append(out["info"])
      if say:
        say(f"[processes] worker {w} done: {len(out['rows'])} runs on cores {out['info']['cores']}")
    return rows, infos

  def close(self) -> None:
    for p in self.procs:
      if p.poll() is None:
        p.kill()
        p.wait()
      if p.stdin and not p.stdin.closed:
        with contextlib.suppress(OSError):
          p.stdin.close()
    for log, _, _ in self.logs:
      log.close()
    for name in os.listdir(self.tmp):
      os.unlink(os.path.join(self.tmp, name))
    os.rmdir(self.tmp)


def _worker_main(spec_path: str) -> int:
  """A worker process: builds its groups, optionally times its step and waits for go/stop,
  then trains its share sequentially and pickles its rows."""
  started = time.time()
  with open(spec_path, "rb") as f:
    spec = pickle.load(f)
  groups = _build_groups(spec["runs"])
  info: dict[str, Any] = {
    "cores": sorted(os.sched_getaffinity(0)),
    "import_sec": started - spec["launched_at"],  # interpreter, jax and wd_jax
    "build_sec": time.time() - started,  # dataset and model
  }
  if spec["standby"]:
    g = max(groups, key=lambda g: g.work)
    state = g.init_states(g.runs[:1], batched=False)
    first, step_sec, cpu_sec, n, _ = _time_steps(g.step_fn(False), state, g.sampler, g.config.steps)
    write_atomic(
      spec["ready"],
      json.dumps(
        {
          "compile_sec": first,
          "step_sec": step_sec,
          "cpu_sec_per_step": cpu_sec,
          "timed_steps": n,
          "work": sum(x.work for x in groups),
        }
      ),
    )
    if sys.stdin.readline().strip() != "go":
      return 0
  say = lambda s: print(s, flush=True)
  t_run = time.time()
  rows = _run_sequential(
    groups, spec["workdir"], spec["tensorboard"], say, spec["return_states"], "processes"
  )
  info["train_sec"] = time.time() - t_run  # compilation included
  info["compiles"] = [g.compile_counts() for g in groups]
  tmp = spec["out"] + ".tmp"
  with open(tmp, "wb") as f:
    pickle.dump({"rows": rows, "info": info}, f)
  os.replace(tmp, spec["out"])
  return 0


# ----------------------------------------------------------------------------------------------
# auto.


def _choose(
  groups, chunk_size, num_workers, say, workdir, tensorboard, return_states
) -> tuple[str, dict[str, Any], Any, dict[str, dict]]:
  """Measures the candidates; returns (strategy, measurements, workers kept in standby, warm).

  Predictions are of the time still to spend (the compilation a measurement did is reused by
  the strategy chosen), for the whole sweep, extrapolated from the group with the most work.
  The measured steps are real training steps when none of them has to log (`_reusable_steps`):
  ``warm[strategy]`` then holds the measured state, which that strategy continues from.
  """
  gi = max(range(len(groups)), key=lambda i: groups[i].work)
  g = groups[gi]
  total_work = sum(x.work for x in groups)
  m: dict[str, Any] = {"measured_on_group_with_configs": len(g.runs), "config_steps": total_work}
  reusable = _reusable_steps(g.config)
  # Never time more steps than one run trains; keep them if the loop need not have seen them.
  limit = reusable if reusable >= _MIN_TIMED_STEPS + 1 else g.config.steps
  warm: dict[str, dict] = {}

  def keep(name, key, state, n) -> int:
    if n + 1 <= reusable:
      warm[name] = {key: (state, n + 1)}
      return n + 1
    return 0

  def measure_vmap() -> float:
    size = chunk_size or default_chunk_size(g)
    chunks = _split(g.runs, size)
    state = g.init_states(chunks[0], batched=True)
    first, step, cpu, n, state = _time_steps(g.step_fn(True), state, g.sampler, limit)
    kept = keep("vmap", (gi, chunks[0][0].index), state, n)
    per_config = step / len(chunks[0])
    extra_compiles = len({len(c) for c in chunks}) - 1 + len(groups) - 1
    m["vmap"] = {
      "chunk_size": len(chunks[0]),
      "compile_sec": first,
      "step_sec": step,
      "step_sec_per_config": per_config,
      "timed_steps": n,
      "steps_kept": kept,
      "predicted_sec": (total_work - kept * len(chunks[0])) * per_config + extra_compiles * first,
    }
    return cpu / len(chunks[0])

  def measure_sequential() -> float:
    state = g.init_states(g.runs[:1], batched=False)
    first, step, cpu, n, state = _time_steps(g.step_fn(False), state, g.sampler, limit)
    kept = keep("sequential", (gi, g.runs[0].index), state, n)
    m["sequential"] = {
      "compile_sec": first,
      "step_sec": step,
      "cpu_sec_per_step": cpu,
      "timed_steps": n,
      "steps_kept": kept,
      "predicted_sec": (total_work - kept) * step + (len(groups) - 1) * first,
    }
    return cpu

  if max(len(x.runs) for x in groups) > 1:
    cpu_per_config_step = measure_vmap()
    # Measuring sequential costs a compilation (about vmap's; compiling it on another thread
    # meanwhile saved nothing here: XLA's compilations did not overlap): only worth it when vmap
    # has more than that left to run.
    if m["vmap"]["predicted_sec"] > m["vmap"]["compile_sec"]:
      cpu_per_config_step = measure_sequential()
    else:
      m["sequential"] = {"skipped": "vmap has less left to run than sequential would compile"}
  else:
    cpu_per_config_step = measure_sequential()
  measured = [s for s in ("vmap", "sequential") if "predicted_sec" in m.get(s, {})]
  best = min(measured, key=lambda s: m[s]["predicted_sec"])
  best_sec = m[best]["predicted_sec"]
  first = m[best]["compile_sec"]
  workers = None
  nw = min(num_workers or len(os.sched_getaffinity(0)), sum(len(x.runs) for x in groups))
  if nw >= 2 and jax.default_backend() == "cpu":
    # Workers build and compile what we did (after importing jax), then share the work, whose
    # CPU time is roughly conserved: an optimistic estimate, so losing candidates cost nothing.
    optimistic = g.build_seconds + first + total_work * cpu_per_config_step / nw
    m["processes"] = {"num_workers": nw, "optimistic_sec": optimistic}
    if optimistic < best_sec:
      if say:
        say(f"[auto] timing {nw} worker processes ({optimistic:.1f}s possible < {best_sec:.1f}s)")
      workers = _Workers(
        [r for x in groups for r in x.runs],
        workdir,
        nw,
        standby=True,
        tensorboard=tensorboard,
        return_states=return_states,
      )
  return best, m, workers, warm


# A recorded choice per sweep shape, so that repeating a sweep does not pay for measuring again.
AUTO_CACHE_ENV = "WD_JAX_AUTO_CACHE"
_AUTO_CACHE_ENTRIES = 200


def auto_cache_path() -> str | None:
  """Where `auto` records its choices: ``$WD_JAX_AUTO_CACHE`` (``off`` or empty disables it),
  else ``$XDG_CACHE_HOME/wd_jax/sweep_auto.json`` (default ``~/.cache/wd_jax/...``)."""
  value = os.environ.get(AUTO_CACHE_ENV)
  if value is not None:
    return None if value.strip().lower() in ("", "0", "off", "false", "no") else value
  root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(root, "wd_jax", "sweep_auto.json")


def auto_cache_key(groups: Sequence[_Group], chunk_size, num_workers) -> str:
  """What `auto`'s choice depends on: software, hardware, and every group's program and size."""
  import jaxlib

  dev = jax.devices()[0]
  parts = {
    "jax": jax.__version__,
    "jaxlib": jaxlib.__version__,
    "backend": jax.default_backend(),
    "device_kind": dev.device_kind,
    "devices": jax.device_count(),
    "usable_cores": len(os.sched_getaffinity(0)),
    "groups": [[group_key(g.config), len(g.runs)] for g in groups],
    "chunk_size": chunk_size,
    "num_workers": num_workers,
  }
  return json.dumps(parts, sort_keys=True)


def _read_auto_cache(path: str | None) -> dict[str, Any]:
  if not path or not os.path.exists(path):
    return {}
  try:
    with open(path) as f:
      table = json.load(f)
  except (OSError, ValueError):  # unreadable or corrupt: measure again (and rewrite it)
    return {}
  return table if isinstance(table, dict) else {}


def _write_auto_cache(path: str | None, key: str, chosen: str, measurements) -> None:
  if not path:
    return
  try:
    table = _read_auto_cache(path)
    table.pop(key, None)
    table[key] = {"chosen": chosen, "measured_at": time.time(), "measurements": measurements}
    keep = dict(list(table.items())[-_AUTO_CACHE_ENTRIES:])  # oldest entries go first
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomic(path, json.dumps(keep, default=str) + "\n")
  except OSError:  # a read-only home directory must not fail the sweep
    pass


def _decide_processes(workers, m, best, say) -> str:
  ready = workers.wait_ready()
  remaining = max(r["work"] * r["step_sec"] for r in ready)
  m["processes"].update(
    startup_sec=max(r["startup_sec"] for r in ready),
    step_sec=[r["step_sec"] for r in ready],
    predicted_sec=remaining,
  )
  if remaining < m[best]["predicted_sec"]:
    return "processes"
  return best


# ----------------------------------------------------------------------------------------------
# Outputs.


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
  extra = []
  for row in rows:
    for k in row:
      if k not in ("index", "name", *HYPER_COLUMNS, *METRIC_COLUMNS, "wall_time_sec", "state"):
        if k not in extra:
          extra.append(k)
  return ["index", "name", *HYPER_COLUMNS, *extra, *METRIC_COLUMNS]


def _csv_value(v: Any) -> str:
  if v is None:
    return ""
  if isinstance(v, float):
    return repr(v)
  if isinstance(v, (tuple, list)):
    return json.dumps(list(v))
  return str(v)


def _md_value(v: Any) -> str:
  if v is None:
    return ""
  if isinstance(v, bool):
    return "yes" if v else ""
  if isinstance(v, float):
    return "" if math.isnan(v) else f"{v:.4g}"
  return _csv_value(v)


def _best(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
  ok = [r for r in rows if not r["diverged"]]
  for key, sign in (("test_accuracy", 1), ("test_loss", -1), ("loss", -1)):
    scored = [r for r in ok if math.isfinite(r.get(key, math.nan))]
    if scored:
      return max(scored, key=lambda r: sign * r[key])
  return None


def _markdown_table(rows, columns) -> str:
  best = _best(rows)
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  for r in rows:
    cells = [_md_value(r.get(c)) for c in columns]
    if best is not None and r["index"] == best["index"]:
      cells = [f"**{c}**" if c else c for c in cells]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _write_outputs(workdir, base_config, rows, info, wall) -> None:
  columns = _columns(rows)
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(columns)
  for r in rows:
    writer.writerow([_csv_value(r.get(c)) for c in columns])
  write_atomic(os.path.join(workdir, "results.csv"), buf.getvalue())
  md_cols = [c for c in columns if c not in ("strategy", "run_dir")]
  write_atomic(
    os.path.join(workdir, "results.md"),
    "# Sweep results\n\nOne row per configuration; the best (final test accuracy) in bold.\n\n"
    + _markdown_table(rows, md_cols),
  )
  write_atomic(os.path.join(workdir, "strategy.json"), json.dumps(info, indent=2) + "\n")
  c, o = base_config, base_config.optimizer
  diverged = [r for r in rows if r["diverged"]]
  best = _best(rows)
  lines = [
    f"# Sweep: {c.dataset.name} / {c.model.name} / {o.name} (base config)",
    "",
    f"- grid fields: {', '.join(info['fields'])}",
    f"- {len(rows)} configurations, {len(diverged)} diverged; steps {c.steps}, batch "
    f"{c.batch_size}; lr schedule {o.lr_schedule} (the swept lr is its peak), λ schedule "
    f"{o.wd_schedule}",
    f"- strategy: {info['chosen']} (requested {info['requested']}); wall time {wall:.1f} s",
  ]
  if best is not None:
    hp = ", ".join(f"{k} {_md_value(best.get(k))}" for k in columns[2 : columns.index("loss")])
    lines.append(
      f"- best: {best['name']} ({hp}): final test accuracy "
      f"{_md_value(best['test_accuracy'])}, best {_md_value(best['best_test_accuracy'])} at "
      f"step {best['best_test_step']}, test loss {_md_value(best['test_loss'])}, train loss "
      f"{_md_value(best['loss'])}"
    )
  if diverged:
    lines.append("- diverged: " + ", ".join(r["name"] for r in diverged))
  if info.get("recorded_choice"):
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info["recorded_choice"]["measured_at"]))
    lines.append(f"- auto: the choice recorded for this sweep's shape on {when} (not measured)")
  if info.get("measurements"):
    lines += ["", "## auto: measurements (predicted seconds for the whole sweep)", ""]
    for name, v in info["measurements"].items():
      if isinstance(v, dict):
        lines.append(f"- {name}: " + ", ".join(f"{k} {_md_value(x)}" for k, x in v.items()))
  lines += ["", "## Top configurations", ""]
  ranked = sorted(
    (r for r in rows if not r["diverged"]),
    key=lambda r: -r["test_accuracy"] if math.isfinite(r["test_accuracy"]) else math.inf,
  )[:5]
  lines.append(_markdown_table(ranked, md_cols) if ranked else "(none finished)\n")
  lines.append("All rows: results.md / results.csv; per-run metrics: runs/<name>/metrics.jsonl.")
  write_atomic(os.path.join(workdir, "summary.md"), "\n".join(lines) + "\n")


def _jsonable_grid(grid_or_list: Any) -> Any:
  return json.loads(json.dumps(grid_or_list, default=lambda v: repr(v)))


def run_sweep(
  base_config: ml_collections.ConfigDict,
  grid_or_list: Mapping[str, Any] | Sequence[Mapping[str, Any]],
  workdir: str,
  *,
  strategy: str = "auto",
  chunk_size: int | None = None,
  num_workers: int | None = None,
  verbose: bool = True,
  tensorboard: bool = False,
  return_states: bool = False,
  remeasure: bool = False,
) -> list[dict[str, Any]]:
  """Trains every configuration of a sweep and writes one workdir (see the module docstring).

  Args:
    base_config: a run config (`wd_jax.config.base_config` schema).
    grid_or_list: dict field -> list of values (Cartesian product) or a list of dicts; fields
      are ``learning_rate``, ``weight_decay``, ``seed`` or dotted config paths.
    workdir: the output directory; it must not hold a sweep already.
    strategy: ``"auto"``, ``"vmap"``, ``"sequential"`` or ``"processes"``.
    chunk_size: vmap only: configurations per compiled program (default `default_chunk_size`).
    num_workers: processes only: worker processes (default: the number of usable cores).
    verbose: print progress to stderr.
    tensorboard: also write TensorBoard event files in every run directory.
    return_states: add each run's final TrainState (host arrays) under ``"state"``.
    remeasure: auto only: measure even if `auto_cache_path()` records a choice for this sweep's
      shape (`auto_cache_key`); the new choice replaces the recorded one.

  Returns:
    One dict per configuration, in sweep order: the row of ``results.csv`` (index, name,
    optimizer, learning_rate, weight_decay, seed, the other grid fields, loss, accuracy,
    test_loss, test_accuracy, best_test_accuracy, best_test_step, diverged, diverged_at_step,
    steps, strategy, run_dir) plus wall_time_sec.

  Raises:
    ValueError: bad grid input, strategy, chunk_size or num_workers, or an existing sweep in
      `workdir`; raised before anything is written.
  """
  t_start = time.perf_counter()
  if strategy not in STRATEGIES:
    raise ValueError(f"strategy must be one of {list(STRATEGIES)}, got {strategy!r}.")
  for name, value in (("chunk_size", chunk_size), ("num_workers", num_workers)):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
      raise ValueError(f"{name} must be None or an int >= 1, got {value!r}.")
  runs = expand_grid(base_config, grid_or_list)
  if os.path.exists(os.path.join(workdir, "config.json")):
    raise ValueError(f"workdir {workdir!r} already holds a run; use a new workdir.")
  groups = _build_groups(runs)  # builds (and so checks) every model before writing anything
  say = (lambda s: print(s, file=sys.stderr, flush=True)) if verbose else None
  os.makedirs(workdir, exist_ok=True)
  write_atomic(
    os.path.join(workdir, "config.json"),
    json.dumps(
      {
        "base": json.loads(base_config.to_json_best_effort(sort_keys=True)),
        "grid": _jsonable_grid(grid_or_list),
        "configurations": [{"name": r.name, **_jsonable_grid(r.overrides)} for r in runs],
        "strategy": strategy,
        "chunk_size": chunk_size,
        "num_workers": num_workers,
      },
      indent=2,
    )
    + "\n",
  )
  info: dict[str, Any] = {
    "requested": strategy,
    "fields": list(dict.fromkeys(f for r in runs for f in r.overrides)),
    "groups": len(groups),
    "configurations": len(runs),
  }
  workers, warm = None, {}
  try:
    chosen = strategy
    if strategy == "auto":
      cache_path = auto_cache_path()
      key = auto_cache_key(groups, chunk_size, num_workers)
      recorded = None if remeasure else _read_auto_cache(cache_path).get(key)
      info["auto_cache"] = cache_path
      if recorded is not None and recorded.get("chosen") in STRATEGIES[1:]:
        chosen = recorded["chosen"]
        info["recorded_choice"] = {
          "measured_at": recorded.get("measured_at"),
          "measurements": recorded.get("measurements"),
        }
        if say:
          say(
            f"[auto] {chosen}, as recorded for this sweep's shape in {cache_path} (remeasure=True"
            " measures again)"
          )
      else:
        chosen, info["measurements"], workers, warm = _choose(
          groups, chunk_size, num_workers, say, workdir, tensorboard, return_states
        )
        if workers is not None:
          chosen = _decide_processes(workers, info["measurements"], chosen, say)
          if chosen != "processes":
            workers.send("stop")
            workers.close()
            workers = None
        warm = warm.get(chosen, {})  # the chosen strategy's measured states; frees the other
        _write_auto_cache(cache_path, key, chosen, info["measurements"])
        if say:
          say(f"[auto] chose {chosen}: " + json.dumps(info["measurements"], default=str))
    info["chosen"] = chosen
    t_run = time.perf_counter()
    if chosen == "processes":
      nw = min(num_workers or len(os.sched_getaffinity(0)), len(runs))
      if workers is None:
        workers = _Workers(
          runs,
          workdir,
          nw,
          standby=False,
          tensorboard=tensorboard,
          return_states=return_states,
        )
      else:
        workers.send("go")
      rows, infos = workers.join(say)
      info["workers"] = infos
    elif chosen == "vmap":
      rows = _run_vmap(groups, workdir, chunk_size, tensorboard, say, return_states, warm)
    else:
      rows = _run_sequential(groups, workdir, tensorboard, say, return_states, warm=warm)
    info["run_sec"] = time.perf_counter() - t_run
  finally:
    if workers is not None:
      workers.close()
  if chosen != "processes":
    info["compiles"] = [g.compile_counts() for g in groups]
  rows.sort(key=lambda r: r["index"])
  wall = time.perf_counter() - t_start
  info["wall_time_sec"] = wall
  _write_outputs(workdir, base_config, rows, info, wall)
  if say:
    best = _best(rows)
    say(f"sweep done in {wall:.1f}s ({chosen}); best: {best['name'] if best else 'none'}")
  return rows
