"""What a run is: its state, its built pieces, and the pure steps that train and evaluate it.

The step is a pure function ``(TrainState, batches) -> (TrainState, metrics)``: the batch is
drawn on the device from ``fold_in(key, step)`` (or handed in from the user's iterator), so no
host work sits between steps, a resumed run draws exactly the batches an uninterrupted one
would, and the same function can be pmapped, sharded or vmapped by `wd_jax.engine.parallel` /
`wd_jax.engine.sweep`. `build` turns a config — and, optionally, the user's own model, data and
optimizer recipe — into an `Experiment`; `wd_jax.engine.train.fit` and `wd_jax.engine.sweep` train
it through
the one loop (`wd_jax.engine.loop`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from wd_jax import diagnostics
from wd_jax.engine import config as config_lib
from wd_jax.engine import data as data_lib
from wd_jax.engine import models as models_lib
from wd_jax.masks import leaf_multipliers, param_paths


class TrainState(NamedTuple):
  """Everything a run needs to continue: a pytree of arrays (checkpointed as is)."""

  step: jax.Array  # shape=(), int32: steps taken.
  params: Any  # nnx.Param state.
  rest: Any  # Other model state (BatchNorm statistics).
  opt_state: Any
  key: jax.Array  # raw uint32 PRNG key; batch t uses fold_in(key, t).


def per_example(task: str, logits: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
  """Each example's loss and (classification, language model) correctness, shape (batch,).

  A language-model example is one window: its loss and accuracy are means over its tokens.
  """
  if task == "regression":
    pred = logits.reshape(y.shape)
    per = 0.5 * jnp.square(pred - y)
    return {"loss": per.reshape(per.shape[0], -1).sum(-1)}
  per = optax.softmax_cross_entropy_with_integer_labels(logits, y)
  correct = (jnp.argmax(logits, -1) == y).astype(jnp.float32)
  if task == "language_model":  # mean over tokens of each sequence
    per, correct = per.mean(-1), correct.mean(-1)
  return {"loss": per, "accuracy": correct}


def loss_and_metrics(task: str, logits: jax.Array, y: jax.Array, weight: jax.Array | None = None):
  """Mean loss and metric sums for a batch; `weight` masks padded eval examples."""
  items = per_example(task, logits, y)
  per, correct = items["loss"], items.get("accuracy")
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
  stream: Any = None  # a `BatchStream` when the batches come from the user's iterator
  model_source: Any = None  # the user's module or ``rngs -> module`` (None: by config name)
  _model_cache: dict[int, Any] = dataclasses.field(default_factory=dict, repr=False)

  @property
  def scale_invariant_sizes(self) -> dict[str, int]:
    """Path -> number of elements of every scale-invariant params leaf."""
    leaves = jax.tree.leaves(self.init_state.params)
    paths = param_paths(self.init_state.params)
    return {p: int(np.size(x)) for p, x, si in zip(paths, leaves, self.scale_invariant) if si}

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

  def model_state(self, seed: int) -> tuple[Any, Any]:
    """Initial (params, rest) plain dicts of the model for `seed` (a sweep's other seeds)."""
    if seed == self.config.seed:
      return self.init_state.params, self.init_state.rest
    if seed not in self._model_cache:  # shared by the runs of a sweep with this seed
      module = _make_model(self.config, self.dataset, seed, self.model_source)
      _, _, params, rest = models_lib.split_model(module)
      self._model_cache[seed] = (nnx.to_pure_dict(params), nnx.to_pure_dict(rest))
    return self._model_cache[seed]

  def initial_state(self, seed: int, opt_state_fn: Any = None) -> TrainState:
    """A fresh `TrainState` for `seed`: its own initial parameters and batch key.

    `opt_state_fn(params)` builds the optimizer state (default ``self.optimizer.init``).
    Arrays are copies, so a jitted step may donate them.
    """
    params, rest = jax.tree.map(jnp.copy, self.model_state(seed))
    init = opt_state_fn or self.optimizer.init
    return TrainState(
      step=jnp.zeros([], jnp.int32),
      params=params,
      rest=rest,
      opt_state=init(params),
      key=jax.random.PRNGKey(seed + 1),
    )


@dataclasses.dataclass(frozen=True)
class BatchStream:
  """Training batches from your own iterator, and a `Dataset` to evaluate on.

  Pass it as ``data=`` to `wd_jax.engine.train.fit`, `wd_jax.engine.train.build` or
  `wd_jax.engine.sweep.run_sweep`; the step then takes each batch as an argument instead of
  drawing it on the device.

  Attributes:
    batches: a callable ``start_step -> iterable of (x, y)`` giving the batches from that step
      on (so ``--resume`` continues exactly), or a plain iterable (a resumed run then skips the
      batches before its start). Each (x, y) is one global batch.
    eval_data: a `wd_jax.engine.data.Dataset` whose val/test splits are evaluated (its train split
      is not used for training); it also tells the task, classes and input shape.

  Example:
    >>> import numpy as np
    >>> from wd_jax.engine import config, data, train
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(256, 8)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int32)  # a task an MLP learns in a few steps
    >>> ds = data.from_arrays(x[:200], y[:200], x[200:], y[200:])
    >>> cfg = config.base_config()
    >>> cfg.model.name, cfg.model.kwargs = "mlp", {"widths": (16,)}
    >>> cfg.steps, cfg.batch_size, cfg.optimizer.learning_rate = 40, 32, 1e-2
    >>> cfg.log_every, cfg.diagnostics_every, cfg.eval_every, cfg.checkpoint_every = 20, 20, 40, 40
    >>> def batches(start):  # the batches of steps start, start + 1, ...
    ...   for step in range(start, cfg.steps):
    ...     i = (step * 32) % 192
    ...     yield x[i:i + 32], y[i:i + 32]
    >>> stream = train.BatchStream(batches, eval_data=ds)
    >>> train.build(cfg, data=stream).stream is stream
    True
  """

  batches: Any
  eval_data: data_lib.Dataset


def available_memory() -> tuple[int, str]:
  """Bytes of memory a run may use, and where: an accelerator's own limit, else the host's RAM.

  The one measurement the memory check reads (tests replace it)."""
  with contextlib.suppress(Exception):  # backends without memory statistics raise or return None
    stats = jax.local_devices()[0].memory_stats() or {}
    if stats.get("bytes_limit"):
      return int(stats["bytes_limit"]), f"{jax.local_devices()[0].device_kind} memory"
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine's memory"


def nbytes(tree: Any) -> int:
  """The bytes of every array (or `jax.ShapeDtypeStruct`) leaf of `tree`."""
  total = 0
  for leaf in jax.tree.leaves(tree):
    dtype = leaf.dtype
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
      size = 8  # a threefry key: two uint32
    else:
      size = np.dtype(dtype).itemsize
    total += int(np.prod(np.shape(leaf), dtype=np.float64)) * size
  return total


def _check_fits(needed: int, what: str, of: str) -> None:
  """Refuses a run whose `needed` bytes exceed the memory it would run in, before any array of
  that size is allocated (the OOM killer gives no message and leaves the status "running")."""
  limit, where = available_memory()
  if needed > limit:
    raise ValueError(
      f"{what} needs at least {needed / 2**30:.1f} GiB ({of}), more than the "
      f"{limit / 2**30:.1f} GiB of {where}: make it smaller."
    )


def _describe_model(config, model: Any) -> str:
  if model is None:
    return f"config.model (name {config.model.name!r}, kwargs {dict(config.model.kwargs)})"
  kind = type(model) if isinstance(model, nnx.Module) else model
  return f"your model {getattr(kind, '__qualname__', repr(kind))}"


def _model_factory(config, dataset: data_lib.Dataset, seed: int, model: Any):
  """A zero-argument function that builds the model: by config name, or the user's callable."""
  if model is None:
    return lambda: models_lib.build_model(
      config.model.name,
      num_classes=dataset.num_classes,
      input_shape=dataset.input_shape,
      rngs=nnx.Rngs(seed),
      **dict(config.model.kwargs),
    )
  if not callable(model):
    raise ValueError(
      f"model must be None, an nnx.Module or a callable rngs -> nnx.Module, got {model!r}."
    )

  def user_model():
    built = model(nnx.Rngs(seed))
    if not isinstance(built, nnx.Module):
      raise ValueError(f"model(rngs) must return a flax nnx.Module, got {type(built).__name__}.")
    return built

  return user_model


def _make_model(config, dataset: data_lib.Dataset, seed: int, model: Any) -> nnx.Module:
  """The model: by config name, the user's module as is, or the user's ``rngs -> module``.

  The model is first built abstractly (`nnx.eval_shape`, no array allocated), so one too large
  for memory is refused with a message instead of being killed while it is allocated.
  """
  if isinstance(model, nnx.Module):
    return model
  make = _model_factory(config, dataset, seed, model)
  what = _describe_model(config, model)
  try:
    abstract = nnx.eval_shape(make)
  except (TypeError, ValueError, ZeroDivisionError) as e:
    if model is None:
      raise ValueError(f"{what}: {e}") from e
    abstract = None  # the user's own code may need concrete values: it is built as is below
  if abstract is not None:
    _check_fits(2 * nbytes(nnx.state(abstract, nnx.Param)), what, "parameters and gradients")
  return make()


def _load_data(config, data: Any) -> tuple[data_lib.Dataset, BatchStream | None]:
  """The dataset to evaluate on (with its validation split) and the user's stream, if any."""
  stream = None
  if data is None:
    try:
      dataset = data_lib.load_dataset(config.dataset.name, **dict(config.dataset.kwargs))
    except TypeError as e:  # an argument the loader does not take: a key of dataset.kwargs
      raise ValueError(
        f"config.dataset.kwargs {dict(config.dataset.kwargs)} do not fit the dataset "
        f"{config.dataset.name!r}: {e}"
      ) from e
  elif isinstance(data, data_lib.Dataset):
    dataset = data
  elif isinstance(data, BatchStream):
    stream, dataset = data, data.eval_data
  else:
    raise ValueError(
      "data must be None, a wd_jax.engine.data.Dataset or a wd_jax.engine.train.BatchStream, "
      f"got {data!r}."
    )
  fraction = config.dataset.get("validation_fraction", 0.0)
  if fraction and not dataset.has_validation:
    dataset = data_lib.with_validation_split(
      dataset, fraction, config.dataset.get("validation_seed", 0)
    )
  return dataset, stream


def build(
  config: ml_collections.ConfigDict,
  *,
  model: Any = None,
  data: Any = None,
  optimizer: Any = None,
) -> Experiment:
  """Validates `config` and builds everything a run needs; writes nothing.

  The model is initialised from ``config.seed``, the optimizer built from
  ``config.optimizer`` (or your recipe), and one training step is traced (not run) so that a
  model that cannot train on the data fails here, naming the config fields.

  Args:
    config: a run config (`wd_jax.engine.config.base_config` schema).
    model: None (build ``config.model.name``), your own ``flax.nnx.Module`` (trained from its
      current parameters), or a callable ``nnx.Rngs -> nnx.Module`` (initialised from
      ``config.seed``, so seeds of a sweep differ).
    data: None (load ``config.dataset.name``), a `wd_jax.engine.data.Dataset` (e.g. from
      `wd_jax.engine.data.from_arrays`), or a `BatchStream` of your own batches.
    optimizer: None (the recipe ``config.optimizer.name``), or your own recipe: a callable
      taking ``learning_rate``, ``weight_decay``, ``mask`` and ``config.optimizer.kwargs`` as
      keywords (with ``coupling`` ``"schedule"``/``"corrected"`` there, also
      ``peak_learning_rate``) and returning an ``optax.GradientTransformation``.

  Returns:
    The `Experiment`: the dataset, the model's train/eval graph definitions, the optimizer,
    the lr and λ schedules and the initial `TrainState`.

  Raises:
    ValueError: a bad config value (naming the field), a batch larger than the training set,
      or a model that cannot train on the data.

  Example:
    >>> from wd_jax.engine import config, data, train
    >>> cfg = config.override(config.base_config(), {"model.name": "mlp", "batch_size": 32})
    >>> exp = train.build(cfg, data=data.digits())  # sklearn's 8×8 digits
    >>> exp.dataset.input_shape, int(exp.init_state.step), sorted(exp.init_state.params)
    ((8, 8, 1), 0, ['head', 'hidden'])

  References:
    Flax NNX (``nnx.split`` / ``nnx.merge``: the module as a graph definition and a state
    pytree); ``ml_collections.ConfigDict``, as in the Flax examples.
  """
  config_lib.validate(
    config,
    model=model is None,
    dataset=data is None,
    optimizer=optimizer is None,
    recipe=optimizer,
  )
  dataset, stream = _load_data(config, data)
  module = _make_model(config, dataset, config.seed, model)
  si_fn = getattr(module, "scale_invariant_mask", None)
  si_mask = si_fn() if callable(si_fn) else None
  train_gd, eval_gd, params_state, rest_state = models_lib.split_model(module)
  # TrainState holds plain dicts: nnx.State trees cost ~100 µs of Python per jitted call to
  # flatten and rebuild (measured by bench/engine.py); the step rebuilds them inside the trace.
  params, rest = nnx.to_pure_dict(params_state), nnx.to_pure_dict(rest_state)
  opt = config_lib.build_optimizer(config, recipe=optimizer)
  state = TrainState(
    step=jnp.zeros([], jnp.int32),
    params=params,
    rest=rest,
    opt_state=_init_optimizer(opt, params),
    key=jax.random.PRNGKey(config.seed + 1),
  )
  if si_mask is None:
    si = [False] * len(jax.tree.leaves(params))
  else:
    si = [m > 0 for m in leaf_multipliers(params, si_mask, name="scale_invariant_mask")]
  exp = Experiment(
    config,
    dataset,
    train_gd,
    eval_gd,
    opt,
    config_lib.learning_rate_schedule(config),
    config_lib.weight_decay_schedule(config),
    si,
    state,
    jax.tree.structure(params_state),
    jax.tree.structure(rest_state),
    stream,
    model,
  )
  if stream is None:
    _dry_run(exp)
  return exp


def _init_optimizer(opt: optax.GradientTransformation, params: Any) -> Any:
  """``opt.init(params)``; a mask rule that matches no parameter is named as a config field."""
  try:
    return opt.init(params)
  except ValueError as e:
    text = str(e)
    if not text.startswith("regex_mask rule"):
      raise
    field = "set config.optimizer.allow_unused_mask_rules=True"
    raise ValueError(
      "config.optimizer.mask_rules: " + text.replace("pass allow_unused_rules=True", field)
    ) from e


def _intermediate_bytes(jaxpr: Any) -> int:
  """The bytes of every value a jaxpr computes, sub-jaxprs included: an upper bound of the
  memory a step needs beyond its inputs (as if nothing were freed or fused)."""
  total = 0
  for eqn in jaxpr.eqns:
    total += sum(nbytes(jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype)) for v in eqn.outvars)
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        inner = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr holds its Jaxpr
        if hasattr(inner, "eqns"):
          total += _intermediate_bytes(inner)
  return total


