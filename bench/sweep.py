"""Wall time of a 16-configuration lr × λ sweep: each `wd_jax.engine.sweep` strategy vs 16 launches.

What is measured, in one run, one after the other on the same machine: MNIST-1D with the MLP of
experiments/configs/mnist1d_mlp.py (40→100→100→10, AdamW, warmup + cosine, batch 128, metrics
every 200 steps with diagnostics, test evaluation every 1000), `--steps` steps per
configuration, over the grid peak lr {1e-3, 3e-3, 1e-2, 3e-2} × λ {1e-4, 1e-3, 1e-2, 1e-1}:

* ``vmap``, ``sequential``, ``processes`` (2 workers) and ``auto``:
``wd_jax.engine.sweep.run_sweep``
  with that strategy, each in a fresh Python process (this file re-invoked with ``--run``), so
  no variant inherits another's compilations or generated dataset. ``auto`` runs twice: measuring
  (``remeasure=True``, what the first sweep of a shape costs) and taking the choice it recorded
  (``auto_recorded``, a later sweep of the same shape; the record is this benchmark's own file).
* ``vmap again``: vmap a second time in each round, the noise floor (a variant against itself).
* ``16 separate launches``: what a user without the sweep engine does: a shell loop of 16
  ``python experiments/train.py --config=experiments/configs/mnist1d_mlp.py`` runs, one per
  configuration (each also writes its orbax checkpoints and TensorBoard events, as train.py does).

The time of a variant is the wall time of its process(es), from launch to exit: interpreter and
JAX import, dataset generation, model build, compilation, training, evaluation and outputs. The
sweep's own split is printed too: ``run_sweep`` = inside `run_sweep`; ``train loop`` = the
strategy's training after auto's measurements (strategy.json ``run_sec``); ``CPU s`` = user +
system CPU time of the process tree, far less sensitive than wall time to other load on a shared
machine. ``--rounds`` repeats the variants in rotated order; each is reported as the median over
rounds of its ratio to the fastest fixed strategy of the same round. Then a
smaller model, MLP 40→64→10 with batch 128 (per-step dispatch dominates), ``vmap`` vs
``sequential`` end to end, and the steady-state time per configuration-step of the sequential
and the vmapped (×16) step for both models (median of 3 alternating ≥ 1 s timings).
Sanity: the final test accuracy of every configuration is compared with its separate run (equal
at small lr; at peak lr ≥ 3e-3 float rounding differences grow chaotically after ~100 steps,
see wd_jax/engine/sweep/__init__.py, so they agree only to within run-to-run noise).

  python bench/sweep.py --steps=1000 --rounds=3 --json_out=/tmp/bench_sweep.json
  python bench/sweep.py --steps=1000 --rounds=3 --skip_separate

Targets the project reports against: ``auto`` within 5% of the best strategy; ``auto`` ≥ 3× faster
than the 16 separate launches.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
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
_ROUNDS = flags.DEFINE_integer("rounds", 1, "Rounds of the variants (medians reported).")
_RUN = flags.DEFINE_string("run", None, "Internal: one sweep with this strategy, or 'throughput'.")
_MODEL = flags.DEFINE_enum("model", "main", ["main", "small"], "Internal: which model --run uses.")

LEARNING_RATES = (1e-3, 3e-3, 1e-2, 3e-2)
WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2, 1e-1)
STRATEGIES = ("vmap", "sequential", "processes", "auto")
# Timed variants: the strategies, vmap a second time (the noise floor: a variant against itself),
# auto measuring (as on the first sweep of a shape) and auto taking its recorded choice.
VARIANTS = ("vmap", "vmap_again", "sequential", "processes", "auto", "auto_recorded")
FIXED = ("vmap", "sequential", "processes")  # "best" = the fastest of these in the same round
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


def _run_one(variant: str, model: str, steps: int, workdir: str) -> None:
  """Child process: one sweep; prints one ``BENCH_RESULT`` JSON line."""
  from wd_jax.engine import sweep

  strategy = {"vmap_again": "vmap", "auto_recorded": "auto"}.get(variant, variant)
  grid = {"learning_rate": list(LEARNING_RATES), "weight_decay": list(WEIGHT_DECAYS)}
  t0 = time.perf_counter()
  rows = sweep.run_sweep(
    _base_config(model, steps),
    grid,
    workdir,
    strategy=strategy,
    num_workers=NUM_WORKERS if strategy in ("processes", "auto") else None,
    verbose=False,
    remeasure=variant == "auto",
  )
  wall = time.perf_counter() - t0
  with open(os.path.join(workdir, "strategy.json")) as f:
    info = json.load(f)
  out = {
    "run_sweep_sec": wall,
    "run_sec": info.get("run_sec"),
    "chosen": info["chosen"],
    "measurements": info.get("measurements"),
    "recorded": "recorded_choice" in info,
    "workers": info.get("workers"),
    "test_accuracy": {
      f"{r['learning_rate']:g},{r['weight_decay']:g}": r["test_accuracy"] for r in rows
    },
  }
  print("BENCH_RESULT " + json.dumps(out), flush=True)


def _launch_sweep(strategy: str, model: str, steps: int, workdir: str, cache: str) -> dict:
  """One sweep in a fresh process; `cache` is auto's record of choices (WD_JAX_AUTO_CACHE)."""
  cmd = [
    sys.executable,
    os.path.abspath(__file__),
    f"--run={strategy}",
    f"--model={model}",
    f"--steps={steps}",
    f"--workdir={workdir}",
  ]
  t0, c0 = time.perf_counter(), _children_cpu()
  env = dict(os.environ, WD_JAX_AUTO_CACHE=cache)
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
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


