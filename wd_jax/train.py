"""Single-device training: a pure jitted step over pytrees, a fit loop, logs and checkpoints.

The step is a pure function ``(TrainState) -> (TrainState, metrics)``: the batch is
drawn on the device from ``fold_in(key, step)``, so no host work sits between steps,
a resumed run draws exactly the batches an uninterrupted one would, and the same
function can be pmapped, sharded or vmapped by `wd_jax.parallel` / `wd_jax.sweep`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx

from wd_jax import config as config_lib
from wd_jax import data as data_lib
from wd_jax import diagnostics
from wd_jax import models as models_lib
from wd_jax import parallel as parallel_lib
from wd_jax.masks import leaf_multipliers, param_paths
from wd_jax.runlog import MetricWriter, Progress, write_atomic
from wd_jax.transforms import decay_factor


class TrainState(NamedTuple):
  """Everything a run needs to continue: a pytree of arrays (checkpointed as is)."""

  step: jax.Array  # shape=(), int32: steps taken.
  params: Any  # nnx.Param state.
  rest: Any  # Other model state (BatchNorm statistics).
  opt_state: Any
  key: jax.Array  # raw uint32 PRNG key; batch t uses fold_in(key, t).


class Diverged(RuntimeError):
  """The loss became non-finite."""


def loss_and_metrics(task: str, logits: jax.Array, y: jax.Array, weight: jax.Array | None = None):
  """Mean loss and metric sums for a batch; `weight` masks padded eval examples."""
  if task == "regression":
    pred = logits.reshape(y.shape)
    per = 0.5 * jnp.square(pred - y)
    per = per.reshape(per.shape[0], -1).sum(-1)
    correct = None
  else:
    per = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    correct = (jnp.argmax(logits, -1) == y).astype(jnp.float32)
    if task == "language_model":  # mean over tokens of each sequence
      per, correct = per.mean(-1), correct.mean(-1)
  w = jnp.ones(per.shape[0], per.dtype) if weight is None else weight
  count = jnp.sum(w)
  metrics = {"loss": jnp.sum(per * w) / count}
  if correct is not None:
    metrics["accuracy"] = jnp.sum(correct * w) / count
  return metrics["loss"], metrics


@dataclasses.dataclass
class Experiment:
  """A built run: data, model functions, optimizer and the initial state."""

  config: ml_collections.ConfigDict
  dataset: data_lib.Dataset
  train_graphdef: Any
  eval_graphdef: Any
  optimizer: optax.GradientTransformation
  lr_schedule: optax.Schedule
  wd_schedule: Any
  scale_invariant: list[bool]  # per params leaf
  init_state: TrainState
  params_def: Any = None  # treedef of the nnx.State that params (a plain dict) came from
  rest_def: Any = None

  def nnx_states(self, params: Any, rest: Any) -> tuple[nnx.State, nnx.State]:
    """The plain-dict params/rest of a TrainState as the nnx.State trees a graphdef merges with."""
    return (
      jax.tree.unflatten(self.params_def, jax.tree.leaves(params)),
      jax.tree.unflatten(self.rest_def, jax.tree.leaves(rest)),
    )

  def apply(self, graphdef: Any, params: Any, rest: Any, x: jax.Array) -> tuple[jax.Array, Any]:
    """`models.apply_model` on plain-dict state; the new rest comes back as a plain dict."""
    p, r = self.nnx_states(params, rest)
    logits, new_rest = models_lib.apply_model(graphdef, p, r, x)
    return logits, jax.tree.unflatten(jax.tree.structure(rest), jax.tree.leaves(new_rest))


def build(config: ml_collections.ConfigDict) -> Experiment:
  """Validates `config` and builds everything; writes nothing."""
  config_lib.validate(config)
  dataset = data_lib.load_dataset(config.dataset.name, **dict(config.dataset.kwargs))
  model = models_lib.build_model(
    config.model.name,
    num_classes=dataset.num_classes,
    input_shape=dataset.input_shape,
    rngs=nnx.Rngs(config.seed),
    **dict(config.model.kwargs),
  )
  si_mask = model.scale_invariant_mask()
  train_gd, eval_gd, params_state, rest_state = models_lib.split_model(model)
  # TrainState holds plain dicts: nnx.State trees cost ~100 µs of Python per jitted call to
  # flatten and rebuild (measured by bench/engine.py); the step rebuilds them inside the trace.
  params, rest = nnx.to_pure_dict(params_state), nnx.to_pure_dict(rest_state)
  optimizer = config_lib.build_optimizer(config)
  state = TrainState(
    step=jnp.zeros([], jnp.int32),
    params=params,
    rest=rest,
    opt_state=optimizer.init(params),
    key=jax.random.PRNGKey(config.seed + 1),
  )
  si = [m > 0 for m in leaf_multipliers(params, si_mask, name="scale_invariant_mask")]
  return Experiment(
    config,
    dataset,
    train_gd,
    eval_gd,
    optimizer,
    config_lib.learning_rate_schedule(config),
    config_lib.weight_decay_schedule(config),
    si,
    state,
    jax.tree.structure(params_state),
    jax.tree.structure(rest_state),
  )


def make_train_step(
  exp: Experiment,
  *,
  with_diagnostics: bool = False,
  axis_name: str | None = None,
  graphdef: Any = None,
  batch_sharding: Any = None,
) -> Callable[[TrainState, data_lib.BatchSampler], tuple[TrainState, dict[str, jax.Array]]]:
  """The pure step ``(state, sampler) -> (state, metrics)``.

  The sampler (from `data_lib.make_batch_fn`, global batch size) is an argument, not a
  closure, so the data is not baked into the compiled program. Every strategy draws the
  same global batch from ``fold_in(key, step)``, so data parallel runs compute the
  single-device step:

  - `axis_name` (``jax.pmap``): each device keeps its slice of the global batch;
    gradients, metrics and BatchNorm statistics are averaged over the axis (pass a
    `graphdef` whose BatchNorm layers carry the same ``axis_name``, see `wd_jax.parallel`).
  - `batch_sharding` (``jax.jit`` over a mesh): the batch is constrained to it and XLA
    partitions the step.
  """
  config, task = exp.config, exp.dataset.task
  per_leaf = config.per_leaf_diagnostics
  si = exp.scale_invariant
  train_graphdef = exp.train_graphdef if graphdef is None else graphdef

  def step_fn(state: TrainState, sampler: data_lib.BatchSampler):
    key = jax.random.fold_in(state.key, state.step)
    x, y = sampler(key)
    if axis_name is not None:
      n = jax.lax.axis_size(axis_name)
      if x.shape[0] % n:
        raise ValueError(f"batch_size {x.shape[0]} is not divisible by the {n} devices.")
      local = x.shape[0] // n
      start = jax.lax.axis_index(axis_name) * local
      x, y = (jax.lax.dynamic_slice_in_dim(a, start, local) for a in (x, y))
    if batch_sharding is not None:
      x, y = (jax.lax.with_sharding_constraint(a, batch_sharding) for a in (x, y))

    def loss_fn(params):
      logits, new_rest = exp.apply(train_graphdef, params, state.rest, x)
      loss, metrics = loss_and_metrics(task, logits, y)
      return loss, (new_rest, metrics)

    (_, (new_rest, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    if axis_name is not None:
      grads, metrics, new_rest = jax.lax.pmean((grads, metrics, new_rest), axis_name)
    updates, opt_state = exp.optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if with_diagnostics:
      metrics.update(
        diagnostics.step_diagnostics(state.params, params, grads, opt_state, per_leaf=per_leaf)
      )
      paths = param_paths(params)
      for p, w, g, is_si in zip(paths, jax.tree.leaves(params), jax.tree.leaves(grads), si):
        if is_si:  # ‖g̃‖ = ‖g‖·‖w‖ is the gradient at unit norm, for SGD's equilibrium prediction
          wn = jnp.sqrt(jnp.sum(w * w))
          metrics[f"grad_norm_unit/{p}"] = jnp.sqrt(jnp.sum(g * g)) * wn
          metrics[f"effective_lr/{p}"] = exp.lr_schedule(state.step) / jnp.maximum(wn * wn, 1e-30)
    new_state = TrainState(state.step + 1, params, new_rest, opt_state, state.key)
    return new_state, metrics

  return step_fn


def make_eval_step(exp: Experiment):
  task = exp.dataset.task

  def eval_fn(params, rest, x, y, w):
    logits, _ = exp.apply(exp.eval_graphdef, params, rest, x)
    _, metrics = loss_and_metrics(task, logits, y, w)
    n = jnp.sum(w)
    return {k: v * n for k, v in metrics.items()} | {"count": n}

  return eval_fn


def evaluate(exp: Experiment, eval_fn, state: TrainState, split: str = "test") -> dict[str, float]:
  """Exact metrics over a whole split (padded fixed-shape batches, weighted)."""
  totals: dict[str, float] = {}
  for x, y, w in data_lib.eval_batches(exp.dataset, exp.config.eval_batch_size, split=split):
    out = jax.device_get(eval_fn(state.params, state.rest, x, y, w))
    for k, v in out.items():
      totals[k] = totals.get(k, 0.0) + float(v)
  n = max(totals.pop("count"), 1.0)
  return {f"{split}_{k}": v / n for k, v in totals.items()}


def equilibrium_predictions(
  exp: Experiment, step: int, metrics: dict[str, float]
) -> dict[str, float]:
  """Predicted angular update and norm of each scale-invariant leaf (REFERENCES §4)."""
  o = exp.config.optimizer
  name, kwargs = o.name, dict(o.kwargs)
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
  angle = diagnostics.predicted_angular_update(name, lr, lam_eff, b1=b1, momentum=mu)
  sizes = {
    p: int(np.size(x))
    for p, x in zip(param_paths(exp.init_state.params), jax.tree.leaves(exp.init_state.params))
  }
  for p, is_si in zip(sizes, exp.scale_invariant):
    if not is_si:
      continue
    if math.isfinite(angle):
      out[f"pred_angular_update/{p}"] = angle
    g_unit = metrics.get(f"grad_norm_unit/{p}")
    if name in ("sgd_l2", "sgdw") and g_unit is not None:
      out[f"pred_norm/{p}"] = diagnostics.predicted_equilibrium_norm(
        name, lr, lam_eff, sizes[p], grad_norm_at_unit_norm=g_unit, momentum=mu
      )
    elif name == "adamw":
      out[f"pred_norm/{p}"] = diagnostics.predicted_equilibrium_norm(name, lr, lam_eff, sizes[p])
  return out


def _checkpoint_manager(workdir: str, config) -> ocp.CheckpointManager:
  """Process 0's manager; on several hosts it runs alone (``active_processes={0}``)."""
  mp = {}
  if jax.process_count() > 1:
    mp["multiprocessing_options"] = ocp.options.MultiprocessingOptions(
      primary_host=0, active_processes={0}
    )
  directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
  os.makedirs(directory, exist_ok=True)  # orbax cannot create it itself with active_processes
  return ocp.CheckpointManager(
    directory,
    options=ocp.CheckpointManagerOptions(max_to_keep=config.max_checkpoints, create=False, **mp),
  )