def _dry_run(exp: Experiment) -> None:
  """Traces one training step without running it (`jax.make_jaxpr`), so a model that cannot
  train on the data, or one whose step needs more memory than there is, fails here, before
  any file is written, not inside the first jitted step."""
  config, ds = exp.config, exp.dataset
  if config.batch_size > ds.num_train:
    raise ValueError(
      f"config.batch_size={config.batch_size} is larger than the {ds.num_train} training "
      f"examples of {ds.name!r}."
    )
  sampler = data_lib.make_batch_fn(ds, config.batch_size)
  what = (
    f"config.model.name={config.model.name!r}"
    if exp.model_source is None
    else _describe_model(config, exp.model_source)
  )
  try:
    traced = jax.make_jaxpr(make_train_step(exp))(exp.init_state, sampler)
  except Exception as e:  # any error of the trace means these pieces do not fit together
    reason = " ".join(str(e).split())[:300] or type(e).__name__
    raise ValueError(
      f"{what} cannot train on config.dataset.name={ds.name!r} (task {ds.task}, one input of "
      f"shape {ds.input_shape}): {reason}"
    ) from e
  needed = nbytes(exp.init_state) + _intermediate_bytes(traced.jaxpr)
  of = f"its state and one training step of batch {config.batch_size}, every value counted"
  _check_fits(needed, _describe_model(config, exp.model_source), of)