def _throughput(model: str) -> None:
  """Child process: steady-state step time of the sequential step and of the vmapped step."""
  import statistics

  from wd_jax.engine import sweep
  from wd_jax.engine.sweep import tuning

  grid = {"learning_rate": list(LEARNING_RATES), "weight_decay": list(WEIGHT_DECAYS)}
  runs = sweep.expand_grid(_base_config(model, 10**6), grid)
  (group,) = sweep.build_groups(runs)
  tuning._MEASURE_SECONDS = 1.0
  out: dict[str, list[tuple[float, float]]] = {"sequential": [], "vmap": []}
  for _ in range(3):  # alternate, so a change of machine load hits both alike
    for name, batched in (("sequential", False), ("vmap", True)):
      state = group.init_states(runs if batched else runs[:1], batched)
      step, source = group.programs[batched].step(), group.source(0)
      _, wall, cpu, _, _ = tuning.time_steps(step, state, source, 10**9)
      k = len(runs) if batched else 1
      out[name].append((wall / k, cpu / k))
  med = {n: [statistics.median(x[i] for x in v) for i in (0, 1)] for n, v in out.items()}
  print("BENCH_RESULT " + json.dumps(med), flush=True)


def _launch_throughput(model: str) -> dict:
  cmd = [sys.executable, os.path.abspath(__file__), "--run=throughput", f"--model={model}"]
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
  if proc.returncode != 0:
    raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
  line = next(x for x in proc.stdout.splitlines() if x.startswith("BENCH_RESULT "))
  return json.loads(line.split(" ", 1)[1])


def _load() -> str:
  return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _median(results: list[dict], key: str) -> float:
  values = sorted(r[key] for r in results)
  mid = len(values) // 2
  return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _rounds(root: str, steps: int, rounds: int, cache: str) -> dict[str, list[dict]]:
  """Every variant once per round, in rotated order; variant -> one result per round."""
  runs: dict[str, list[dict]] = {s: [] for s in VARIANTS}
  for r in range(rounds):
    order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
    if not os.path.exists(cache):  # auto_recorded needs a record: auto measures first
      order = sorted(order, key=lambda v: v == "auto_recorded")
    for variant in order:
      out = _launch_sweep(variant, "main", steps, os.path.join(root, f"r{r}_{variant}"), cache)
      runs[variant].append(out)
      print(f"  round {r}: {variant} {out['wall_sec']:.1f} s  (load {_load()})", flush=True)
  return runs


