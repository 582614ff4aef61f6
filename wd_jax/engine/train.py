"""Training one run: `fit` writes a workdir that survives kills, preemption and full disks.

The run is built by `wd_jax.engine.experiment.build` and trained by the one loop
(`wd_jax.engine.loop`), like
every sweep and study. This module adds what a single run needs around it: the workdir lock and
status (`wd_jax.engine.workdir`), verified checkpoints and resume (`wd_jax.engine.checkpoint`),
preemption
signals and writers that fail loudly (`wd_jax.engine.runlog`), and summary.md. The building blocks
are
re-exported here (`train.build`, `train.TrainState`, ...) for convenience.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from typing import Any

import jax
import ml_collections
from flax import nnx

from wd_jax.engine import checkpoint as checkpoint_lib
from wd_jax.engine import loop as loop_lib
from wd_jax.engine import parallel as parallel_lib
from wd_jax.engine import progress as progress_lib
from wd_jax.engine import runlog
from wd_jax.engine import workdir as workdir_lib
from wd_jax.engine.experiment import (
  BatchStream,
  Diverged,
  Experiment,
  TrainState,
  batch_source,
  build,
  loss_and_metrics,
  make_eval_step,
  make_train_step,
)
from wd_jax.engine.runlog import MetricWriter, write_atomic

__all__ = [
  "BatchStream",
  "Diverged",
  "Experiment",
  "TrainState",
  "batch_source",
  "build",
  "fit",
  "loss_and_metrics",
  "make_eval_step",
  "make_train_step",
  "write_summary",
]


def _described(config: ml_collections.ConfigDict, model, data, optimizer):
  """`config` with the user's own model/data/optimizer named in it (for config.json)."""
  if model is None and data is None and optimizer is None:
    return config
  config = config.copy_and_resolve_references()
  with config.unlocked():
    if model is not None:
      kind = type(model) if isinstance(model, nnx.Module) else model
      config.model.name = f"user:{getattr(kind, '__qualname__', repr(kind))}"
    if data is not None:
      config.dataset.name = f"user:{type(data).__name__}"
    if optimizer is not None:
      config.optimizer.name = f"user:{getattr(optimizer, '__qualname__', repr(optimizer))}"
  return config


# One compiled check of a whole state (not an eager op per leaf while orbax saves in threads).
_finite = jax.jit(loop_lib.all_finite)
# What the progress line shows of a run's last record.
_SHOWN = ("loss", "accuracy", "val_accuracy", "test_accuracy")


def _json_final(final: dict[str, Any]) -> dict[str, Any]:
  return {k: v for k, v in final.items() if k != "state" and isinstance(v, (int, float, str, bool))}


