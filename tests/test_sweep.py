"""Sweeps: every strategy reproduces the solo runs, divergence stays local, outputs, bad input."""

import csv
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import studies

from wd_jax.engine import config, data, sweep, train
from wd_jax.engine.runlog import read_metrics
from wd_jax.engine.sweep import tuning
from wd_jax.study import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))
from configs import mnist1d_mlp  # noqa: E402

GRID = {"learning_rate": [1e-3, 3e-3], "weight_decay": [1e-4, 1e-1]}
# Measured max |Δθ| against the solo train.fit run after 40 steps: 0 to 3e-8 (sequential and
# processes: the injected lr/λ are traced scalars instead of constants, which moves a few float32
# roundings) and 3e-8 to 6e-8 (vmap: batched matmuls also reorder sums). The bound leaves ~15×.
# Short runs on purpose: at large lr such differences grow chaotically over hundreds of steps.
PARAM_ATOL = 1e-6


def _smoke():
  c = mnist1d_mlp.get_config("smoke")  # 40 steps, logs and evals at 20 and 40
  c.diagnostics_every = 0  # diagnostics double the compile time; the experiment test runs them
  return c


def _solo_config(lr, wd):
  c = _smoke()
  c.optimizer.learning_rate, c.optimizer.weight_decay = lr, wd
  return c


def _max_param_diff(a, b):
  diffs = jax.tree.map(lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)))), a, b)
  return max(jax.tree.leaves(diffs))


@pytest.fixture(scope="module")
def solo(tmp_path_factory):
  """train.fit of each grid configuration alone: (lr, wd) -> (final dict, metrics records)."""
  out = {}
  for lr in GRID["learning_rate"]:
    for wd in GRID["weight_decay"]:
      workdir = str(tmp_path_factory.mktemp("solo") / "run")
      result = train.fit(_solo_config(lr, wd), workdir, verbose=False)
      out[lr, wd] = result, read_metrics(os.path.join(workdir, "metrics.jsonl"))
  return out


@pytest.fixture(scope="module")
def sequential_sweep(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("seq") / "sweep")
  rows = sweep.run_sweep(
    _smoke(), GRID, workdir, strategy="sequential", verbose=False, return_states=True
  )
  return workdir, rows


def _assert_matches_solo(workdir, rows, solo):
  assert len(rows) == 4
  for row in rows:
    result, records = solo[row["learning_rate"], row["weight_decay"]]
    assert not row["diverged"] and row["steps"] == 40
    assert _max_param_diff(row["state"].params, result["state"].params) < PARAM_ATOL
    np.testing.assert_allclose(row["loss"], result["loss"], rtol=1e-5)
    np.testing.assert_allclose(row["test_loss"], result["test_loss"], rtol=1e-5)
    assert abs(row["test_accuracy"] - result["test_accuracy"]) <= 1e-3  # one test example
    mine = read_metrics(os.path.join(workdir, row["run_dir"], "metrics.jsonl"))
    assert [r["step"] for r in mine] == [r["step"] for r in records] == [20, 40]
    for a, b in zip(mine, records):
      assert a.keys() == b.keys()
      assert a["learning_rate"] == b["learning_rate"] and a["weight_decay"] == b["weight_decay"]
      np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)


def test_vmap_matches_solo_runs(tmp_path, solo):
  workdir = str(tmp_path / "sweep")
  rows = sweep.run_sweep(
    _smoke(), GRID, workdir, strategy="vmap", verbose=False, return_states=True
  )
  _assert_matches_solo(workdir, rows, solo)
  assert [r["strategy"] for r in rows] == ["vmap"] * 4
  with open(os.path.join(workdir, "strategy.json")) as f:
    assert json.load(f)["compiles"] == [{"vmap_step": 1, "vmap_eval": 1}]  # 4 configs, 1 program
  for name in ("config.json", "results.csv", "results.md", "summary.md"):
    assert os.path.exists(os.path.join(workdir, name)), name
  with open(os.path.join(workdir, "results.csv")) as f:
    table = list(csv.DictReader(f))
  assert [float(r["learning_rate"]) for r in table] == [1e-3, 1e-3, 3e-3, 3e-3]
  assert {"loss", "test_accuracy", "best_test_accuracy", "test_loss", "diverged", "steps"} <= set(
    table[0]
  )