def _ratios(runs, rounds: int) -> tuple[dict[str, float], list[float]]:
  """Each variant's median over rounds of its wall time ÷ the round's fastest fixed strategy."""
  best_of_round = [min(runs[s][r]["wall_sec"] for s in FIXED) for r in range(rounds)]
  ratio = {
    s: statistics.median(runs[s][r]["wall_sec"] / best_of_round[r] for r in range(rounds))
    for s in VARIANTS
  }
  return ratio, best_of_round


def _print_table(runs, ratio, best_of_round, separate, rounds: int) -> None:
  wall = {s: _median(runs[s], "wall_sec") for s in VARIANTS}
  sep = separate["wall_sec"] if separate else None
  agg = "median of rounds" if rounds > 1 else "one round"
  header = (
    f"{'variant (' + agg + ')':<36}{'wall s':>8}{'CPU s':>8}{'run_sweep s':>13}"
    f"{'train loop s':>14}{'÷ best of round':>17}{'separate ÷ wall':>17}"
  )
  print(header)
  print("-" * len(header))
  for s in VARIANTS:
    chosen = "/".join(sorted({r["chosen"] for r in runs[s]}))
    label = {
      "vmap_again": "vmap again (noise floor)",
      "processes": f"processes ({NUM_WORKERS} workers)",
      "auto": f"auto, measuring (chose {chosen})",
      "auto_recorded": f"auto, recorded ({chosen})",
    }.get(s, s)
    print(
      f"{label:<36}{wall[s]:>8.1f}{_median(runs[s], 'cpu_sec'):>8.1f}"
      f"{_median(runs[s], 'run_sweep_sec'):>13.1f}{_median(runs[s], 'run_sec'):>14.1f}"
      f"{ratio[s]:>17.3f}" + (f"{sep / wall[s]:>16.2f}x" if sep else "")
    )
  if sep:
    print(
      f"{'16 separate train.py launches':<36}{sep:>8.1f}{separate['cpu_sec']:>8.1f}{'':>13}"
      f"{'':>14}{sep / statistics.median(best_of_round):>17.3f}{1.0:>16.2f}x"
    )
  noise = statistics.median(
    runs["vmap_again"][r]["wall_sec"] / runs["vmap"][r]["wall_sec"] for r in range(rounds)
  )
  print(f"noise floor: vmap again ÷ vmap, median over rounds {noise:.3f}")
  if rounds > 1:
    for s in VARIANTS:
      print(f"  {s} wall per round: " + ", ".join(f"{r['wall_sec']:.1f}" for r in runs[s]))
  print()


def _print_auto_and_workers(runs) -> None:
  for r in runs["auto"]:
    m = r["measurements"]
    print(
      f"auto chose {r['chosen']}; predicted s: "
      + ", ".join(
        f"{k} {m[k].get('predicted_sec', m[k].get('optimistic_sec', float('nan'))):.1f}"
        for k in ("vmap", "sequential", "processes")
        if k in m and isinstance(m[k], dict)
      )
      + f"; per config-step: vmap {m['vmap']['step_sec_per_config'] * 1e6:.0f} µs"
      + (
        f", sequential {m['sequential']['step_sec'] * 1e6:.0f} µs"
        if "step_sec" in m.get("sequential", {})
        else ""
      )
    )
  print(
    "auto, recorded: "
    + ", ".join(
      f"{r['chosen']} ({'recorded' if r['recorded'] else 'measured'})"
      for r in runs["auto_recorded"]
    )
  )
  for w, info in enumerate(runs["processes"][0].get("workers") or []):
    print(
      f"processes worker {w}: cores {info['cores']}, start and imports {info['import_sec']:.1f} "
      f"s, build {info['build_sec']:.1f} s, train (with compilation) {info['train_sec']:.1f} s"
    )


def _print_accuracy(runs, separate) -> None:
  if not separate:
    return
  acc = {s: runs[s][0]["test_accuracy"] for s in ("vmap", "sequential")}
  for s in ("vmap", "sequential"):
    diffs = {k: abs(acc[s][k] - v) for k, v in separate["test_accuracy"].items()}
    worst = max(diffs, key=diffs.get)
    low = [
      abs(acc[s][k] - v) for k, v in separate["test_accuracy"].items() if k.startswith("0.001,")
    ]
    print(
      f"|test accuracy ({s} sweep) - (separate run)|: max {diffs[worst]:.4f} (lr,λ = {worst}); "
      f"max at lr 1e-3: {max(low):.4f}"
    )