def make_train_step(
  exp: Experiment,
  *,
  with_diagnostics: bool = False,
  axis_name: str | None = None,
  graphdef: Any = None,
  batch_sharding: Any = None,
) -> Callable[[TrainState, Any], tuple[TrainState, dict[str, jax.Array]]]:
  """The pure step ``(state, batches) -> (state, metrics)``.

  `batches` is a `data.BatchSampler` (global batch size) that draws the step's batch on the
  device from ``fold_in(key, step)``, or one ``(x, y)`` global batch from a `BatchStream`. It
  is an argument, not a closure, so the data is not baked into the compiled program. Every
  strategy sees the same global batch, so data parallel runs compute the single-device step:

  - `axis_name` (``jax.pmap``): each device keeps its slice of the global batch;
    gradients, metrics and BatchNorm statistics are averaged over the axis (pass a
    `graphdef` whose BatchNorm layers carry the same ``axis_name``, see `wd_jax.engine.parallel`).
  - `batch_sharding` (``jax.jit`` over a mesh): the batch is constrained to it and XLA
    partitions the step.

  With diagnostics the metrics add `diagnostics.step_diagnostics` and, for every
  scale-invariant leaf, its norm ``param_norm/<path>`` and ``grad_norm_unit/<path>`` (the
  gradient at unit weight norm); nothing in the step depends on the learning rate's value, so
  one compiled step serves every configuration of a sweep.
  """
  config, task = exp.config, exp.dataset.task
  per_leaf = config.per_leaf_diagnostics
  kwargs = dict(config.optimizer.kwargs)
  b2, eps = kwargs.get("b2", 0.999), kwargs.get("eps", 1e-8)
  decoupled_injected = _decoupled_and_injected(exp)
  si = exp.scale_invariant
  train_graphdef = exp.train_graphdef if graphdef is None else graphdef

  def step_fn(state: TrainState, batches: Any):
    if isinstance(batches, data_lib.BatchSampler):
      x, y = batches(jax.random.fold_in(state.key, state.step))
    else:
      x, y = batches
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
        diagnostics.step_diagnostics(
          state.params, params, grads, opt_state, per_leaf=per_leaf, b2=b2, eps=eps
        )
      )
      if decoupled_injected:  # the loss-only step: same state, λ = 0 at this step
        free = config_lib.set_hyperparams(state.opt_state, weight_decay=0.0)
        loss_only, _ = exp.optimizer.update(grads, free, state.params)
        metrics.update(diagnostics.step_deviation(updates, loss_only))
      paths = param_paths(params)
      for p, w, g, is_si in zip(paths, jax.tree.leaves(params), jax.tree.leaves(grads), si):
        if is_si:  # ‖g̃‖ = ‖g‖·‖w‖ is the gradient at unit norm, for SGD's equilibrium prediction
          wn = jnp.sqrt(jnp.sum(w * w))
          metrics[f"param_norm/{p}"] = wn
          metrics[f"grad_norm_unit/{p}"] = jnp.sqrt(jnp.sum(g * g)) * wn
    new_state = TrainState(state.step + 1, params, new_rest, opt_state, state.key)
    return new_state, metrics

  return step_fn