def test_sequential_matches_solo_runs_and_compiles_once(sequential_sweep, solo):
  workdir, rows = sequential_sweep
  _assert_matches_solo(workdir, rows, solo)
  with open(os.path.join(workdir, "strategy.json")) as f:
    info = json.load(f)
  # One executable per jitted function for all four configurations: lr and λ are state.
  assert info["compiles"] == [{"single_step": 1, "single_eval": 1}]


@pytest.mark.parametrize("winner", ["vmap", "sequential"])
def test_auto_keeps_its_measured_steps_and_matches_the_strategy_it_chose(
  tmp_path, monkeypatch, sequential_sweep, winner
):
  # The measurement is injected, not timed: the steps really run (so the measured state is
  # real), but compile and step times are fixed numbers, whatever the machine's load.
  timer = tuning.time_steps

  def injected(fn, state, source, limit):
    _, _, _, n, state = timer(fn, state, source, limit)
    batched = np.ndim(state.step) == 1
    step = 1e-3 if batched == (winner == "vmap") else 1.0  # the loser is 1000× slower
    return 0.01, step, step, n, state

  monkeypatch.setattr(tuning, "time_steps", injected)
  fresh = []  # (batched, first run index) of every fresh state the training loop starts from
  group_train, init_states = sweep.Group.train, sweep.Group.init_states

  def counted_train(self, *args, **kwargs):
    fresh.append(None)  # marks "inside train"
    try:
      return group_train(self, *args, **kwargs)
    finally:
      fresh.remove(None)

  def counted_init(self, runs, batched):
    if None in fresh:
      fresh.append((batched, runs[0].index))
    return init_states(self, runs, batched)

  monkeypatch.setattr(sweep.Group, "train", counted_train)
  monkeypatch.setattr(sweep.Group, "init_states", counted_init)
  workdir = str(tmp_path / "auto")
  rows = sweep.run_sweep(
    _smoke(), GRID, workdir, strategy="auto", num_workers=1, verbose=False, return_states=True
  )
  with open(os.path.join(workdir, "strategy.json")) as f:
    info = json.load(f)
  assert info["chosen"] == winner
  # The smoke config logs first at step 20: the measurement's steps 1..19 are kept.
  assert 1 + tuning._MIN_TIMED_STEPS <= info["measurements"][winner]["steps_kept"] <= 19
  # The measured state went on training: only the other runs started from a fresh state.
  assert fresh == ([] if winner == "vmap" else [(False, 1), (False, 2), (False, 3)])
  if winner == "sequential":
    expected = sequential_sweep[1]
  else:
    expected = sweep.run_sweep(
      _smoke(), GRID, str(tmp_path / "vmap"), strategy="vmap", verbose=False, return_states=True
    )
  for got, want in zip(rows, expected, strict=True):
    assert got["steps"] == want["steps"] == 40
    assert _max_param_diff(got["state"].params, want["state"].params) == 0.0  # bitwise
    assert got["loss"] == want["loss"] and got["test_loss"] == want["test_loss"]
    mine = read_metrics(os.path.join(workdir, got["run_dir"], "metrics.jsonl"))
    assert [r["step"] for r in mine] == [20, 40]


