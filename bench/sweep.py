"""Wall time of a 16-configuration lr × λ sweep: each `wd_jax.sweep` strategy vs 16 launches.

What is measured, in one run, one after the other on the same machine: MNIST-1D with the MLP of
experiments/configs/mnist1d_mlp.py (40→100→100→10, AdamW, warmup + cosine, batch 128, metrics
every 200 steps with diagnostics, test evaluation every 1000), `--steps` steps per
configuration, over the grid peak lr {1e-3, 3e-3, 1e-2, 3e-2} × λ {1e-4, 1e-3, 1e-2, 1e-1}:

* ``vmap``, ``sequential``, ``processes`` (2 workers) and ``auto``: ``wd_jax.sweep.run_sweep``
  with that strategy, each in a fresh Python process (this file re-invoked with ``--run``), so
  no variant inherits another's compilations or generated dataset.
* ``16 separate launches``: what a user without the sweep engine does: a shell loop of 16
  ``python experiments/train.py --config=experiments/configs/mnist1d_mlp.py`` runs, one per
  configuration (each also writes its orbax checkpoints and TensorBoard events, as train.py does).

The time of a variant is the wall time of its process(es), from launch to exit: interpreter and
JAX import, dataset generation, model build, compilation, training, evaluation and outputs. The
sweep's own split is printed too: ``run_sweep`` = inside `run_sweep`; ``train loop`` = the
strategy's training after auto's measurements (strategy.json ``run_sec``). Then a smaller model,
MLP 40→64→10 with batch 128 (per-step dispatch dominates), for ``vmap`` vs ``sequential``.
Sanity: the final test accuracy of every sweep configuration is compared with its separate run.

  python bench/sweep.py --steps=6000 --json_out=/tmp/bench_sweep.json

Targets the project reports against: ``auto`` within 5% of the best strategy; ``auto`` ≥ 3× faster
than the 16 separate launches.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

_STEPS = flags.DEFINE_integer("steps", 6000, "Training steps of every configuration.")
_SMALL_STEPS = flags.DEFINE_integer("small_steps", None, "Steps for the small model (= --steps).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the runs go (default: a temporary dir).")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Write the results as JSON to this path.")
_SKIP_SEPARATE = flags.DEFINE_bool("skip_separate", False, "Skip the 16 separate launches.")
_RUN = flags.DEFINE_string("run", None, "Internal: run one sweep with this strategy and exit.")
_MODEL = flags.DEFINE_enum("model", "main", ["main", "small"], "Internal: which model --run uses.")

LEARNING_RATES = (1e-3, 3e-3, 1e-2, 3e-2)
WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2, 1e-1)
STRATEGIES = ("vmap", "sequential", "processes", "auto")
NUM_WORKERS = 2
MNIST1D_MLP = os.path.join(ROOT, "experiments", "configs", "mnist1d_mlp.py")


def _base_config(model: str, steps: int):
  import importlib.util

  spec = importlib.util.spec_from_file_location("_mnist1d_mlp_config", MNIST1D_MLP)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  c.steps = steps
  if model == "small":
    c.model.kwargs = {"widths": (64,)}
  return c


def _run_one(strategy: str, model: str, steps: int, workdir: str) -> None:
  """Child process: one sweep; prints one ``BENCH_RESULT`` JSON line."""
  from wd_jax import sweep

  grid = {"learning_rate": list(LEARNING_RATES), "weight_decay": list(WEIGHT_DECAYS)}
  t0 = time.perf_counter()
  rows = sweep.run_sweep(
    _base_config(model, steps),
    grid,
    workdir,
    strategy=strategy,
    num_workers=NUM_WORKERS if strategy in ("processes", "auto") else None,
    verbose=False,
  )
  wall = time.perf_counter() - t0
  with open(os.path.join(workdir, "strategy.json")) as f:
    info = json.load(f)
  out = {
    "run_sweep_sec": wall,
    "run_sec": info.get("run_sec"),
    "chosen": info["chosen"],
    "measurements": info.get("measurements"),
    "workers": info.get("workers"),
    "test_accuracy": {
      f"{r['learning_rate']:g},{r['weight_decay']:g}": r["test_accuracy"] for r in rows
    },
  }
  print("BENCH_RESULT " + json.dumps(out), flush=True)


def _launch_sweep(strategy: str, model: str, steps: int, workdir: str) -> dict:
  cmd = [
    sys.executable,
    os.path.abspath(__file__),
    f"--run={strategy}",
    f"--model={model}",
    f"--steps={steps}",
    f"--workdir={workdir}",
  ]
  t0, c0 = time.perf_counter(), _children_cpu()
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
  wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
  if proc.returncode != 0:
    raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
  line = next(x for x in proc.stdout.splitlines() if x.startswith("BENCH_RESULT "))
  return json.loads(line.split(" ", 1)[1]) | {"wall_sec": wall, "cpu_sec": cpu}


def _children_cpu() -> float:
  """User + system CPU seconds of every finished child process (and theirs) so far."""
  r = resource.getrusage(resource.RUSAGE_CHILDREN)
  return r.ru_utime + r.ru_stime


def _separate_launches(steps: int, workdir: str) -> dict:
  t0, c0 = time.perf_counter(), _children_cpu()
  acc = {}
  for lr in LEARNING_RATES:
    for wd in WEIGHT_DECAYS:
      run_dir = os.path.join(workdir, f"lr{lr:g}_wd{wd:g}")
      cmd = [
        sys.executable,
        os.path.join(ROOT, "experiments", "train.py"),
        f"--config={MNIST1D_MLP}",
        f"--workdir={run_dir}",
        f"--config.steps={steps}",
        f"--config.optimizer.learning_rate={lr}",
        f"--config.optimizer.weight_decay={wd}",
      ]
      proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
      if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
      with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        last = json.loads(f.read().splitlines()[-1])
      acc[f"{lr:g},{wd:g}"] = last.get("test_accuracy")
  wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
  return {"wall_sec": wall, "cpu_sec": cpu, "test_accuracy": acc}


def _load() -> str:
  return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  steps = _STEPS.value
  if _RUN.value:
    _run_one(_RUN.value, _MODEL.value, steps, _WORKDIR.value)
    return
  import jax

  small_steps = _SMALL_STEPS.value or steps
  root = _WORKDIR.value or tempfile.mkdtemp(prefix="bench_sweep_")
  print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
  print(
    f"host: {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} usable "
    f"cores, jax {jax.__version__} ({jax.default_backend()}); load average at start {_load()}"
  )
  print(f"grid: lr {LEARNING_RATES} × λ {WEIGHT_DECAYS} = 16 configurations, {steps} steps each")
  results: dict[str, dict] = {}
  for strategy in STRATEGIES:
    results[strategy] = _launch_sweep(strategy, "main", steps, os.path.join(root, strategy))
    print(f"  done {strategy}: {results[strategy]['wall_sec']:.1f} s  (load {_load()})", flush=True)
  if not _SKIP_SEPARATE.value:
    results["separate"] = _separate_launches(steps, os.path.join(root, "separate"))
    print(f"  done separate launches: {results['separate']['wall_sec']:.1f} s  (load {_load()})")
  small = {
    s: _launch_sweep(s, "small", small_steps, os.path.join(root, f"small_{s}"))
    for s in ("vmap", "sequential")
  }
  print(f"  done small model  (load {_load()})\n")

  best = min(STRATEGIES, key=lambda s: results[s]["wall_sec"])
  best_wall = results[best]["wall_sec"]
  sep = results.get("separate", {}).get("wall_sec")
  header = (
    f"{'variant':<32}{'wall s':>8}{'CPU s':>8}{'run_sweep s':>13}{'train loop s':>14}"
    f"{'wall ÷ best':>13}{'separate ÷ wall':>17}"
  )
  print(header)
  print("-" * len(header))
  for s in STRATEGIES:
    r = results[s]
    label = {
      "processes": f"processes ({NUM_WORKERS} workers)",
      "auto": f"auto (chose {r['chosen']})",
    }.get(s, s)
    print(
      f"{label:<32}{r['wall_sec']:>8.1f}{r['cpu_sec']:>8.1f}{r['run_sweep_sec']:>13.1f}"
      f"{r['run_sec']:>14.1f}{r['wall_sec'] / best_wall:>13.3f}"
      + (f"{sep / r['wall_sec']:>16.2f}x" if sep else "")
    )
  if sep:
    sep_cpu = results["separate"]["cpu_sec"]
    print(
      f"{'16 separate train.py launches':<32}{sep:>8.1f}{sep_cpu:>8.1f}{'':>13}{'':>14}"
      f"{sep / best_wall:>13.3f}{1.0:>16.2f}x"
    )
  print()
  m = results["auto"]["measurements"]
  for s in ("vmap", "sequential", "processes"):
    if s in m:
      print(f"auto measured {s}: " + json.dumps(m[s]))
  if results["processes"].get("workers"):
    for w, info in enumerate(results["processes"]["workers"]):
      print(
        f"processes worker {w}: cores {info['cores']}, import {info['import_sec']:.1f} s, "
        f"build {info['build_sec']:.1f} s, train (with compilation) {info['train_sec']:.1f} s"
      )
  if sep:
    diffs = [
      abs(results["vmap"]["test_accuracy"][k] - v)
      for k, v in results["separate"]["test_accuracy"].items()
    ]
    print(f"max |test accuracy (vmap sweep) - test accuracy (separate run)|: {max(diffs):.4f}")
  print()
  v, q = small["vmap"], small["sequential"]
  print(f"small model MLP 40→64→10, batch 128, {small_steps} steps × 16 configurations:")
  print(
    f"  vmap: wall {v['wall_sec']:.1f} s, train loop {v['run_sec']:.1f} s; sequential: wall "
    f"{q['wall_sec']:.1f} s, train loop {q['run_sec']:.1f} s"
  )
  print(
    f"  vmap speed-up over sequential: {q['wall_sec'] / v['wall_sec']:.2f}x wall, "
    f"{q['run_sec'] / v['run_sec']:.2f}x train loop"
  )
  main_loop = results["sequential"]["run_sec"] / results["vmap"]["run_sec"]
  print(f"main model, same ratio: {main_loop:.2f}x train loop")
  auto_ok = results["auto"]["wall_sec"] <= 1.05 * best_wall
  print(
    f"\ntargets: auto within 5% of best: {'yes' if auto_ok else 'NO'} "
    f"({results['auto']['wall_sec'] / best_wall:.3f}); "
    + (
      f"auto ≥ 3x faster than separate: {'yes' if sep / results['auto']['wall_sec'] >= 3 else 'NO'}"
      f" ({sep / results['auto']['wall_sec']:.2f}x)"
      if sep
      else "separate launches skipped"
    )
  )
  print(f"load average at end {_load()}; runs in {root}")
  if _JSON_OUT.value:
    with open(_JSON_OUT.value, "w") as f:
      json.dump({"main": results, "small": small, "steps": steps}, f, indent=2)


if __name__ == "__main__":
  app.run(main)
