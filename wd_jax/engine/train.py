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
import dataclasses
import math
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable
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
  accept_gap: bool = False,
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
    `fallback` (default), moved aside to ``checkpoints/damaged/<step>-<reason>`` and the newest
    intact one used instead, with a warning (so the retrained steps are checkpointed again);
    without it, `checkpoint.DamagedCheckpoint` is raised and nothing is moved. A checkpoint of
    another model raises `checkpoint.CheckpointMismatch` naming the parameter and both shapes.
  - Records are fsynced before each checkpoint, which stores the step of the last record; a
    resume whose metrics.jsonl ends before that step raises `runlog.RecordsGap`, unless
    `accept_gap`.
  - SIGTERM / SIGINT (preemption, Ctrl-C): the current step finishes, a checkpoint and the
    summary ("preempted at step N") are written, and the result has ``preempted`` set.
  - Checkpoints are written only from a state whose loss, parameters and optimizer state are
    all finite: "last good checkpoint" means that.
  - A write that fails (full disk) stops the run with `runlog.RunIOError` naming the file (and
    the step of a checkpoint); the checkpoints stay consistent. However the run stops,
    status.json says "failed" or "preempted".

  Args:
    config: a run config (`wd_jax.engine.config.base_config` schema).
    workdir: the run's directory; created if needed, and it must not hold another run
      unless `resume`.
    model: None (``config.model.name``), your ``flax.nnx.Module`` or ``nnx.Rngs -> module``
      (see `build`).
    data: None (``config.dataset.name``), a `wd_jax.engine.data.Dataset` or a `BatchStream`.
    optimizer: None (``config.optimizer.name``) or your recipe (see `build`).
    resume: continue the run in `workdir` (above).
    fallback: on resume, move a damaged newest checkpoint aside and use the newest intact one.
    accept_gap: on resume, continue when metrics.jsonl lacks records the checkpoint was written
      after (with a warning) instead of raising `runlog.RecordsGap`.
    verbose: show progress and the final messages on stderr.

  Returns:
    The last logged metrics, ``wall_time_sec``, ``last_checkpoint_step``, the final ``state``
    (None if the run diverged); ``preempted``/``preempted_at_step`` for a preempted run; and,
    for a diverged run, ``diverged``, ``diverged_at_step`` and ``message`` instead of the
    metrics.

  Raises:
    ValueError: bad config values, data or model (before anything is written), a
      `workdir` that holds a run without `resume`, or a resume with another config or model.
    RunIOError, DamagedCheckpoint, RecordsGap, WorkdirBusy: see above.

  Example:
    >>> import numpy as np
    >>> from wd_jax.engine import config, data, train
    >>> x = np.random.default_rng(0).normal(size=(256, 8)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int32)  # your arrays: a task an MLP learns in a few steps
    >>> ds = data.from_arrays(x[:200], y[:200], x[200:], y[200:])
    >>> cfg = config.base_config()
    >>> cfg.model.name, cfg.steps, cfg.batch_size, cfg.optimizer.learning_rate = "mlp", 40, 32, 1e-2
    >>> cfg.checkpoint_every = 40  # log, diagnose, evaluate at the defaults (steps/20, steps/5)
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
  run = _Run(exp, config, workdir, dp, lead, say, verbose, resume)
  with contextlib.ExitStack() as stack:
    if lead:
      stack.enter_context(workdir_lib.WorkdirLock(workdir))
    prepared = workdir_lib.prepare(config, workdir, resume=resume) if lead else None
    restored = _restore(run, fallback=fallback, accept_gap=accept_gap)
    if lead:
      workdir_lib.record_config(workdir, prepared)
    status = prepared.status if lead else None
    finished = bool(
      status
      and status.get("state") == "completed"
      and status.get("step") == config.steps == restored.step
    )
    if checkpoint_lib.broadcast_int(int(finished)):
      return _finished(run, status, restored)
    stop = stack.enter_context(runlog.StopSignals())
    return _train(run, restored, stop)


@dataclasses.dataclass
class _Run:
  """What every part of one run shares: its pieces, its outputs and where it is."""

  exp: Experiment
  config: ml_collections.ConfigDict
  workdir: str
  dp: parallel_lib.DataParallel
  lead: bool  # process 0: writes the logs, summaries and checkpoints
  say: Callable[[str], None] | None
  verbose: bool
  resume: bool
  start: int = 0
  mngr: Any = None  # process 0's orbax CheckpointManager
  writer: MetricWriter | None = None
  record: loop_lib.RunRecord | None = None
  pending: int | None = None  # the step of a checkpoint orbax may still be writing
  program: loop_lib.Program | None = None
  stop: runlog.StopSignals | None = None
  t_start: float = 0.0
  done: int = 0  # the step the loop ended at
  preempted: bool = False  # a signal stopped it there (and that step was checkpointed)

  def checkpoint_path(self, step: int) -> str:
    return os.path.join(checkpoint_lib.directory(self.workdir), str(step))