def fit(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  model: Any = None,
  data: Any = None,
  optimizer: Any = None,
  resume: bool = False,
  fallback: bool = True,
  verbose: bool = True,
) -> dict[str, Any]:
  """Trains as `config` says, writing config.json, metrics.jsonl, TensorBoard events,
  checkpoints/, status.json and summary.md into `workdir`. Returns the final metrics.

  ``experiments/train.py`` is this function behind command-line flags. Bad config values,
  unreadable data and a model that cannot train on the data raise before `workdir` is
  created. `model`, `data` and `optimizer` bring your own pieces (see `build`); the run goes
  through the same loop, diagnostics and checkpoints as the built-in ones. With a
  validation split (``config.dataset.validation_fraction > 0``) the periodic evaluations read
  it, and the test split is read once, at the end of a run that did not diverge.

  Operations (see ``BUILD.md``, "Runs that survive"):

  - One process per workdir: a second launch raises `workdir.WorkdirBusy`.
  - `resume`: continue from the newest intact checkpoint, bitwise as if never interrupted; a
    completed run is left untouched (its recorded final metrics come back), unless
    ``config.steps`` grew, which extends it. A damaged newest checkpoint is named and, with
    `fallback` (default), the newest intact one is used instead, with a warning; without it,
    `checkpoint.DamagedCheckpoint` is raised.
  - SIGTERM / SIGINT (preemption, Ctrl-C): the current step finishes, a checkpoint and the
    summary ("preempted at step N") are written, and the result has ``preempted`` set.
  - Checkpoints are written only from a state whose loss, parameters and optimizer state are
    all finite: "last good checkpoint" means that.
  - A write that fails (full disk) stops the run with `runlog.RunIOError` naming the file; the
    checkpoints stay consistent.

  Args:
    config: a run config (`wd_jax.engine.config.base_config` schema).
    workdir: the run's directory; created if needed, and it must not hold another run
      unless `resume`.
    model: None (``config.model.name``), your ``flax.nnx.Module`` or ``nnx.Rngs -> module``
      (see `build`).
    data: None (``config.dataset.name``), a `wd_jax.engine.data.Dataset` or a `BatchStream`.
    optimizer: None (``config.optimizer.name``) or your recipe (see `build`).
    resume: continue the run in `workdir` (above).
    fallback: on resume, use the newest intact checkpoint when the newest is damaged.
    verbose: show progress and the final messages on stderr.

  Returns:
    The last logged metrics, ``wall_time_sec``, ``last_checkpoint_step``, the final ``state``
    (None if the run diverged); ``preempted``/``preempted_at_step`` for a preempted run; and,
    for a diverged run, ``diverged``, ``diverged_at_step`` and ``message`` instead of the
    metrics.

  Raises:
    ValueError: bad config values, data or model (before anything is written), or a
      `workdir` that holds a run without `resume`.

  Example:
    >>> import numpy as np
    >>> from wd_jax import config, data, train
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(256, 8)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int32)  # a task an MLP learns in a few steps
    >>> ds = data.from_arrays(x[:200], y[:200], x[200:], y[200:])
    >>> cfg = config.base_config()
    >>> cfg.model.name, cfg.model.kwargs = "mlp", {"widths": (16,)}
    >>> cfg.steps, cfg.batch_size, cfg.optimizer.learning_rate = 40, 32, 1e-2
    >>> cfg.log_every, cfg.diagnostics_every, cfg.eval_every, cfg.checkpoint_every = 20, 20, 40, 40
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...   result = train.fit(cfg, os.path.join(tmp, "run"), data=ds, verbose=False)
    ...   print(sorted(f for f in os.listdir(os.path.join(tmp, "run")) if f[0] != "."))
    ['checkpoints', 'config.json', 'metrics.jsonl', 'status.json', 'summary.md', 'tensorboard']
    >>> result["test_accuracy"] > 0.7, int(result["state"].step), result["last_checkpoint_step"]
    (True, 40, 40)

  References:
    The Flax examples' ``train_and_evaluate(config, workdir)``; big_vision (one JSON object of
    metrics per line, ``config.json`` beside them); Orbax ``CheckpointManager``.
  """
  exp = build(config, model=model, data=data, optimizer=optimizer)  # nothing written yet
  config = _described(config, model, data, optimizer)
  dp = parallel_lib.DataParallel(config.parallel)
  dp.check_batch_size(config.batch_size)
  lead = jax.process_index() == 0  # only process 0 writes logs, summaries and checkpoints
  say = (lambda s: print(s, file=sys.stderr, flush=True)) if verbose and lead else None
  with contextlib.ExitStack() as stack:
    if lead:
      stack.enter_context(workdir_lib.WorkdirLock(workdir))
    status = workdir_lib.prepare(config, workdir, resume=resume) if lead else None
    finished = bool(
      status
      and status.get("state") == "completed"
      and status.get("step") == config.steps
      and config.steps in checkpoint_lib.steps(workdir)
    )
    if checkpoint_lib.broadcast_int(int(finished)):
      try:
        return _finished(exp, workdir, status, say)
      except checkpoint_lib.DamagedCheckpoint:
        pass  # its last checkpoint is damaged: train it again from an intact one (or refuse)
    stop = stack.enter_context(runlog.StopSignals())
    return _train(exp, config, workdir, dp, lead, say, stop, resume, fallback, verbose)


def _finished(exp, workdir, status, say) -> dict[str, Any]:
  """A completed run, resumed: nothing is written; its final metrics and state come back."""
  if say:
    say(f"{workdir}: the run completed {status['step']} steps already; nothing to do.")
  final = dict(status.get("final", {}))
  final["state"] = checkpoint_lib.restore(workdir, status["step"], exp.init_state)
  final["already_completed"] = True
  return final


def _last_record(workdir: str, step: int) -> dict[str, Any]:
  """The metrics of `step` from metrics.jsonl: a resume that had no step left to train (it was
  killed between its last step and its summary) reports what that step logged."""
  records = runlog.read_metrics(os.path.join(workdir, "metrics.jsonl"))
  last = records[-1] if records and records[-1].get("step") == step else {}
  return {k: v for k, v in last.items() if k != "step"}


