"""Which parameters are decayed, and by how much.

A mask is `None` (decay every leaf), a pytree of bools or non-negative multipliers
shaped like the parameters, or a callable `params -> such a pytree`. Masks are
matched to parameters by *path* (``"encoder/layers/0/kernel"``), not by pytree
type, so a mask built from ``nnx.state(model, nnx.Param)`` (whose leaves sit under
``nnx.Param`` nodes) applies unchanged to the plain arrays that ``nnx.Optimizer``
hands to the transform, and to Linen dicts and plain pytrees alike.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

Mask = Any  # None | pytree of bool/float | Callable[[params], pytree]


def _key_name(key: Any) -> str:
  if isinstance(key, jax.tree_util.DictKey):
    return str(key.key)
  if isinstance(key, jax.tree_util.GetAttrKey):
    return key.name
  if isinstance(key, jax.tree_util.SequenceKey):
    return str(key.idx)
  if isinstance(key, jax.tree_util.FlattenedIndexKey):
    return str(key.key)
  return str(key)


def path_to_str(path: Sequence[Any]) -> str:
  """``(DictKey('l1'), DictKey('kernel'), GetAttrKey('value'))`` -> ``"l1/kernel"``.

  The trailing ``value`` attribute of an NNX ``Variable`` is dropped so that a
  ``State`` of ``nnx.Param`` nodes and the bare arrays inside it share paths.
  """
  names = [_key_name(k) for k in path]
  if path and isinstance(path[-1], jax.tree_util.GetAttrKey) and names[-1] == "value":
    names = names[:-1]
  return "/".join(names)


def param_paths(params: Any) -> list[str]:
  """The path of every array leaf of `params`, in `jax.tree.leaves` order."""
  return [path_to_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def _is_mask_leaf(x: Any) -> bool:
  return isinstance(x, (bool, int, float, np.bool_, np.number))


def _as_multiplier(path: str, value: Any) -> float:
  try:
    arr = np.asarray(value)
  except Exception:
    arr = None
  if arr is None or arr.dtype == object or arr.size != 1:
    raise ValueError(
      f"mask entry at {path!r} must be a concrete bool or non-negative number, got {value!r}."
    )
  x = float(arr.reshape(()))
  if not math.isfinite(x) or x < 0:
    raise ValueError(f"mask entry at {path!r} must be a finite multiplier >= 0, got {value!r}.")
  return x


def leaf_multipliers(params: Any, mask: Mask, *, name: str = "mask") -> list[float]:
  """One decay multiplier per leaf of `params` (1.0 decayed, 0.0 untouched).

  Raises:
    ValueError: the mask names paths the parameters lack, or misses some of theirs.
  """
  paths = param_paths(params)
  if mask is None:
    return [1.0] * len(paths)
  if callable(mask):
    mask = mask(params)
  flat = jax.tree_util.tree_flatten_with_path(mask, is_leaf=_is_mask_leaf)[0]
  by_path = {path_to_str(p): v for p, v in flat}
  missing = [p for p in paths if p not in by_path]
  extra = sorted(set(by_path) - set(paths))
  if missing or extra:
    raise ValueError(
      f"{name} does not match the parameters: parameter paths without a mask entry "
      f"{missing[:5]}{' ...' if len(missing) > 5 else ''}, mask entries without a parameter "
      f"{extra[:5]}{' ...' if len(extra) > 5 else ''}. Build the mask from the same tree "
      "as the parameters, or pass a callable of params (e.g. wd_jax.default_mask)."
    )
  return [_as_multiplier(p, by_path[p]) for p in paths]


def default_mask(params: Any) -> Any:
  """Decay only leaves with ``ndim >= 2`` (kernels and embeddings; not biases or norm scales)."""
  return jax.tree.map(lambda x: np.ndim(x) >= 2, params)


def regex_mask(rules: Mapping[str, float] | Sequence[tuple[str, float]], *, default: Any = 1.0):
  """Per-layer weight-decay multipliers from regular expressions on parameter paths.

  The *first* rule whose pattern `re.fullmatch`es the path (``"head/kernel"``) wins;
  paths that no rule matches get `default`, which may itself be a mask callable such
  as `default_mask`. This is big_vision's ``wd_mults`` idea.

  Example:
    >>> mask = regex_mask({".*bias": 0.0, "head/.*": 0.1})

  Args:
    rules: ``{pattern: multiplier}`` or a list of ``(pattern, multiplier)`` pairs.
    default: multiplier for unmatched paths, or a callable mask giving it per leaf.

  Returns:
    A callable ``params -> pytree of multipliers`` for any transform's ``mask=``.
  """
  items = list(rules.items()) if isinstance(rules, Mapping) else list(rules)
  compiled = []
  for pattern, mult in items:
    try:
      compiled.append((re.compile(pattern), _as_multiplier(f"rules[{pattern!r}]", mult)))
    except re.error as e:
      raise ValueError(f"rules has an invalid regular expression {pattern!r}: {e}") from e

  def mask_fn(params: Any) -> Any:
    if callable(default):
      base = dict(zip(param_paths(params), jax.tree.leaves(default(params), is_leaf=_is_mask_leaf)))
    else:
      base = None

    def one(path, leaf):
      del leaf
      p = path_to_str(path)
      for regex, mult in compiled:
        if regex.fullmatch(p):
          return mult
      return float(base[p]) if base is not None else default

    return jax.tree_util.tree_map_with_path(one, params)

  return mask_fn


@dataclasses.dataclass(frozen=True)
class MaskRow:
  path: str
  shape: tuple[int, ...]
  size: int
  multiplier: float

  @property
  def decayed(self) -> bool:
    return self.multiplier != 0.0


@dataclasses.dataclass(frozen=True)
class MaskTable:
  """What a mask does to each parameter; `str()` gives a readable table."""

  rows: tuple[MaskRow, ...]

  @property
  def total_size(self) -> int:
    return sum(r.size for r in self.rows)

  @property
  def decayed_size(self) -> int:
    return sum(r.size for r in self.rows if r.decayed)

  def __str__(self) -> str:
    total = max(self.total_size, 1)
    header = ("parameter", "shape", "decayed", "multiplier", "share")
    body = [
      (
        r.path,
        str(r.shape),
        "yes" if r.decayed else "no",
        f"{r.multiplier:g}",
        f"{100 * r.size / total:.1f}%",
      )
      for r in self.rows
    ]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    fmt = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
    lines = [fmt(header), fmt(tuple("-" * w for w in widths)), *map(fmt, body)]
    lines.append(
      f"decayed: {self.decayed_size:,} of {self.total_size:,} parameters "
      f"({100 * self.decayed_size / total:.1f}%)"
    )
    return "\n".join(lines)


def describe_mask(params: Any, mask: Mask = None) -> MaskTable:
  """A table of path, shape, decayed or not, multiplier and share of all parameters.

  Print it before training to see what weight decay will touch:

    >>> print(describe_mask(nnx.state(model, nnx.Param), wd_jax.default_mask))
  """
  mults = leaf_multipliers(params, mask)
  leaves = jax.tree.leaves(params)
  rows = tuple(
    MaskRow(p, tuple(np.shape(x)), int(np.size(x)), m)
    for p, x, m in zip(param_paths(params), leaves, mults)
  )
  return MaskTable(rows)


def map_decay(fn: Callable[..., Any], multipliers: list[float], updates: Any, *others: Any) -> Any:
  """``fn(multiplier, update_leaf, *other_leaves)`` on decayed leaves; others left bit for bit."""
  leaves, treedef = jax.tree.flatten(updates)
  other_leaves = [treedef.flatten_up_to(o) for o in others]
  out = [
    u if m == 0.0 else fn(m, u, *(o[i] for o in other_leaves))
    for i, (m, u) in enumerate(zip(multipliers, leaves))
  ]
  return treedef.unflatten(out)