def test_auto_records_its_choice_per_sweep_shape(tmp_path, monkeypatch):
  cache = tmp_path / "cache" / "sweep_auto.json"
  monkeypatch.setenv(sweep.AUTO_CACHE_ENV, str(cache))
  assert sweep.auto_cache_path() == str(cache)
  grid = {"learning_rate": [1e-3, 3e-3]}

  def run(name, grid=grid, **kw):
    workdir = str(tmp_path / name)
    rows = sweep.run_sweep(
      _smoke(), grid, workdir, strategy="auto", num_workers=1, verbose=False, **kw
    )
    with open(os.path.join(workdir, "strategy.json")) as f:
      return rows, json.load(f)

  first_rows, first = run("first")
  assert "measurements" in first and "recorded_choice" not in first
  with open(cache) as f:
    (entry,) = json.load(f).values()
  assert entry["chosen"] == first["chosen"]
  again_rows, again = run("again")  # same shape: the recorded choice, no measurement
  assert again["chosen"] == first["chosen"] and "measurements" not in again
  assert again["recorded_choice"]["measurements"] == json.loads(json.dumps(first["measurements"]))
  with open(tmp_path / "again" / "summary.md") as f:
    assert "recorded for this sweep's shape" in f.read()
  for a, b in zip(first_rows, again_rows, strict=True):
    assert a["loss"] == b["loss"] and a["test_accuracy"] == b["test_accuracy"]
  _, fresh = run("remeasured", remeasure=True)
  assert "measurements" in fresh
  _, other = run("other_shape", grid={"learning_rate": [1e-3, 3e-3, 1e-2]})  # 3 configurations
  assert "measurements" in other
  with open(cache) as f:
    assert len(json.load(f)) == 2
  cache.write_text("{not json")  # a corrupt record is measured over and rewritten
  _, redone = run("after_corruption")
  assert "measurements" in redone
  with open(cache) as f:
    assert len(json.load(f)) == 1
  monkeypatch.setenv(sweep.AUTO_CACHE_ENV, "off")
  assert sweep.auto_cache_path() is None
  monkeypatch.delenv(sweep.AUTO_CACHE_ENV)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert sweep.auto_cache_path() == str(tmp_path / "xdg" / "wd_jax" / "sweep_auto.json")


def test_diverging_configuration_is_marked_and_leaves_the_others_alone(tmp_path, solo):
  configs = [{"learning_rate": 3e-3, "weight_decay": 1e-1}, {"learning_rate": 1e6}]
  workdir = str(tmp_path / "sweep")
  rows = sweep.run_sweep(
    _smoke(), configs, workdir, strategy="vmap", verbose=False, return_states=True
  )
  good, bad = rows
  assert bad["diverged"] and bad["diverged_at_step"] == bad["steps"] == 20
  assert np.isnan(bad["test_accuracy"]) and np.isnan(bad["loss"])
  assert read_metrics(os.path.join(workdir, bad["run_dir"], "metrics.jsonl")) == []
  # It shared a vmapped program with `good` until the end; its NaNs stayed in its own slice.
  result, _ = solo[3e-3, 1e-1]
  assert not good["diverged"] and good["steps"] == 40
  assert _max_param_diff(good["state"].params, result["state"].params) < PARAM_ATOL
  solo_bad = train.fit(_solo_config(1e6, 1e-2), str(tmp_path / "solo_bad"), verbose=False)
  assert solo_bad["diverged"] and solo_bad["diverged_at_step"] == bad["diverged_at_step"]
  with open(os.path.join(workdir, "summary.md")) as f:
    assert "1 diverged" in f.read()


def test_processes_give_the_sequential_results(tmp_path, sequential_sweep):
  _, expected = sequential_sweep
  workdir = str(tmp_path / "sweep")
  rows = sweep.run_sweep(
    _smoke(), GRID, workdir, strategy="processes", num_workers=2, verbose=False
  )
  with open(os.path.join(workdir, "strategy.json")) as f:
    workers = json.load(f)["workers"]
  assert len(workers) == 2
  # One device each: the worker's XLA environment replaced the 4 forced host devices in time.
  assert [w["devices"] for w in workers] == [1, 1]
  assert [w["compiles"] for w in workers] == [[{"single_step": 1, "single_eval": 1}]] * 2
  if len(os.sched_getaffinity(0)) >= 2:  # each worker pinned to its own core
    assert not set(workers[0]["cores"]) & set(workers[1]["cores"])
  for row, exp in zip(rows, expected):
    assert row["name"] == exp["name"] and row["strategy"] == "processes"
    for k in ("loss", "test_loss", "test_accuracy", "best_test_accuracy"):
      np.testing.assert_allclose(row[k], exp[k], rtol=1e-5, err_msg=k)
    assert os.path.exists(os.path.join(workdir, row["run_dir"], "metrics.jsonl"))