def _broadcast_int(value: int) -> int:
  """Process 0's `value` on every process (a no-op on one host)."""
  if jax.process_count() == 1:
    return value
  from jax.experimental import multihost_utils

  return int(multihost_utils.broadcast_one_to_all(np.int32(value)))


def _restore(workdir: str, step: int, like: TrainState) -> TrainState:
  """The checkpoint at `step`, read by every process (the files are on a shared filesystem)."""
  mngr = ocp.CheckpointManager(
    os.path.abspath(os.path.join(workdir, "checkpoints")),
    options=ocp.CheckpointManagerOptions(
      read_only=True, multiprocessing_options=ocp.options.MultiprocessingOptions(primary_host=None)
    )
    if jax.process_count() > 1
    else ocp.CheckpointManagerOptions(read_only=True),
  )
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
  with mngr:
    return mngr.restore(step, args=ocp.args.StandardRestore(abstract))


def _all_finite(tree) -> bool:
  return bool(
    jax.device_get(
      jax.tree.reduce(
        lambda a, b: a & b, jax.tree.map(lambda x: jnp.all(jnp.isfinite(x)), tree), True
      )
    )
  )


def prepare_workdir(config: ml_collections.ConfigDict, workdir: str, *, resume: bool) -> None:
  """Checks that `workdir` may be used, then writes ``config.json`` first."""
  cfg_path = os.path.join(workdir, "config.json")
  text = config.to_json_best_effort(indent=2, sort_keys=True)
  if os.path.exists(cfg_path):
    if not resume:
      raise ValueError(
        f"workdir {workdir!r} already holds a run; pass --resume or use a new workdir."
      )
    with open(cfg_path) as f:
      old = json.load(f)
    if old != json.loads(text):
      diff = sorted(
        k for k in set(old) | set(json.loads(text)) if old.get(k) != json.loads(text).get(k)
      )
      raise ValueError(f"--resume with a different config in {workdir!r}: fields {diff} differ.")
    return
  os.makedirs(workdir, exist_ok=True)
  write_atomic(cfg_path, text + "\n")