def _decoupled_and_injected(exp: Experiment) -> bool:
  """Whether the step's loss-only update can be had by setting the injected λ to 0: the decay
  is decoupled (it has no memory, unlike coupled L2's moments) and λ is injected (a sweep)."""
  from wd_jax.decoupled import DecoupledWeightDecayState
  from wd_jax.moments import StableWeightDecayState
  from wd_jax.transforms import find_states

  state = jax.eval_shape(exp.optimizer.init, exp.init_state.params)  # shapes only
  hyper = getattr(state, "hyperparams", None)
  memoryless = (DecoupledWeightDecayState, StableWeightDecayState)  # λ enters no moment
  return (
    isinstance(hyper, dict)
    and "weight_decay" in hyper
    and any(find_states(state, kind) for kind in memoryless)
  )


def make_eval_step(exp: Experiment):
  """The pure ``(params, rest, x, y, weight) -> metric sums`` of one padded eval batch."""
  task = exp.dataset.task

  def eval_fn(params, rest, x, y, w):
    logits, _ = exp.apply(exp.eval_graphdef, params, rest, x)
    _, metrics = loss_and_metrics(task, logits, y, w)
    n = jnp.sum(w)
    return {k: v * n for k, v in metrics.items()} | {"count": n}

  return eval_fn


def make_item_step(exp: Experiment):
  """The pure ``(params, rest, x, y) -> per-example metrics`` of one eval batch (`per_example`)."""
  task = exp.dataset.task

  def item_fn(params, rest, x, y):
    logits, _ = exp.apply(exp.eval_graphdef, params, rest, x)
    return per_example(task, logits, y)

  return item_fn


def batch_source(exp: Experiment, batch_size: int, start: int, place: Callable[[Any], Any]):
  """What the step takes as its batch argument at each step, from `start` on."""
  if exp.stream is not None:
    return data_lib.StreamSource(exp.stream.batches, start, place)
  return data_lib.SamplerSource(place(data_lib.make_batch_fn(exp.dataset, batch_size)))