@pytest.mark.parametrize(
  "grid, field",
  [
    ({"learning_rat": [1e-3]}, "learning_rat"),
    ({"weight_decay": []}, "weight_decay"),
    ({"learning_rate": ["fast"]}, "learning_rate"),
    ({"learning_rate": [-1e-3]}, "learning_rate"),
    ({"optimizer.kwargs.b1": [1.5]}, "optimizer.kwargs.b1"),
    ({"seed": [0.5]}, "seed"),
    ([{"model.kwargs.nonexistent.depth": 2}], "model.kwargs.nonexistent.depth"),
    ({"learning_rate": 1e-3}, "learning_rate"),
  ],
)
def test_bad_grid_raises_before_the_workdir_exists(tmp_path, grid, field):
  workdir = str(tmp_path / "sweep")
  with pytest.raises(ValueError, match=field.replace(".", r"\.")):
    sweep.run_sweep(_smoke(), grid, workdir, strategy="sequential", verbose=False)
  assert not os.path.exists(workdir)


@pytest.mark.parametrize("grid", [{}, []])
def test_empty_grid_raises(tmp_path, grid):
  with pytest.raises(ValueError, match="empty"):
    sweep.run_sweep(_smoke(), grid, str(tmp_path / "sweep"), verbose=False)
  assert not os.path.exists(tmp_path / "sweep")


def test_grid_expansion_and_names():
  runs = sweep.expand_grid(_smoke(), {"learning_rate": [1e-3, 1e-2], "seed": [0, 1, 2]})
  assert [(r.config.optimizer.learning_rate, r.config.seed) for r in runs[:4]] == [
    (1e-3, 0),
    (1e-3, 1),
    (1e-3, 2),
    (1e-2, 0),
  ]
  assert runs[4].name == "4-lr=0.01_seed=1"
  assert len(sweep.group_runs(runs)) == 1  # lr and seed are state: one compiled program
  runs = sweep.expand_grid(_smoke(), {"optimizer.name": ["adamw", "sgdw"], "weight_decay": [0.0]})
  assert len(sweep.group_runs(runs)) == 2