def _print_small(small, throughput, small_steps: int) -> None:
  print()
  v, q = small["vmap"], small["sequential"]
  print(
    f"small model MLP 40→64→10, batch 128, {small_steps} steps × 16 configurations, end to end:"
  )
  print(
    f"  vmap wall {v['wall_sec']:.1f} s (CPU {v['cpu_sec']:.1f}, train loop {v['run_sec']:.1f}); "
    f"sequential wall {q['wall_sec']:.1f} s (CPU {q['cpu_sec']:.1f}, train loop {q['run_sec']:.1f})"
  )
  print("steady-state step time per configuration (median of 3 alternating ≥1 s timings):")
  for model, label in (("main", "MLP 40→100→100→10"), ("small", "MLP 40→64→10")):
    t = throughput[model]
    print(
      f"  {label:<18} sequential {t['sequential'][0] * 1e6:6.0f} µs wall "
      f"{t['sequential'][1] * 1e6:6.0f} µs CPU | vmap ×16 {t['vmap'][0] * 1e6:6.0f} µs wall "
      f"{t['vmap'][1] * 1e6:6.0f} µs CPU | vmap speed-up {t['sequential'][0] / t['vmap'][0]:.2f}x "
      f"wall, {t['sequential'][1] / t['vmap'][1]:.2f}x CPU"
    )


def _print_targets(runs, ratio, separate) -> None:
  line = "\ntargets: auto within 5% of the best: " + "; ".join(
    f"{v} {'yes' if ratio[v] <= 1.05 else 'NO'} ({ratio[v]:.3f})" for v in ("auto", "auto_recorded")
  )
  if separate:
    speed = separate["wall_sec"] / _median(runs["auto"], "wall_sec")
    line += f"; auto ≥ 3x faster than separate launches: {'yes' if speed >= 3 else 'NO'} "
    line += f"({speed:.2f}x)"
  print(line)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  steps = _STEPS.value
  if _RUN.value == "throughput":
    _throughput(_MODEL.value)
    return
  if _RUN.value:
    _run_one(_RUN.value, _MODEL.value, steps, _WORKDIR.value)
    return
  import jax

  small_steps = _SMALL_STEPS.value or steps
  rounds = _ROUNDS.value
  root = _WORKDIR.value or tempfile.mkdtemp(prefix="bench_sweep_")
  print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
  print(
    f"host: {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} usable "
    f"cores, jax {jax.__version__} ({jax.default_backend()}); load average at start {_load()}"
  )
  print(
    f"grid: lr {LEARNING_RATES} × λ {WEIGHT_DECAYS} = 16 configurations, {steps} steps each; "
    f"{rounds} round(s) of {len(VARIANTS)} variants, order rotated each round"
  )
  cache = os.path.join(root, "auto_cache.json")  # auto's record, fresh for this benchmark
  runs = _rounds(root, steps, rounds, cache)
  separate = None
  if not _SKIP_SEPARATE.value:
    separate = _separate_launches(steps, os.path.join(root, "separate"))
    print(f"  separate launches: {separate['wall_sec']:.1f} s  (load {_load()})", flush=True)
  small = {
    s: _launch_sweep(s, "small", small_steps, os.path.join(root, f"small_{s}"), cache)
    for s in ("vmap", "sequential")
  }
  throughput = {m: _launch_throughput(m) for m in ("main", "small")}
  print(f"  small model and step throughput done  (load {_load()})\n")
  ratio, best_of_round = _ratios(runs, rounds)
  _print_table(runs, ratio, best_of_round, separate, rounds)
  _print_auto_and_workers(runs)
  _print_accuracy(runs, separate)
  _print_small(small, throughput, small_steps)
  _print_targets(runs, ratio, separate)
  print(f"load average at end {_load()}; runs in {root}")
  if _JSON_OUT.value:
    with open(_JSON_OUT.value, "w") as f:
      json.dump(
        {"steps": steps, "runs": runs, "separate": separate, "small": small, "step": throughput},
        f,
        indent=2,
      )


if __name__ == "__main__":
  app.run(main)