def _restore(run: _Run, *, fallback: bool, accept_gap: bool) -> checkpoint_lib.Restored:
  """Where a run starts: step 0, or on resume the newest intact checkpoint (damaged ones moved
  aside with `fallback`), after checking that the records reach it."""
  if not run.resume:
    return checkpoint_lib.Restored(0, run.exp.init_state)
  # Every process reads (orbax syncs them) and verifies the same files alike.
  restored = checkpoint_lib.restore_latest(run.workdir, run.exp.init_state, fallback=fallback)
  if restored.step > run.config.steps:
    raise ValueError(
      f"--resume with steps={run.config.steps} in {run.workdir!r}, whose newest checkpoint is "
      f"at step {restored.step}: steps may only grow."
    )
  if run.lead:
    path = os.path.join(run.workdir, "metrics.jsonl")
    gap = runlog.records_gap(path, restored.step, restored.last_record)
    if gap and not accept_gap:
      raise runlog.RecordsGap(
        f"{gap}; resume with --resume_accept_gap (accept_gap=True) to continue without them, "
        "or use a new workdir."
      )
    if gap:
      warnings.warn(f"{gap}; the resumed run continues without them.", stacklevel=3)
  return restored


def _finished(run: _Run, status: dict[str, Any], restored) -> dict[str, Any]:
  """A completed run, resumed: nothing is written; its final metrics and state come back."""
  if run.say:
    run.say(f"{run.workdir}: the run completed {status['step']} steps already; nothing to do.")
  final = dict(status.get("final", {}))
  final["state"] = restored.state
  final["already_completed"] = True
  return final


def _last_record(workdir: str, step: int) -> dict[str, Any]:
  """The metrics of `step` from metrics.jsonl: a resume that had no step left to train (it was
  killed between its last step and its summary) reports what that step logged."""
  records = runlog.read_metrics(os.path.join(workdir, "metrics.jsonl"))
  last = records[-1] if records and records[-1].get("step") == step else {}
  return {k: v for k, v in last.items() if k != "step"}


def _open_outputs(run: _Run) -> None:
  """Process 0's checkpoint manager (opened after damaged checkpoints were moved aside, so it
  saves their steps again), metrics writer and status; every process's run record."""
  if run.lead:
    run.mngr = checkpoint_lib.manager(run.workdir, run.config.max_checkpoints)
    run.writer = MetricWriter(run.workdir, resume_step=run.start if run.resume else None)
  select = f"{run.program.eval_split}_accuracy"
  run.record = loop_lib.RunRecord(run.exp, run.writer, select_metric=select)
  if run.lead:
    workdir_lib.write_status(run.workdir, "running", run.start)


def _checkpoint_error(run: _Run, step: int, e: Exception) -> runlog.RunIOError:
  return runlog.RunIOError(
    f"cannot write the checkpoint of step {step} ({run.checkpoint_path(step)}): "
    f"{runlog.describe_os_error(e)}",
    getattr(e, "errno", None),
  )


def _wait(run: _Run) -> None:
  """Waits for the checkpoint orbax is writing; its failure names that checkpoint's step."""
  if run.mngr is None or run.pending is None:
    return
  # Waited for here, not inside orbax's next save, which would report it as the next step's.
  step, run.pending = run.pending, None
  try:
    run.mngr.wait_until_finished()
  except Exception as e:  # orbax raises many types; each means the checkpoint is not written
    raise _checkpoint_error(run, step, e) from e


def _save(run: _Run, step: int, local: TrainState) -> None:
  """Checkpoints `local` at `step` (process 0), after making the records before it durable."""
  if run.mngr is None or run.mngr.latest_step() == step:
    return
  _wait(run)
  run.writer.sync()
  try:
    checkpoint_lib.save(run.mngr, step, local, last_record=run.writer.last_step or None)
  except Exception as e:  # orbax raises many types; each means the checkpoint is not written
    raise _checkpoint_error(run, step, e) from e
  run.pending = step
  runlog.fault("checkpoint")


def _on_checkpoint(run: _Run, nxt: int, state: TrainState, metrics) -> None:
  """A checkpoint step: only a state whose loss, parameters and optimizer state are finite is
  saved; any other marks the run diverged."""
  local = run.dp.local(state)
  if not math.isfinite(metrics[0]["loss"]):
    run.record.mark_diverged(nxt, f"non-finite loss {metrics[0]['loss']} at step {nxt}")
  elif not bool(_finite((local.params, local.opt_state))):
    run.record.mark_diverged(nxt, f"non-finite parameters or optimizer state at step {nxt}")
  else:
    _save(run, nxt, local)