def test_heatmap_and_line_plot(tmp_path, sequential_sweep):
  workdir, _ = sequential_sweep
  out = str(tmp_path / "heat.png")
  assert report.heatmap(workdir, out=out) == out
  with open(out, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert 1_000 < os.path.getsize(out) <= 150_000
  with pytest.raises(ValueError, match="metric"):
    report.heatmap(workdir, metric="nope")
  line = report.line_plot(
    {"a": ([1, 2, 3], [3.0, 2.0, 1.0])}, "t", "step", "loss", str(tmp_path / "l.png"), logy=True
  )
  assert os.path.getsize(line) > 1_000


def test_experiment_smoke_end_to_end_selects_on_validation_and_reads_test_once(tmp_path):
  workdir = str(tmp_path / "sweep")
  cmd = studies.script_cmd("sweep.py", "sweep_mnist1d_mlp.py:smoke", workdir)
  subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
  for name in ("results.csv", "summary.md", "heatmap_val_accuracy.png", "strategy.json"):
    assert os.path.exists(os.path.join(workdir, name)), name
  with open(os.path.join(workdir, "strategy.json")) as f:
    info = json.load(f)
  assert info["requested"] == "auto" and info["chosen"] in sweep.STRATEGIES
  assert {"sequential", "vmap"} <= set(info["measurements"])
  rows = report.read_results(workdir)
  assert len(rows) == 4
  # The best cell on validation, and it alone, has its test split read (once).
  best = max(rows, key=lambda r: r["val_accuracy"])
  tested = [r["name"] for r in rows if np.isfinite(r["test_accuracy"])]
  assert tested == [best["name"]] == info["test_read_for"]
  with open(os.path.join(workdir, "summary.md")) as f:
    assert f"best on validation: {best['name']}" in f.read()
  assert os.path.exists(os.path.join(workdir, best["run_dir"], "test_items.npz"))
  records = read_metrics(os.path.join(workdir, rows[0]["run_dir"], "metrics.jsonl"))
  assert "param_norm" in records[-1] and "val_accuracy" in records[-1]  # diagnostics on
  assert not any("test_accuracy" in r for r in records)  # the runs never evaluated on test


def test_without_a_validation_split_no_best_cell_is_picked(sequential_sweep):
  workdir, rows = sequential_sweep
  assert "val_accuracy" not in rows[0]
  with open(os.path.join(workdir, "summary.md")) as f:
    summary = f.read()
  assert "best: none picked" in summary and "validation_fraction" in summary
  with open(os.path.join(workdir, "results.md")) as f:
    assert "**" not in f.read()  # no row in bold


def test_a_memoryless_decay_logs_its_step_against_the_loss_only_step(tmp_path):
  """Decoupled and stable decay enter no moment, so the sweep's step can take the same state's
  update with λ = 0 as the loss-only step: at λ = 0 the two are one step (cos 1, ratio 0).
  Stable decay here (AdamW's logging is exercised by the l2_pollution smoke test)."""
  optimizer = "adams"
  c = mnist1d_mlp.get_config("smoke")
  c.optimizer.name, c.optimizer.kwargs = optimizer, {}
  c.steps, c.diagnostics_every, c.per_leaf_diagnostics = 20, 10, False
  c.log_every = c.eval_every = c.checkpoint_every = 20
  rows = sweep.run_sweep(
    c, {"weight_decay": [0.0, 0.5]}, str(tmp_path / "s"), strategy="vmap", verbose=False
  )
  logged = {}
  for r in rows:
    recs = read_metrics(os.path.join(tmp_path, "s", r["run_dir"], "metrics.jsonl"))
    logged[r["weight_decay"]] = [x for x in recs if "step_cos" in x]
  assert [len(v) for v in logged.values()] == [2, 2]
  for x in logged[0.0]:
    assert x["step_cos"] == pytest.approx(1.0, abs=1e-6) and x["step_ratio"] < 1e-6  # rounding
  for x in logged[0.5]:
    assert x["step_ratio"] > 1e-3 and x["step_cos"] < 1.0


def test_the_selected_rows_alone_get_test_metrics_and_per_item_outcomes(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(300, 8)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int32)
  ds = data.with_validation_split(data.from_arrays(x[:200], y[:200], x[200:], y[200:]), 0.25)
  c = config.base_config()
  c.model.name, c.model.kwargs = "mlp", {"widths": (16,)}
  c.steps, c.batch_size, c.eval_batch_size, c.optimizer.learning_rate = 40, 32, 32, 1e-2
  rows = sweep.run_sweep(
    c,
    {"seed": [0, 1]},
    str(tmp_path / "s"),
    data=ds,
    strategy="sequential",
    verbose=False,
    select=lambda rows: [1],
  )
  assert "test_accuracy" not in rows[0]
  assert not os.path.exists(tmp_path / "s" / rows[0]["run_dir"] / "test_items.npz")
  items = np.load(tmp_path / "s" / rows[1]["run_dir"] / "test_items.npz")
  assert items["accuracy"].shape == items["loss"].shape == (100,)  # 100 test items, no padding
  assert set(np.unique(items["accuracy"])) <= {0.0, 1.0}
  np.testing.assert_allclose(items["accuracy"].mean(), rows[1]["test_accuracy"], atol=1e-6)
  np.testing.assert_allclose(items["loss"].mean(), rows[1]["test_loss"], rtol=1e-5)
