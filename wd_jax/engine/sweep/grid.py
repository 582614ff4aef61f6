"""A sweep's configurations: grid or list -> validated run configs, grouped by compiled program."""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from wd_jax.engine import config as config_lib

# Short grid names for the two injected hyperparameters.
ALIASES = {"learning_rate": "optimizer.learning_rate", "weight_decay": "optimizer.weight_decay"}
# Fields that live in the TrainState, not in the compiled program: configurations that differ
# only in these share one group (one Experiment, one compiled step).
BATCHED_FIELDS = ("optimizer.learning_rate", "optimizer.weight_decay", "seed")

_COLUMN_OF_PATH = {
  "optimizer.name": "optimizer",
  "optimizer.learning_rate": "learning_rate",
  "optimizer.weight_decay": "weight_decay",
  "seed": "seed",
}
_ABBREVIATIONS = {
  "optimizer.learning_rate": "lr",
  "optimizer.weight_decay": "wd",
  "optimizer.name": "opt",
  "seed": "seed",
}


@dataclasses.dataclass(frozen=True)
class UserParts:
  """The user's own model, data and optimizer recipe for every run of a sweep (None: by name)."""

  model: Any = None
  data: Any = None
  optimizer: Any = None

  @property
  def any(self) -> bool:
    return any(x is not None for x in (self.model, self.data, self.optimizer))

  @property
  def checks(self) -> dict[str, Any]:
    """`wd_jax.engine.config.validate`'s keywords: check by name only what comes by name."""
    return {
      "model": self.model is None,
      "dataset": self.data is None,
      "optimizer": self.optimizer is None,
      "recipe": self.optimizer,
    }


BY_NAME = UserParts()  # every part from the config


@dataclasses.dataclass
class Run:
  """One configuration of a sweep.

  Attributes:
    index: position in the sweep (0-based; the order of the grid's Cartesian product, the last
      field varying fastest, or of the explicit list).
    name: ``<index>-<short name>``, e.g. ``"03-lr=0.003_wd=0.01"``; its directory under ``runs/``.
    overrides: grid field (as the user wrote it) -> value.
    config: the full run config.
  """

  index: int
  name: str
  overrides: dict[str, Any]
  config: ml_collections.ConfigDict


def _field_path(config: ml_collections.ConfigDict, field: Any) -> str:
  """The dotted config path of a grid field; `ValueError` naming it if the config lacks it."""
  if not isinstance(field, str) or not field:
    raise ValueError(f"sweep grid field names must be non-empty strings, got {field!r}.")
  path = ALIASES.get(field, field)
  parts = path.split(".")
  node: Any = config
  for i, part in enumerate(parts):
    if isinstance(node, ml_collections.ConfigDict) and part in node:
      node = node[part]
      continue
    # A new keyword argument (optimizer.kwargs.b1) is checked by the constructor it is passed to.
    if i == len(parts) - 1 and i > 0 and parts[i - 1] == "kwargs":
      return path
    raise ValueError(
      f"sweep grid field {field!r}: the config has no field {path!r}. Use learning_rate, "
      "weight_decay, seed or a dotted config path (e.g. optimizer.kwargs.b1)."
    )
  if isinstance(node, ml_collections.ConfigDict):
    raise ValueError(f"sweep grid field {field!r}: {path!r} is a group of fields, not a field.")
  return path


def _check_value(field: str, path: str, value: Any) -> Any:
  if path in ("optimizer.learning_rate", "optimizer.weight_decay"):
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or value < 0:
      raise ValueError(
        f"sweep grid field {field!r}: values must be finite numbers >= 0, got {value!r}."
      )
    return float(value)
  if path == "seed":
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
      raise ValueError(f"sweep grid field {field!r}: values must be ints >= 0, got {value!r}.")
    return int(value)
  return value


def _set_field(config: ml_collections.ConfigDict, field: str, path: str, value: Any) -> None:
  *parents, leaf = path.split(".")
  node = config
  for p in parents:
    node = node[p]
  try:
    # A config from --config is locked; a grid may add new keys (e.g. optimizer.kwargs.coupling).
    with node.unlocked():
      node[leaf] = value
  except (TypeError, ValueError) as e:
    raise ValueError(
      f"sweep grid field {field!r}: {value!r} does not fit config.{path}: {e}"
    ) from e


def _format_value(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:g}"
  if isinstance(value, (tuple, list)):
    return "x".join(_format_value(v) for v in value)
  return str(value)