@contextlib.contextmanager
def _progress(run: _Run):
  """The progress line of the run (its own steps: a resumed run starts at its step), or None."""
  if not ((run.verbose or progress_lib.active()) and run.lead):
    yield None
    return
  with progress_lib.task(f"train {run.workdir}", run.config.steps, done=run.start) as task:
    shown = [run.start]

    def report(nxt: int, records, rate: float) -> None:
      m = records[0].final
      task.advance(nxt - shown[0], "  ".join(f"{k} {m[k]:.4f}" for k in _SHOWN if k in m))
      shown[0] = nxt

    yield report


def _loop(run: _Run, state: TrainState) -> TrainState:
  """Trains from `run.start` to the end (or a stop); sets the step it ended at and whether a
  signal preempted the run (then that step is checkpointed, so --resume loses nothing)."""
  config, dp = run.config, run.dp
  source = batch_source(run.exp, config.batch_size, run.start, dp.place)
  with _progress(run) as report:
    state = loop_lib.run_loop(
      run.program,
      state,
      [run.record],
      cadence=loop_lib.Cadence.from_config(config),
      source=source,
      start=run.start,
      on_checkpoint=lambda nxt, s, m: _on_checkpoint(run, nxt, s, m),
      progress=report,
      stop=run.stop,
    )
  run.done = done = int(jax.device_get(dp.local(state).step))
  signalled = run.stop.requested is not None and run.record.diverged_at is None
  run.preempted = signalled and done < config.steps
  if run.preempted:
    local = dp.local(state)
    if bool(_finite((local.params, local.opt_state))):
      _save(run, done, local)
  _wait(run)
  return state


def _stopped(run: _Run, e: BaseException) -> None:
  """A run stopped by an exception: the checkpoint in flight is finished or abandoned, and
  status.json (and, after a second Ctrl-C, summary.md) says how the run stopped."""
  if run.mngr:  # let a save already in flight finish (or fail) before this process moves on
    with contextlib.suppress(Exception):
      run.mngr.wait_until_finished()
    with contextlib.suppress(Exception):
      run.mngr.close()
  if not run.lead:
    return
  checkpoint_lib.remove_temporaries(run.workdir)
  saved = checkpoint_lib.steps(run.workdir)
  last = saved[-1] if saved else None
  step = last if last is not None else run.start
  with contextlib.suppress(OSError):
    if isinstance(e, KeyboardInterrupt):  # a second Ctrl-C: stopped without a new checkpoint
      final = {
        "preempted": True,
        "preempted_at_step": run.record.step if run.record else run.start,
        "signal": int(signal.SIGINT),
        "last_checkpoint_step": last,
        "wall_time_sec": time.perf_counter() - run.t_start,
      }
      write_summary(run.workdir, run.config, final)
      workdir_lib.write_status(run.workdir, "preempted", step, final=_json_final(final))
    else:
      workdir_lib.write_status(
        run.workdir, "failed", step, error=" ".join(str(e).split()) or type(e).__name__
      )


def _train(run: _Run, restored: checkpoint_lib.Restored, stop) -> dict[str, Any]:
  run.start, run.stop = restored.step, stop
  state = run.dp.place(restored.state)
  run.program = loop_lib.Program(run.exp, parallel=run.dp)
  run.t_start = time.perf_counter()
  try:
    _open_outputs(run)
    state = _loop(run, state)
  except BaseException as e:
    _stopped(run, e)
    raise
  finally:
    if run.record is not None:
      run.record.close()
  return _finish(run, state)


def _final_metrics(run: _Run, state: TrainState) -> dict[str, Any]:
  record, done = run.record, run.done
  if record.diverged_at is not None:
    final: dict[str, Any] = {
      "diverged": True,
      "diverged_at_step": record.diverged_at,
      "message": record.message,
    }
    if run.say:
      last = run.mngr.latest_step() if run.mngr else None
      run.say(f"\nrun diverged: {record.message}; last good checkpoint: step {last}")
    return final
  final = dict(record.final) or _last_record(run.workdir, done) if run.lead else dict(record.final)
  if run.preempted:
    final.update(preempted=True, preempted_at_step=done, signal=run.stop.requested)
    if run.say:
      run.say(f"\npreempted at step {done}: checkpoint written; continue with --resume.")
  elif run.program.eval_split == "val":
    final.update(run.program.evaluate(state, "test")[0])  # the test split, read once
  return final


def _finish(run: _Run, state: TrainState) -> dict[str, Any]:
  """The result of a run that ended (completed, diverged or preempted): summary and status."""
  try:
    final = _final_metrics(run, state)
    final["wall_time_sec"] = time.perf_counter() - run.t_start
    if run.mngr:
      final["last_checkpoint_step"] = run.mngr.latest_step()
      run.mngr.close()
      run.mngr = None
      write_summary(run.workdir, run.config, final)
      name = "preempted" if run.preempted else "completed"
      name = "diverged" if final.get("diverged") else name
      step = run.start if final.get("diverged") else run.done
      workdir_lib.write_status(run.workdir, name, step, final=_json_final(final))
  except BaseException as e:
    _stopped(run, e)
    raise
  final["state"] = None if run.record.diverged_at is not None else run.dp.local(state)
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