def fit(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  resume: bool = False,
  verbose: bool = True,
) -> dict[str, Any]:
  """Trains as `config` says, writing config.json, metrics.jsonl, TensorBoard events,
  checkpoints/ and summary.md into `workdir`. Returns the final metrics.

  Bad config values and unreadable data raise before `workdir` is created.
  """
  exp = build(config)  # validates and loads: nothing written yet
  dp = parallel_lib.DataParallel(config.parallel)
  dp.check_batch_size(config.batch_size)
  lead = jax.process_index() == 0  # only process 0 writes logs, summaries and checkpoints
  if lead:
    prepare_workdir(config, workdir, resume=resume)
  mngr = _checkpoint_manager(workdir, config) if lead else None
  state = exp.init_state
  start = 0
  if resume:
    start = _broadcast_int(mngr.latest_step() if lead and mngr.latest_step() is not None else 0)
    if start:
      state = _restore(workdir, start, state)
  state = dp.place(state)
  writer = MetricWriter(workdir, resume_step=start if resume else None) if lead else None
  train_step = dp.compile_step(exp, make_train_step)
  diag_every = config.diagnostics_every
  diag_step = dp.compile_step(exp, make_train_step, with_diagnostics=True) if diag_every else None
  eval_fn = jax.jit(make_eval_step(exp))
  sampler = dp.place(data_lib.make_batch_fn(exp.dataset, config.batch_size))
  progress = Progress(config.steps, start) if verbose and lead else None
  t_start = time.perf_counter()
  last_log_t, last_log_step = t_start, start
  final: dict[str, Any] = {}
  diverged_at = None
  try:
    for step in range(start, config.steps):
      nxt = step + 1
      log_now = nxt % config.log_every == 0 or nxt == config.steps
      diag_now = bool(diag_every) and (nxt % diag_every == 0)
      state, metrics = (diag_step if diag_now else train_step)(state, sampler)
      if log_now or diag_now:
        m = dp.fetch(metrics)
        if not math.isfinite(m["loss"]):
          diverged_at = nxt
          raise Diverged(f"non-finite loss {m['loss']} at step {nxt}")
        now = time.perf_counter()
        m["steps_per_sec"] = (nxt - last_log_step) / max(now - last_log_t, 1e-9)
        last_log_t, last_log_step = now, nxt
        m["learning_rate"] = float(exp.lr_schedule(step))
        wd = exp.wd_schedule
        m["weight_decay"] = float(wd(step) if callable(wd) else wd)
        if diag_now:
          m.update(equilibrium_predictions(exp, step, m))
        if nxt % config.eval_every == 0 or nxt == config.steps:
          m.update(evaluate(exp, eval_fn, dp.local(state)))
        if writer:
          writer.write(nxt, m)
        final = m
        if progress:
          progress.update(nxt, m)
      if nxt % config.checkpoint_every == 0 or nxt == config.steps:
        local = dp.local(state)
        if not _all_finite(local.params):
          diverged_at = nxt
          raise Diverged(f"non-finite parameters at step {nxt}")
        if mngr:
          mngr.save(nxt, args=ocp.args.StandardSave(jax.device_get(local)))
  except Diverged as e:
    final = {"diverged": True, "diverged_at_step": diverged_at, "message": str(e)}
    if verbose and lead:
      print(f"\nrun diverged: {e}; last good checkpoint: step {mngr.latest_step()}")
  finally:
    if mngr:
      mngr.wait_until_finished()
    if writer:
      writer.close()
    if progress:
      progress.close()
  final["wall_time_sec"] = time.perf_counter() - t_start
  if mngr:
    final["last_checkpoint_step"] = mngr.latest_step()
    mngr.close()
    write_summary(workdir, config, final)
  final["state"] = dp.local(state) if diverged_at is None else None
  return final


def write_summary(workdir: str, config: ml_collections.ConfigDict, final: dict[str, Any]) -> None:
  o = config.optimizer
  status = (
    f"**diverged** at step {final['diverged_at_step']} ({final['message']}); "
    f"last good checkpoint: step {final['last_checkpoint_step']}"
    if final.get("diverged")
    else "completed"
  )
  lines = [
    f"# {config.dataset.name} / {config.model.name} / {o.name}",
    "",
    f"- status: {status}",
    f"- optimizer: {o.name}, lr {o.learning_rate:g} ({o.lr_schedule}), weight decay "
    f"{o.weight_decay:g} ({o.wd_schedule}), mask {o.mask}, {dict(o.kwargs)}",
    f"- steps {config.steps}, batch {config.batch_size}, seed {config.seed}",
    f"- wall time {final['wall_time_sec']:.1f} s",
  ]
  for k in ("test_accuracy", "test_loss", "loss", "accuracy", "param_norm", "l2_share"):
    if k in final:
      lines.append(f"- final {k}: {final[k]:.4f}")
  write_atomic(os.path.join(workdir, "summary.md"), "\n".join(lines) + "\n")
