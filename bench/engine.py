"""Training-step throughput of the wd_jax engine against a hand-written jit loop and PyTorch.

What is measured, side by side in one process, on one CPU/GPU device: an MLP on MNIST-1D
(40→256→256→10, ReLU, softmax cross-entropy, float32), batch 512 drawn uniformly with
replacement from the 4000 device-resident training examples, AdamW (lr 1e-3 constant, weight
decay 1e-4 on every parameter). Variants:

* ``engine``: ``jax.jit(wd_jax.engine.train.make_train_step(exp), donate_argnums=0)`` called as
  ``state, metrics = step(state, sampler)``, built by ``wd_jax.engine.train.build`` from
  ``wd_jax.engine.config.base_config()`` (mlp widths (256, 256), adamw, lr_schedule "constant",
  mask "all", batch_size 512). Diagnostics off.
* ``engine + diagnostics every 100``: the same, with the diagnostic step
  (``make_train_step(exp, with_diagnostics=True)``, per-leaf diagnostics on as in
  ``base_config``) as every 100th step — 99 plain steps + 1 diagnostic step, the realistic
  setting of ``wd_jax.engine.train.fit``. The metrics are not fetched to the host (``fit`` fetches
  them every ``log_every`` steps with or without diagnostics).
* ``engine + diagnostics every step``: the diagnostic step only.
* ``hand-written jit``: what a user writes by hand — params a plain dict of the same shapes,
  ``optax.adamw``, the batch gathered on the device with ``jax.random.randint`` over the same
  device-resident arrays from a key carried (and split) in the loop, params/opt-state/key
  donated, the loss returned. Every ratio is against this variant.
* ``hand-written jit (2nd copy)``: a second, separately compiled copy: the noise floor.
* ``PyTorch eager``: the same MLP with ``torch.optim.AdamW`` (defaults otherwise), batch drawn
  with ``torch.randint`` from the same data as a CPU tensor; ``torch.set_num_threads`` left at
  its default (printed).

Methodology (the machine is shared and noisy): every variant is compiled and warmed up first,
plus `--warmup_rounds` untimed rounds; then each of `--rounds` rounds runs every variant for the
same `--steps` steps in a freshly shuffled order, timed with ``time.perf_counter`` and ending in
``jax.block_until_ready`` (torch on CPU is synchronous). Per round, each variant's steps/s and
its ratio to the hand-written jit loop are computed; the table reports the median over rounds
of that ratio, its interquartile range, and the median steps/s. The engine/torch ratio and the
diagnostics' overhead (engine with diagnostics ÷ engine) are medians of per-round ratios too.

  python bench/engine.py --rounds=10 --steps=200 --json_out=/tmp/bench_engine.json

Targets the project reports against: engine ≥ 0.95x the hand-written jit loop; engine ≥ 1.2x
PyTorch eager.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import shlex
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from absl import app, flags

import wd_jax
from wd_jax.engine import config as config_lib
from wd_jax.engine import data as data_lib
from wd_jax.engine import train as train_lib

_ROUNDS = flags.DEFINE_integer("rounds", 10, "Timed rounds; each runs every variant once.")
_STEPS = flags.DEFINE_integer("steps", 200, "Steps per variant per round (the same for all).")
_WARMUP = flags.DEFINE_integer("warmup_rounds", 2, "Untimed rounds after compilation.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed for params, batches and the round orders.")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Write the results as JSON to this path.")

BATCH = 512
WIDTHS = (256, 256)
LR, WD = 1e-3, 1e-4
DIAG_EVERY = 100

BASELINE = "hand-written jit"
HAND_COPY = "hand-written jit (2nd copy)"
ENGINE = "engine"
ENGINE_DIAG100 = f"engine + diagnostics every {DIAG_EVERY}"
ENGINE_DIAG1 = "engine + diagnostics every step"
TORCH = "PyTorch eager"
ORDER = (BASELINE, HAND_COPY, ENGINE, ENGINE_DIAG100, ENGINE_DIAG1, TORCH)


def engine_config(seed: int):
  c = config_lib.base_config()
  c.seed = seed
  c.dataset.name = "mnist1d"
  c.model.name = "mlp"
  c.model.kwargs = {"widths": WIDTHS}
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = LR
  c.optimizer.weight_decay = WD
  c.optimizer.lr_schedule = "constant"
  c.optimizer.mask = "all"
  c.batch_size = BATCH
  return c


class EngineRunner:
  """The wd_jax engine step; every `diag_every`-th step (0: never) is the diagnostic step."""

  def __init__(self, name: str, exp: train_lib.Experiment, diag_every: int):
    self.name = name
    self.diag_every = diag_every
    self.step = jax.jit(train_lib.make_train_step(exp), donate_argnums=0)
    self.diag_step = (
      jax.jit(train_lib.make_train_step(exp, with_diagnostics=True), donate_argnums=0)
      if diag_every
      else None
    )
    self.sampler = data_lib.make_batch_fn(exp.dataset, exp.config.batch_size)
    self.state = jax.tree.map(jnp.copy, exp.init_state)  # own buffers: they are donated
    self.metrics: dict[str, jax.Array] = {}
    self.t = 0  # steps taken, so every-100 diagnostics fall on the same global steps

  def compile(self) -> None:
    if self.diag_every != 1:
      self.state, self.metrics = self.step(self.state, self.sampler)
    if self.diag_step is not None:
      self.state, self.metrics = self.diag_step(self.state, self.sampler)
    jax.block_until_ready((self.state, self.metrics))

  def run(self, n: int) -> float:
    """Seconds for `n` steps, blocking once at the end."""
    step, diag, every, sampler = self.step, self.diag_step, self.diag_every, self.sampler
    state, metrics, t = self.state, self.metrics, self.t
    t0 = time.perf_counter()
    for _ in range(n):
      t += 1
      fn = diag if every and t % every == 0 else step
      state, metrics = fn(state, sampler)
    jax.block_until_ready((state, metrics))
    dt = time.perf_counter() - t0
    self.state, self.metrics, self.t = state, metrics, t
    return dt

  def final_loss(self) -> float:
    return float(self.metrics["loss"])


def hand_init(key: jax.Array, in_features: int, num_classes: int) -> dict[str, Any]:
  """Plain-dict MLP params: LeCun-normal kernels, zero biases (flax's Linear defaults)."""
  sizes = (in_features, *WIDTHS, num_classes)
  init = jax.nn.initializers.lecun_normal()
  params = {}
  for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
    key, sub = jax.random.split(key)
    params[f"dense{i}"] = {
      "kernel": init(sub, (n_in, n_out), jnp.float32),
      "bias": jnp.zeros((n_out,), jnp.float32),
    }
  return params


def hand_loss(params: dict[str, Any], x: jax.Array, y: jax.Array) -> jax.Array:
  h = x
  n = len(params)
  for i in range(n):
    layer = params[f"dense{i}"]
    h = h @ layer["kernel"] + layer["bias"]
    if i < n - 1:
      h = jax.nn.relu(h)
  return optax.softmax_cross_entropy_with_integer_labels(h, y).mean()


class HandRunner:
  """The hand-written jit loop: its own, separately compiled step and (donated) buffers."""

  def __init__(self, name: str, x_all: jax.Array, y_all: jax.Array, num_classes: int, seed: int):
    self.name = name
    opt = optax.adamw(LR, weight_decay=WD)

    def step(params, opt_state, key, x_all, y_all):
      key, sub = jax.random.split(key)
      idx = jax.random.randint(sub, (BATCH,), 0, x_all.shape[0])
      loss, grads = jax.value_and_grad(hand_loss)(params, x_all[idx], y_all[idx])
      updates, opt_state = opt.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, key, loss

    self.fn = jax.jit(step, donate_argnums=(0, 1, 2))
    self.x_all, self.y_all = x_all, y_all
    pkey, self.key = jax.random.split(jax.random.PRNGKey(seed))
    self.params = hand_init(pkey, x_all.shape[1], num_classes)
    self.opt_state = opt.init(self.params)
    self.loss = jnp.zeros([])

  def compile(self) -> None:
    self.run(1)

  def run(self, n: int) -> float:
    fn, x_all, y_all = self.fn, self.x_all, self.y_all
    params, opt_state, key, loss = self.params, self.opt_state, self.key, self.loss
    t0 = time.perf_counter()
    for _ in range(n):
      params, opt_state, key, loss = fn(params, opt_state, key, x_all, y_all)
    jax.block_until_ready((params, opt_state, key, loss))
    dt = time.perf_counter() - t0
    self.params, self.opt_state, self.key, self.loss = params, opt_state, key, loss
    return dt

  def final_loss(self) -> float:
    return float(self.loss)


class TorchRunner:
  """The same MLP and optimizer in PyTorch eager mode on the CPU."""

  def __init__(self, name: str, x: np.ndarray, y: np.ndarray, num_classes: int, seed: int):
    self.name = name
    torch.manual_seed(seed)
    self.gen = torch.Generator().manual_seed(seed)
    sizes = (x.shape[1], *WIDTHS, num_classes)
    layers: list[torch.nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
      layers.append(torch.nn.Linear(n_in, n_out))
      if i < len(sizes) - 2:
        layers.append(torch.nn.ReLU())
    self.model = torch.nn.Sequential(*layers)
    self.opt = torch.optim.AdamW(self.model.parameters(), lr=LR, weight_decay=WD)
    self.x = torch.from_numpy(np.array(x, np.float32))
    self.y = torch.from_numpy(np.array(y, np.int64))
    self.loss = torch.zeros([])

  def compile(self) -> None:
    self.run(1)

  def run(self, n: int) -> float:
    model, opt, x_all, y_all, gen = self.model, self.opt, self.x, self.y, self.gen
    num = x_all.shape[0]
    loss = self.loss
    t0 = time.perf_counter()
    for _ in range(n):
      idx = torch.randint(0, num, (BATCH,), generator=gen)
      loss = torch.nn.functional.cross_entropy(model(x_all[idx]), y_all[idx])
      opt.zero_grad(set_to_none=True)
      loss.backward()
      opt.step()
    dt = time.perf_counter() - t0  # CPU tensors: every op has finished when it returns
    self.loss = loss.detach()
    return dt

  def final_loss(self) -> float:
    return float(self.loss)


def quartiles(a: Any) -> dict[str, float]:
  q25, q50, q75 = np.percentile(np.asarray(a, np.float64), [25, 50, 75])
  return {"median": float(q50), "q25": float(q25), "q75": float(q75), "iqr": float(q75 - q25)}


def fmt_q(q: dict[str, float]) -> str:
  return f"{q['median']:.3f} (IQR {q['iqr']:.3f} [{q['q25']:.3f}, {q['q75']:.3f}])"


def main(argv: list[str]) -> None:
  del argv
  rounds, steps, seed = _ROUNDS.value, _STEPS.value, _SEED.value
  if rounds < 1 or steps < 1 or _WARMUP.value < 0:
    raise app.UsageError("--rounds and --steps must be >= 1, --warmup_rounds >= 0.")
  command = shlex.join([sys.executable, *sys.argv])
  device = jax.devices()[0]
  print(f"command: {command}")
  print(
    f"jax {jax.__version__}, optax {optax.__version__}, wd_jax {wd_jax.__version__}, "
    f"torch {torch.__version__}"
  )
  print(
    f"device: {device.platform} {device.device_kind} ({device}), {len(jax.devices())} device(s), "
    f"{os.cpu_count()} host CPUs, {platform.processor() or platform.machine()}"
  )
  print(
    f"torch.get_num_threads() = {torch.get_num_threads()} (default, not set), "
    f"torch.get_num_interop_threads() = {torch.get_num_interop_threads()}"
  )

  exp = train_lib.build(engine_config(seed))
  ds = exp.dataset
  n_params = sum(int(np.size(a)) for a in jax.tree.leaves(exp.init_state.params))
  print(
    f"MNIST-1D: {ds.num_train} train examples {ds.input_shape}, MLP "
    f"{'→'.join(map(str, (*ds.input_shape, *WIDTHS, ds.num_classes)))} ({n_params:,} params), "
    f"batch {BATCH}, AdamW lr {LR:g} wd {WD:g}, float32"
  )
  print(f"{rounds} rounds x {steps} steps per variant, {_WARMUP.value} warm-up rounds")
  load_start = os.getloadavg()
  print(f"load average at start (1/5/15 min): {' '.join(f'{v:.2f}' for v in load_start)}")

  runners = {
    BASELINE: HandRunner(BASELINE, ds.x_train, ds.y_train, ds.num_classes, seed),
    HAND_COPY: HandRunner(HAND_COPY, ds.x_train, ds.y_train, ds.num_classes, seed),
    ENGINE: EngineRunner(ENGINE, exp, 0),
    ENGINE_DIAG100: EngineRunner(ENGINE_DIAG100, exp, DIAG_EVERY),
    ENGINE_DIAG1: EngineRunner(ENGINE_DIAG1, exp, 1),
    TORCH: TorchRunner(TORCH, np.asarray(ds.x_train), np.asarray(ds.y_train), ds.num_classes, seed),
  }
  names = list(ORDER)

  t0 = time.perf_counter()
  for r in runners.values():
    r.compile()
  print(f"compiled and ran once: {len(runners)} variants in {time.perf_counter() - t0:.1f}s")
  rng = np.random.default_rng(seed)
  for _ in range(_WARMUP.value):
    for i in rng.permutation(len(names)):
      runners[names[i]].run(steps)

  times: dict[str, list[float]] = {n: [] for n in names}
  orders = []
  for _ in range(rounds):
    order = [names[i] for i in rng.permutation(len(names))]
    orders.append(order)
    for n in order:
      times[n].append(runners[n].run(steps))

  load_end = os.getloadavg()
  final_loss = {n: r.final_loss() for n, r in runners.items()}
  for n, loss in final_loss.items():
    if not np.isfinite(loss):
      raise RuntimeError(f"{n}: non-finite loss {loss}")

  t = {n: np.asarray(v) for n, v in times.items()}
  sps = {n: steps / v for n, v in t.items()}  # per round
  results: dict[str, Any] = {}
  for n in names:
    results[n] = {
      "steps_per_sec": quartiles(sps[n]),
      "ratio_to_hand_jit": quartiles(sps[n] / sps[BASELINE]),
      "round_seconds": t[n].tolist(),
      "final_loss": final_loss[n],
    }
  engine_vs_torch = quartiles(sps[ENGINE] / sps[TORCH])
  diag100 = quartiles(sps[ENGINE_DIAG100] / sps[ENGINE])
  diag1 = quartiles(sps[ENGINE_DIAG1] / sps[ENGINE])

  print()
  print(f"| variant | median steps/s | ratio to {BASELINE} (median) | IQR |")
  print("|---|---:|---:|---:|")
  for n in names:
    r = results[n]["ratio_to_hand_jit"]
    print(
      f"| {n} | {results[n]['steps_per_sec']['median']:.1f} | {r['median']:.3f} | "
      f"{r['iqr']:.3f} [{r['q25']:.3f}, {r['q75']:.3f}] |"
    )
  print()
  print(
    f"load average at end (1/5/15 min): {' '.join(f'{v:.2f}' for v in load_end)} "
    f"({os.cpu_count()} CPUs; other processes share them)"
  )
  print(f"final losses: {', '.join(f'{n} {v:.4f}' for n, v in final_loss.items())}")
  print()
  print(f"engine / PyTorch eager (steps/s ratio, median of rounds): {fmt_q(engine_vs_torch)}")
  print("diagnostics overhead (steps/s ratio to the engine without diagnostics):")
  print(
    f"  every {DIAG_EVERY} steps / engine: {fmt_q(diag100)} "
    f"-> {100 * (1 / diag100['median'] - 1):+.1f}% time per step"
  )
  print(
    f"  every step / engine:      {fmt_q(diag1)} "
    f"-> {100 * (1 / diag1['median'] - 1):+.1f}% time per step"
  )
  engine_ratio = results[ENGINE]["ratio_to_hand_jit"]["median"]
  targets = {
    "engine >= 0.95x hand-written jit": engine_ratio >= 0.95,
    "engine >= 1.2x PyTorch eager": engine_vs_torch["median"] >= 1.2,
  }
  print()
  print(
    f"targets: engine/hand-written jit {engine_ratio:.3f} (>= 0.95: "
    f"{'MET' if targets['engine >= 0.95x hand-written jit'] else 'MISSED'}); "
    f"engine/torch {engine_vs_torch['median']:.3f} (>= 1.2: "
    f"{'MET' if targets['engine >= 1.2x PyTorch eager'] else 'MISSED'})"
  )

  if _JSON_OUT.value:
    payload = {
      "command": command,
      "jax_version": jax.__version__,
      "optax_version": optax.__version__,
      "torch_version": torch.__version__,
      "wd_jax_version": wd_jax.__version__,
      "device": str(device),
      "platform": device.platform,
      "cpu_count": os.cpu_count(),
      "torch_num_threads": torch.get_num_threads(),
      "load_average_start": list(load_start),
      "load_average_end": list(load_end),
      "rounds": rounds,
      "steps": steps,
      "warmup_rounds": _WARMUP.value,
      "seed": seed,
      "batch": BATCH,
      "baseline": BASELINE,
      "orders": orders,
      "variants": results,
      "engine_over_torch": engine_vs_torch,
      "diagnostics_every_100_over_engine": diag100,
      "diagnostics_every_step_over_engine": diag1,
      "targets_met": targets,
    }
    with open(_JSON_OUT.value, "w") as f:
      json.dump(payload, f, indent=2)
    print(f"\nwrote {_JSON_OUT.value}")


if __name__ == "__main__":
  app.run(main)