def _train(exp, config, workdir, dp, lead, say, stop, resume, fallback, verbose):
  mngr = checkpoint_lib.manager(workdir, config.max_checkpoints) if lead else None
  state, start = exp.init_state, 0
  if resume:  # every process reads (orbax syncs them) and verifies the same files alike
    start, state = checkpoint_lib.restore_latest(workdir, state, fallback=fallback)
    if start > config.steps:
      raise ValueError(
        f"--resume with steps={config.steps} in {workdir!r}, whose newest checkpoint is at step "
        f"{start}: steps may only grow."
      )
  state = dp.place(state)
  writer = MetricWriter(workdir, resume_step=start if resume else None) if lead else None
  program = loop_lib.Program(exp, parallel=dp)
  record = loop_lib.RunRecord(exp, writer, select_metric=f"{program.eval_split}_accuracy")
  source = batch_source(exp, config.batch_size, start, dp.place)
  show = (verbose or progress_lib.active()) and lead
  display = contextlib.ExitStack()
  report = (
    display.enter_context(progress_lib.task(f"train {workdir}", config.steps - start))
    if show
    else None
  )
  reported = [start]
  if lead:
    workdir_lib.write_status(workdir, "running", start)

  def save(step: int, local: TrainState) -> None:
    if mngr is None or mngr.latest_step() == step:
      return
    try:
      checkpoint_lib.save(mngr, step, local)
    except Exception as e:  # orbax raises many types; each means the checkpoint is not written
      raise runlog.RunIOError(0, f"cannot write the checkpoint of step {step}: {e}") from e
    runlog.fault("checkpoint")

  def on_checkpoint(nxt: int, state: TrainState, metrics) -> None:
    local = dp.local(state)
    if not math.isfinite(metrics[0]["loss"]):
      record.mark_diverged(nxt, f"non-finite loss {metrics[0]['loss']} at step {nxt}")
    elif not bool(_finite((local.params, local.opt_state))):
      record.mark_diverged(nxt, f"non-finite parameters or optimizer state at step {nxt}")
    else:
      save(nxt, local)

  def progress(nxt: int, records, rate: float) -> None:
    m = records[0].final
    info = "  ".join(f"{k} {m[k]:.4f}" for k in _SHOWN if k in m)
    report.advance(nxt - reported[0], info)
    reported[0] = nxt

  t_start = time.perf_counter()
  try:
    state = loop_lib.run_loop(
      program,
      state,
      [record],
      cadence=loop_lib.Cadence.from_config(config),
      source=source,
      start=start,
      on_checkpoint=on_checkpoint,
      progress=progress if report else None,
      stop=stop,
    )
    done = int(jax.device_get(dp.local(state).step))
    preempted = stop.requested is not None and record.diverged_at is None and done < config.steps
    if preempted:  # a checkpoint of the step the signal interrupted, so --resume loses nothing
      local = dp.local(state)
      if bool(_finite((local.params, local.opt_state))):
        save(done, local)
    if mngr:
      try:
        mngr.wait_until_finished()
      except Exception as e:
        raise runlog.RunIOError(0, f"cannot write a checkpoint: {e}") from e
  except BaseException as e:
    if mngr:  # let a save already in flight finish (or fail) before this process moves on
      with contextlib.suppress(Exception):
        mngr.wait_until_finished()
      with contextlib.suppress(Exception):
        mngr.close()
    if lead and isinstance(e, runlog.RunIOError):
      with contextlib.suppress(OSError):
        workdir_lib.write_status(workdir, "failed", record.step or start, error=str(e))
    raise
  finally:
    record.close()
    display.close()
  if record.diverged_at is not None:
    final: dict[str, Any] = {
      "diverged": True,
      "diverged_at_step": record.diverged_at,
      "message": record.message,
    }
    if say:
      last = mngr.latest_step() if mngr else None
      say(f"\nrun diverged: {record.message}; last good checkpoint: step {last}")
  else:
    final = dict(record.final) or _last_record(workdir, done) if lead else dict(record.final)
    if preempted:
      final.update(preempted=True, preempted_at_step=done, signal=stop.requested)
      if say:
        say(f"\npreempted at step {done}: checkpoint written; continue with --resume.")
    elif program.eval_split == "val":
      final.update(program.evaluate(state, "test")[0])  # the test split, read once
  final["wall_time_sec"] = time.perf_counter() - t_start
  if mngr:
    final["last_checkpoint_step"] = mngr.latest_step()
    mngr.close()
    write_summary(workdir, config, final)
    state_name = "diverged" if final.get("diverged") else "preempted" if preempted else "completed"
    workdir_lib.write_status(
      workdir, state_name, done if not final.get("diverged") else start, final=_json_final(final)
    )
  final["state"] = None if record.diverged_at is not None else dp.local(state)
  return final


def write_summary(workdir: str, config: ml_collections.ConfigDict, final: dict[str, Any]) -> None:
  o = config.optimizer
  if final.get("diverged"):
    status = (
      f"**diverged** at step {final['diverged_at_step']} ({final['message']}); last good "
      f"checkpoint: step {final['last_checkpoint_step']} (its loss, parameters and optimizer "
      "state are finite)"
    )
  elif final.get("preempted"):
    status = (
      f"**preempted** at step {final['preempted_at_step']} (signal {final['signal']}); "
      f"checkpoint at step {final['last_checkpoint_step']}: continue with --resume"
    )
  else:
    status = "completed"
  lines = [
    f"# {config.dataset.name} / {config.model.name} / {o.name}",
    "",
    f"- status: {status}",
    f"- optimizer: {o.name}, lr {o.learning_rate:g} ({o.lr_schedule}), weight decay "
    f"{o.weight_decay:g} ({o.wd_schedule}), mask {o.mask}, {dict(o.kwargs)}",
    f"- steps {config.steps}, batch {config.batch_size}, seed {config.seed}",
    f"- wall time {final['wall_time_sec']:.1f} s",
  ]
  keys = ("test_accuracy", "test_loss", "val_accuracy", "val_loss", "loss", "accuracy")
  for k in (*keys, "param_norm", "l2_share"):
    if k in final:
      lines.append(f"- final {k}: {final[k]:.4f}")
  write_atomic(os.path.join(workdir, "summary.md"), "\n".join(lines) + "\n")