def _short_name(overrides: Mapping[str, Any], paths: Mapping[str, str]) -> str:
  if not overrides:
    return "base"
  parts = [
    f"{_ABBREVIATIONS.get(paths[k], paths[k].split('.')[-1])}={_format_value(v)}"
    for k, v in overrides.items()
  ]
  return re.sub(r"[^A-Za-z0-9._=+-]", "_", "_".join(parts))[:80]


def expand_grid(
  base_config: ml_collections.ConfigDict,
  grid_or_list: Mapping[str, Any] | Sequence[Any],
  user: UserParts = BY_NAME,
) -> list[Run]:
  """The sweep's configurations, each validated; nothing is built or written.

  Args:
    base_config: a run config (`wd_jax.engine.config.base_config` schema).
    grid_or_list: a dict field -> non-empty list of values (Cartesian product, in the dict's
      order, the last field varying fastest), or a non-empty list of dicts field -> value.
    user: the user's own model/data/optimizer (their config names are then not checked).

  Returns:
    One `Run` per configuration.

  Raises:
    ValueError: naming the field, for an unknown field, an empty list, a non-numeric or negative
      learning rate / weight decay, a value of the wrong type, or a config that fails
      `wd_jax.engine.config.validate`.
  """
  config_lib.validate(base_config, **user.checks)
  combos = _combinations(grid_or_list)
  paths = {f: _field_path(base_config, f) for combo in combos for f in combo}
  width = len(str(len(combos) - 1))
  runs = []
  for index, combo in enumerate(combos):
    config = base_config.copy_and_resolve_references()
    overrides = {}
    for field, value in combo.items():
      value = _check_value(field, paths[field], value)
      _set_field(config, field, paths[field], value)
      overrides[field] = value
    try:
      _check_config(config, user)
    except (TypeError, ValueError) as e:
      fields = ", ".join(repr(f) for f in overrides) or "none"
      raise ValueError(f"sweep configuration {index} (fields {fields}; {overrides}): {e}") from e
    runs.append(Run(index, f"{index:0{width}d}-{_short_name(overrides, paths)}", overrides, config))
  return runs


def _combinations(grid_or_list: Any) -> list[dict[str, Any]]:
  """The grid's Cartesian product (the last field varying fastest), or the list's dicts."""
  if isinstance(grid_or_list, Mapping):
    if not grid_or_list:
      raise ValueError("sweep grid is empty: give at least one field and its values.")
    for field, values in grid_or_list.items():
      if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"sweep grid field {field!r}: values must be a list, got {values!r}.")
      if not values:
        raise ValueError(f"sweep grid field {field!r}: the list of values is empty.")
    fields = list(grid_or_list)
    return [dict(zip(fields, vs)) for vs in itertools.product(*grid_or_list.values())]
  if isinstance(grid_or_list, Sequence) and not isinstance(grid_or_list, (str, bytes)):
    if not grid_or_list:
      raise ValueError("sweep list of configurations is empty.")
    for i, item in enumerate(grid_or_list):
      if not isinstance(item, Mapping):
        raise ValueError(f"sweep configuration {i} must be a dict field -> value, got {item!r}.")
    return [dict(item) for item in grid_or_list]
  raise ValueError(
    f"sweep grid must be a dict field -> list or a list of dicts, got {grid_or_list!r}."
  )


def _check_config(config: ml_collections.ConfigDict, user: UserParts) -> None:
  config_lib.validate(config, **user.checks)
  if config.get("parallel", "none") != "none":
    raise ValueError(
      "a sweep trains every configuration on one device: config.parallel must be 'none', "
      f"got {config.parallel!r}."
    )


def group_key(config: ml_collections.ConfigDict) -> str:
  """What a compiled program depends on: the config without `BATCHED_FIELDS` (as JSON)."""
  c = config.copy_and_resolve_references()
  for path in BATCHED_FIELDS:
    *parents, leaf = path.split(".")
    node = c
    for p in parents:
      node = node[p]
    node[leaf] = type(node[leaf])(0)
  return c.to_json_best_effort(sort_keys=True)


def group_runs(runs: Sequence[Run]) -> list[list[Run]]:
  """Runs grouped by `group_key`, groups in order of their first run."""
  groups: dict[str, list[Run]] = {}
  for run in runs:
    groups.setdefault(group_key(run.config), []).append(run)
  return list(groups.values())
