"""Run configuration: the schema every run and sweep shares, checked before any file is written."""

from __future__ import annotations

import functools
import re
from typing import Any

import jax.numpy as jnp
import ml_collections
import optax
from ml_collections.config_dict import placeholder

from wd_jax import validation
from wd_jax.masks import default_mask, regex_mask
from wd_jax.optimizers import OPTIMIZERS, get_optimizer
from wd_jax.schedules import early_weight_decay, late_weight_decay

DATASETS = ("mnist1d", "digits", "linear_regression", "teacher_student", "cifar10", "char_corpus")
MODELS = ("mlp", "cnn1d", "resnet", "transformer")
LR_SCHEDULES = ("constant", "cosine", "warmup_cosine", "drop")
WD_SCHEDULES = ("constant", "early", "late")
MASKS = ("all", "default", "rules")
PARALLEL = ("none", "pmap", "sharded")


# Fields added to the config after runs and pre-registrations were recorded without them, with
# the value their absence means (the engine reads each with this default): a record without the
# field and a config holding this value describe the same run.
ABSENT_MEANS = {
  "optimizer.allow_unused_mask_rules": False,
  "optimizer.lr_drop_fraction": 0.5,
  "optimizer.lr_drop_factor": 0.1,
}


def _added_field(optimizer: Any, name: str) -> Any:
  """An `ABSENT_MEANS` field of config.optimizer: its value, or what its absence means."""
  return optimizer.get(name, ABSENT_MEANS[f"optimizer.{name}"])


