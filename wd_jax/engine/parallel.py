"""Data parallel training: ``jax.pmap`` or ``jax.jit`` over a device mesh, one host or many.

Both strategies compute the single-device step for the same global batch: every device
draws the same global batch from ``fold_in(key, step)`` and works on its share of it.

- ``"pmap"``: each device keeps its slice; gradients, metrics and BatchNorm running
  statistics are ``lax.pmean``-ed, and BatchNorm normalises with statistics of the whole
  global batch (its ``axis_name`` is set), as one device would.
- ``"sharded"``: the unchanged step is jitted with the state replicated and the batch
  sharded over the mesh's ``data`` axis (``NamedSharding``); XLA inserts the reductions.
  Across hosts the mesh spans every process's devices (`initialize_distributed`).
- ``"none"``: one device.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from wd_jax import validation

STRATEGIES = ("none", "pmap", "sharded")
AXIS = "data"


def initialize_distributed(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
) -> None:
  """Joins JAX's multi-process runtime (`jax.distributed.initialize`), once per process.

  Arguments default to the environment variables ``WD_JAX_COORDINATOR_ADDRESS``,
  ``WD_JAX_NUM_PROCESSES`` and ``WD_JAX_PROCESS_ID``; an address of ``"auto"`` (or none)
  leaves the cluster to JAX's own detection (TPU pod slices, SLURM, Open MPI). On CPU,
  cross-process collectives use gloo.
  """
  env = os.environ
  coordinator_address = coordinator_address or env.get("WD_JAX_COORDINATOR_ADDRESS")
  if coordinator_address == "auto":  # let JAX detect the cluster (TPU pod slice, SLURM, MPI)
    coordinator_address = None
  if num_processes is None and "WD_JAX_NUM_PROCESSES" in env:
    num_processes = int(env["WD_JAX_NUM_PROCESSES"])
  if process_id is None and "WD_JAX_PROCESS_ID" in env:
    process_id = int(env["WD_JAX_PROCESS_ID"])
  if num_processes is not None and num_processes < 1:
    raise ValueError(f"num_processes must be >= 1, got {num_processes}.")
  if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
    raise ValueError(f"process_id must be in [0, {num_processes}), got {process_id}.")
  if jax.config.jax_platforms in (None, "", "cpu") or env.get("JAX_PLATFORMS", "") == "cpu":
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
    coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
  )


def sync_batchnorm_graphdef(exp: Any) -> Any:
  """The train graphdef with every BatchNorm reducing its statistics over `AXIS`."""
  model = nnx.merge(exp.train_graphdef, *exp.nnx_states(exp.init_state.params, exp.init_state.rest))
  model = nnx.with_attributes(model, axis_name=AXIS, raise_if_not_found=False)
  return nnx.split(model, nnx.Param, ...)[0]


class DataParallel:
  """Places state and data, compiles the step and fetches results for one strategy."""

  def __init__(self, strategy: str = "none", devices: list[Any] | None = None):
    validation.check_choice("parallel", strategy, STRATEGIES)
    self.strategy = strategy
    if strategy == "pmap":
      self.devices = list(devices or jax.local_devices())
    elif strategy == "sharded":
      self.devices = list(devices or jax.devices())
    else:
      self.devices = list(devices or jax.local_devices())[:1]
    self.num_devices = len(self.devices)
    if strategy == "pmap":
      self.stacked = NamedSharding(Mesh(np.array(self.devices), (AXIS,)), P(AXIS))
    if strategy == "sharded":
      self.mesh = Mesh(np.array(self.devices), (AXIS,))
      self.replicated = NamedSharding(self.mesh, P())
      self.batch_sharding = NamedSharding(self.mesh, P(AXIS))

  def check_batch_size(self, batch_size: int) -> None:
    if self.strategy != "none" and batch_size % self.num_devices:
      raise ValueError(
        f"batch_size {batch_size} is not divisible by the {self.num_devices} devices of the "
        f"{self.strategy!r} strategy; use a multiple of {self.num_devices}."
      )

  def place(self, tree: Any) -> Any:
    """Replicates a pytree (state, sampler) onto this strategy's devices."""
    if self.strategy == "pmap":  # a leading device axis, one slice per device
      n = self.num_devices
      return jax.device_put(
        jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (n, *np.shape(x))), tree),
        self.stacked,
      )
    if self.strategy == "sharded":
      return jax.tree.map(self._replicate_global, tree)
    return jax.device_put(tree, self.devices[0])

  def _replicate_global(self, x: Any) -> jax.Array:
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, self.replicated, lambda idx: x[idx])

  def local(self, tree: Any) -> Any:
    """One single-device copy of a replicated pytree (for eval, checks and checkpoints)."""
    if self.strategy == "pmap":
      return jax.tree.map(lambda x: x[0], tree)
    if self.strategy == "sharded":
      return jax.tree.map(lambda x: x.addressable_data(0), tree)
    return tree

  def fetch(self, metrics: dict[str, jax.Array]) -> dict[str, float]:
    """Metrics as Python floats (the loop's only host sync)."""
    return {k: float(v) for k, v in jax.device_get(self.local(metrics)).items()}

  def compile_step(
    self, exp: Any, step_factory: Callable[..., Any], *, with_diagnostics: bool = False
  ):
    """The jitted/pmapped ``(state, sampler) -> (state, metrics)`` with donated state.

    `step_factory` is `wd_jax.engine.experiment.make_train_step` (passed in so that this module sits
    below the training loop that uses it).
    """
    if self.strategy == "pmap":
      step = step_factory(
        exp,
        with_diagnostics=with_diagnostics,
        axis_name=AXIS,
        graphdef=sync_batchnorm_graphdef(exp),
      )
      return jax.pmap(step, axis_name=AXIS, devices=self.devices, donate_argnums=0)
    if self.strategy == "sharded":
      step = step_factory(
        exp, with_diagnostics=with_diagnostics, batch_sharding=self.batch_sharding
      )
      rep = self.replicated
      return jax.jit(step, in_shardings=(rep, rep), out_shardings=(rep, rep), donate_argnums=0)
    return jax.jit(step_factory(exp, with_diagnostics=with_diagnostics), donate_argnums=0)