def base_config() -> ml_collections.ConfigDict:
  """Defaults for every field; experiment configs override a few of them."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.dataset = ml_collections.ConfigDict({"name": "mnist1d", "kwargs": {}})
  # A fixed, seeded share of the training data held out for validation (0: none). With one,
  # the periodic evaluations read it and the test split is read once, at the end.
  c.dataset.validation_fraction = 0.0
  c.dataset.validation_seed = 0
  c.model = ml_collections.ConfigDict({"name": "cnn1d", "kwargs": {}})
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 1e-3  # peak of the lr schedule
  c.optimizer.weight_decay = 1e-4  # λ; what multiplies it depends on name/coupling (README table)
  c.optimizer.lr_schedule = "warmup_cosine"
  c.optimizer.warmup_fraction = 0.05  # of all steps
  # lr_schedule "drop": the peak lr until lr_drop_fraction of the steps, then × lr_drop_factor
  # (the step decay of the vision literature; no warmup).
  c.optimizer.lr_drop_fraction = 0.5
  c.optimizer.lr_drop_factor = 0.1
  c.optimizer.wd_schedule = "constant"
  c.optimizer.wd_switch_fraction = 0.5  # early: on before it; late: on from it
  c.optimizer.mask = "default"  # all | default (ndim >= 2) | rules
  c.optimizer.mask_rules = ()  # ((regex, multiplier), ...), first match wins, else default mask
  c.optimizer.allow_unused_mask_rules = False  # True: a rule that matches no parameter is kept
  c.optimizer.kwargs = (
    ml_collections.ConfigDict()
  )  # b1, b2, eps, coupling, momentum, track_moments ...
  c.steps = 3000
  c.batch_size = 128
  c.eval_batch_size = 1000
  # Cadences in steps; None (the default) scales with the run: a record every steps/20 (the
  # loop's only host sync), diagnostics with every record, evaluation and a checkpoint every
  # steps/5 (and always at the last step).
  c.log_every = placeholder(int)  # metrics to JSONL/TensorBoard
  c.diagnostics_every = placeholder(int)  # weight/grad/update norms, angles, L2 share (0 = off)
  c.per_leaf_diagnostics = True
  c.eval_every = placeholder(int)
  c.checkpoint_every = placeholder(int)
  c.max_checkpoints = 2
  c.parallel = (
    "none"  # none | pmap | sharded (data parallel over every device; see wd_jax.engine.parallel)
  )
  return c


def override(
  config: ml_collections.ConfigDict, values: dict[str, Any]
) -> ml_collections.ConfigDict:
  """A copy of `config` with dotted fields set, e.g. ``{"optimizer.weight_decay": 0.1}`` (new
  keys, such as an optimizer keyword argument, may be added)."""
  out = config.copy_and_resolve_references()
  for path, value in values.items():
    *parents, leaf = path.split(".")
    node = out
    for p in parents:
      node = node[p]
    with node.unlocked():
      node[leaf] = value
  return out


def _positive_int(name: str, value: Any, *, allow_zero: bool = False) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
    bound = ">= 0" if allow_zero else ">= 1"
    raise ValueError(f"config.{name} must be an int {bound}, got {value!r}.")


def _check_known_fields(config: Any, schema: Any, prefix: str = "config") -> None:
  """Refuses a field the schema does not have (a typo on the command line), naming it and the
  closest known field; ``*.kwargs`` groups are free-form (a model's or optimizer's arguments)."""

  for key in config.keys():
    where = f"{prefix}.{key}"
    if key not in schema:
      hint = validation.did_you_mean(key, schema.keys(), prefix)
      raise ValueError(f"{where} is not a config field{hint}")
    if key == "kwargs":
      continue
    sub, known = config[key], schema[key]
    if isinstance(sub, ml_collections.ConfigDict) and isinstance(known, ml_collections.ConfigDict):
      _check_known_fields(sub, known, where)


# Seeds are folded into 32-bit PRNG keys (``PRNGKey(seed + 1)``): larger ones do not fit.
MAX_SEED = 2**32 - 2


def _check_names(config: ml_collections.ConfigDict, *, model: bool, dataset: bool, opt: bool):
  if dataset:
    validation.check_choice("config.dataset.name", config.dataset.name, DATASETS)
  if model:
    validation.check_choice("config.model.name", config.model.name, MODELS)
  if opt:
    validation.check_choice("config.optimizer.name", config.optimizer.name, tuple(OPTIMIZERS))
  o = config.optimizer
  validation.check_choice("config.optimizer.lr_schedule", o.lr_schedule, LR_SCHEDULES)
  validation.check_choice("config.optimizer.wd_schedule", o.wd_schedule, WD_SCHEDULES)
  validation.check_choice("config.optimizer.mask", o.mask, MASKS)
  validation.check_choice("config.parallel", config.parallel, PARALLEL)


def _check_counts(config: ml_collections.ConfigDict) -> None:
  fraction = config.dataset.get("validation_fraction", 0.0)
  if fraction:
    validation.check_number(
      "config.dataset.validation_fraction",
      fraction,
      lower=0.0,
      upper=1.0,
      lower_inclusive=False,
      upper_inclusive=False,
      allow_schedule=False,
    )
  seed = config.dataset.get("validation_seed", 0)
  if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
    raise ValueError(f"config.dataset.validation_seed must be an int >= 0, got {seed!r}.")
  for name in ("steps", "batch_size", "eval_batch_size", "max_checkpoints"):
    _positive_int(name, config[name])
  for name in ("log_every", "eval_every", "checkpoint_every", "diagnostics_every"):
    if config[name] is not None:  # None: scaled with the run (`cadence`)
      _positive_int(name, config[name], allow_zero=name == "diagnostics_every")
  _positive_int("seed", config.seed, allow_zero=True)
  if config.seed > MAX_SEED:
    raise ValueError(f"config.seed must be an int <= {MAX_SEED} (2**32 - 2), got {config.seed}.")
  for name, upper_inclusive in (
    ("warmup_fraction", False),
    ("wd_switch_fraction", True),
    ("lr_drop_fraction", True),
    ("lr_drop_factor", True),
  ):
    validation.check_number(
      f"config.optimizer.{name}",
      config.optimizer.get(name, ABSENT_MEANS.get(f"optimizer.{name}", 0.0)),
      lower=0.0,
      upper=1.0,
      upper_inclusive=upper_inclusive,
      allow_schedule=False,
    )


def _check_mask_rules(o: ml_collections.ConfigDict) -> None:
  """Every rule is a (regex, multiplier ≥ 0) pair whose regex compiles, and rules are only given
  with ``mask="rules"`` (any other mask would ignore them)."""
  rules = o.mask_rules
  if isinstance(rules, (str, bytes)) or not isinstance(rules, (tuple, list)):
    raise ValueError(
      f"config.optimizer.mask_rules must be a list of (regex, multiplier), got {rules!r}."
    )
  for i, rule in enumerate(rules):
    if isinstance(rule, (str, bytes)) or not isinstance(rule, (tuple, list)) or len(rule) != 2:
      raise ValueError(
        f"config.optimizer.mask_rules[{i}] must be a (regex, multiplier) pair, got {rule!r}."
      )
    try:
      re.compile(rule[0])
    except (re.error, TypeError) as e:
      raise ValueError(
        f"config.optimizer.mask_rules[{i}] has an invalid regular expression {rule[0]!r}: {e}"
      ) from e
    validation.check_number(
      f"config.optimizer.mask_rules[{i}] ({rule[0]!r}) multiplier",
      rule[1],
      lower=0.0,
      allow_schedule=False,
    )
  if rules and o.mask != "rules":
    raise ValueError(
      f"config.optimizer.mask_rules is set but config.optimizer.mask={o.mask!r} ignores it: set "
      "config.optimizer.mask='rules' (or remove the rules)."
    )
  if not isinstance(_added_field(o, "allow_unused_mask_rules"), bool):
    raise ValueError(
      "config.optimizer.allow_unused_mask_rules must be True or False, got "
      f"{o.allow_unused_mask_rules!r}."
    )


def validate(
  config: ml_collections.ConfigDict,
  *,
  model: bool = True,
  dataset: bool = True,
  optimizer: bool = True,
  recipe: Any = None,
) -> None:
  """Raises `ValueError` naming the field and the value; touches no file.

  `model`, `dataset`, `optimizer`: whether that part comes from the config by name (False when
  the user brings their own, whose name is then not checked). `recipe` is the user's own
  optimizer recipe, if any.
  """
  _check_known_fields(config, base_config())
  _check_names(config, model=model, dataset=dataset, opt=optimizer)
  _check_counts(config)
  _check_mask_rules(config.optimizer)
  build_optimizer(config, recipe=recipe)  # its constructor checks every hyperparameter


def cadence(config: ml_collections.ConfigDict) -> dict[str, int]:
  """log_every, diagnostics_every, eval_every and checkpoint_every of `config` in steps, the
  unset (None) ones scaled with the run: steps/20, the log cadence, steps/5, steps/5."""
  steps = config.steps
  log = config.log_every or max(1, round(steps / 20))
  diag = config.diagnostics_every
  out = {
    "log_every": log,
    "diagnostics_every": log if diag is None else diag,
    "eval_every": config.eval_every or max(1, round(steps / 5)),
    "checkpoint_every": config.checkpoint_every or max(1, round(steps / 5)),
  }
  return out


def learning_rate_schedule(config: ml_collections.ConfigDict, peak: Any = None) -> optax.Schedule:
  """The lr schedule of `config`, peaking at `peak` (default `config.optimizer.learning_rate`).

  Built as ``peak × shape(t)`` with a unit-peak shape, so that `peak` may be a traced value
  (optax's warmup-cosine branches on its peak in Python).
  """
  o, steps = config.optimizer, config.steps
  peak = o.learning_rate if peak is None else peak
  validation.check_peak_learning_rate(peak, "config.optimizer.learning_rate")
  warmup = int(o.warmup_fraction * steps)
  if o.lr_schedule == "constant":
    shape = optax.constant_schedule(1.0)
  elif o.lr_schedule == "drop":
    drop = round(_added_field(o, "lr_drop_fraction") * steps)
    shape = optax.piecewise_constant_schedule(1.0, {drop: _added_field(o, "lr_drop_factor")})
  elif o.lr_schedule == "cosine" or not warmup:
    shape = optax.cosine_decay_schedule(1.0, steps)
  else:
    shape = optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup, steps)
  return lambda count: peak * shape(count)


def weight_decay_schedule(config: ml_collections.ConfigDict, value: Any = None):
  """λ (or its early/late schedule) of `config`, with λ = `value` if given."""
  o = config.optimizer
  lam = o.weight_decay if value is None else value
  validation.check_weight_decay(lam, "config.optimizer.weight_decay")
  switch = round(o.wd_switch_fraction * config.steps)
  if o.wd_schedule == "early":
    return early_weight_decay(lam, switch)
  if o.wd_schedule == "late":
    return late_weight_decay(lam, switch)
  return lam


def mask_from_config(config: ml_collections.ConfigDict):
  o = config.optimizer
  if o.mask == "all":
    return None
  if o.mask == "default":
    return default_mask
  return regex_mask(
    [tuple(r) for r in o.mask_rules],
    default=default_mask,
    allow_unused_rules=bool(_added_field(o, "allow_unused_mask_rules")),
  )


def _recipe_kwargs(config: ml_collections.ConfigDict, peak: Any) -> dict[str, Any]:
  """The optimizer's keywords: ``config.optimizer.kwargs``, plus ``peak_learning_rate`` when
  the coupling needs the peak (``"schedule"``/``"corrected"``), for a recipe by name and for the
  user's own recipe alike (which must then accept it)."""
  kwargs = dict(config.optimizer.kwargs)
  if kwargs.get("coupling", "lr") in ("schedule", "corrected"):
    # The schedule is peak × shape(t): its peak is the config's lr (or the injected one).
    kwargs.setdefault("peak_learning_rate", peak)
  return kwargs


def _make(config, recipe, learning_rate, weight_decay, mask, kwargs):
  make = recipe or functools.partial(get_optimizer, config.optimizer.name)
  try:
    opt = make(learning_rate=learning_rate, weight_decay=weight_decay, mask=mask, **kwargs)
  except TypeError as e:  # an argument the optimizer does not take: a key of optimizer.kwargs
    what = "your optimizer recipe" if recipe else f"the optimizer {config.optimizer.name!r}"
    raise ValueError(
      f"config.optimizer.kwargs {dict(config.optimizer.kwargs)} do not fit {what}: {e}"
    ) from e
  if recipe is not None and not isinstance(opt, optax.GradientTransformation):
    raise ValueError(
      f"the optimizer recipe must return an optax.GradientTransformation, got {type(opt)}."
    )
  return opt


def build_optimizer(
  config: ml_collections.ConfigDict, recipe: Any = None
) -> optax.GradientTransformation:
  """The optimizer a config describes; its constructor validates every hyperparameter.

  `recipe`: the user's own optimizer recipe (called with ``learning_rate``, ``weight_decay``,
  ``mask`` and ``config.optimizer.kwargs`` as keywords) instead of ``config.optimizer.name``.
  """
  o = config.optimizer
  kwargs = _recipe_kwargs(config, o.learning_rate)
  return _make(
    config,
    recipe,
    learning_rate_schedule(config),
    weight_decay_schedule(config),
    mask_from_config(config),
    kwargs,
  )


def build_injectable_optimizer(
  config: ml_collections.ConfigDict, recipe: Any = None
) -> optax.GradientTransformation:
  """`build_optimizer` with the peak lr and λ held in `optax.inject_hyperparams` state.

  The schedules are rebuilt from the injected values at every step, so a stack of K
  optimizer states with different ``hyperparams["learning_rate"|"weight_decay"]`` runs K
  configurations as one vmapped program (`wd_jax.engine.sweep`). Set the values with
  `set_hyperparams`. With the config's own values it is the same map as `build_optimizer`.
  """
  o = config.optimizer
  mask = mask_from_config(config)

  def factory(learning_rate, weight_decay):
    return _make(
      config,
      recipe,
      learning_rate_schedule(config, learning_rate),
      weight_decay_schedule(config, weight_decay),
      mask,
      _recipe_kwargs(config, learning_rate),
    )

  return optax.inject_hyperparams(factory)(
    learning_rate=o.learning_rate, weight_decay=o.weight_decay
  )


def set_hyperparams(opt_state: Any, **values: Any) -> Any:
  """A copy of an `inject_hyperparams` state with some hyperparameters replaced (`optax.tree.set`
  on the top-level ``hyperparams``, each value cast to the dtype it replaces)."""
  hp = opt_state.hyperparams
  for k in values:
    if k not in hp:
      raise ValueError(f"hyperparameter must be one of {sorted(hp)}, got {k!r}.")
  top = lambda path, _: len(path) == 2 and getattr(path[0], "name", None) == "hyperparams"
  cast = {k: jnp.asarray(v, dtype=hp[k].dtype) for k, v in values.items()}
  return optax.tree.set(opt_state, top, **cast)
