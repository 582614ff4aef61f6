"""Which parameters are decayed, and by how much.

A mask is `None` (decay every leaf), a pytree of bools or non-negative multipliers
shaped like the parameters *or a prefix of them* (``{"encoder": False, "head": True}``
covers every leaf under ``encoder`` and ``head``, as `optax.masked` accepts), or a
callable `params -> such a pytree`. Masks are matched to parameters by *path*
(``"encoder/layers/0/kernel"``), not by pytree type, so a mask built from
``nnx.state(model, nnx.Param)`` (whose leaves sit under ``nnx.Param`` nodes) applies
unchanged to the plain arrays that ``nnx.Optimizer`` hands to the transform, and to
Linen dicts and plain pytrees alike.

A mask callable may also say *why* each leaf got its multiplier: `regex_mask` names the
rule, `fan_in_mask` the fan-in, `default_mask` the ndim; `describe_mask` prints it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from wd_jax import validation

Mask = Any  # None | pytree (or prefix pytree) of bool/float | Callable[[params], pytree]


def path_names(path: Sequence[Any]) -> tuple[str, ...]:
  """The names of a key path (`jax.tree_util.keystr` of each key), without the trailing
  ``value`` of an NNX ``Variable``, so that a ``State`` of ``nnx.Param`` nodes and the bare
  arrays inside it share paths."""
  names = tuple(jax.tree_util.keystr((k,), simple=True) for k in path)
  if path and isinstance(path[-1], jax.tree_util.GetAttrKey) and names[-1] == "value":
    names = names[:-1]
  return names


def path_to_str(path: Sequence[Any]) -> str:
  """``(DictKey('l1'), DictKey('kernel'), GetAttrKey('value'))`` -> ``"l1/kernel"``."""
  return "/".join(path_names(path))


def param_paths(params: Any) -> list[str]:
  """The path of every array leaf of `params`, in `jax.tree.leaves` order."""
  return [path_to_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


# optax.inject_hyperparams calls every callable hyperparameter as a schedule of the step count.
_INJECTED = (
  "optax.inject_hyperparams calls a mask callable with the step count, as a schedule: pass "
  "static_args=('mask',) (the recipe's mask argument, e.g. 'weight_decay_mask')"
)


def check_mask(mask: Mask, name: str = "mask") -> None:
  """Raises `ValueError` for a bare bool or JAX array: what a mask callable gives when
  `optax.inject_hyperparams` calls it as a schedule (and no mask a user means)."""
  if isinstance(mask, (bool, np.bool_, jax.Array)):
    raise ValueError(
      f"{name} must be None, a pytree (or a prefix of one) of bools or multipliers >= 0, or a "
      f"callable of the params, got {mask!r}. None decays every leaf. If the mask went "
      f"through optax.inject_hyperparams: {_INJECTED}."
    )


def _refuse_step_count(params: Any, name: str) -> None:
  if isinstance(params, (jax.Array, np.integer)) and np.ndim(params) == 0:
    if np.issubdtype(params.dtype, np.integer):
      raise ValueError(f"{name} was called with a step count, not the params: {_INJECTED}.")


def _is_mask_leaf(x: Any) -> bool:
  return isinstance(x, (bool, int, float, np.bool_, np.number))


def _as_multiplier(name: str, value: Any) -> float:
  """`value` as a multiplier ≥ 0 (bools are 0/1); `ValueError` naming `name` otherwise."""
  if isinstance(value, (str, bytes)) or value is None or isinstance(value, jax.core.Tracer):
    arr = None
  else:
    try:
      arr = np.asarray(value)
    except Exception:
      arr = None
  if arr is None or arr.dtype.kind not in "biuf" or arr.size != 1:
    raise ValueError(
      f"{name} must be a bool or a number >= 0 (a weight-decay multiplier), got {value!r}."
    )
  x = float(arr.reshape(()))
  if not math.isfinite(x) or x < 0:
    raise ValueError(f"{name} must be a finite multiplier >= 0, got {value!r}.")
  return x


def _resolve(params: Any, mask: Mask, name: str) -> list[tuple[float, str]]:
  """(multiplier, what set it) per leaf of `params`, in `jax.tree.leaves` order."""
  check_mask(mask, name)
  paths = [path_names(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  if mask is None:
    return [(1.0, "no mask: every leaf")] * len(paths)
  assign = getattr(mask, "_assign", None)
  if assign is not None:  # regex_mask / fan_in_mask: multipliers and reasons in one pass
    return assign(params)
  if callable(mask):
    tree = mask(params)
    explain = getattr(mask, "explain", None)
    label = getattr(mask, "__name__", type(mask).__name__)
  else:
    tree, explain, label = mask, None, None
  flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_mask_leaf)[0]
  entries = {path_names(p): v for p, v in flat}
  used: set[tuple[str, ...]] = set()
  found, missing = [], []
  for path in paths:
    # The longest mask path that is a prefix of the parameter path: optax's prefix masks.
    for n in range(len(path), -1, -1):
      if path[:n] in entries:
        found.append(path[:n])
        used.add(path[:n])
        break
    else:
      found.append(None)
      missing.append("/".join(path))
  extra = sorted("/".join(p) for p in set(entries) - used)
  if missing or extra:
    raise ValueError(
      f"{name} does not match the parameters: parameter paths without a mask entry "
      f"{missing[:5]}{' ...' if len(missing) > 5 else ''}, mask entries without a parameter "
      f"{extra[:5]}{' ...' if len(extra) > 5 else ''}. Build the mask from the same tree "
      "as the parameters (or a prefix of it), or pass a callable of params "
      "(e.g. wd_jax.default_mask)."
    )
  out = []
  for entry in found:
    where = "/".join(entry) if entry else "<root>"
    out.append((_as_multiplier(f"{name} entry at {where!r}", entries[entry]), where))
  if explain is not None:
    return [(m, why) for (m, _), why in zip(out, explain(params))]
  if label is not None:
    return [(m, f"{label}(params)") for m, _ in out]
  return [(m, f"mask entry {where!r}") for m, where in out]


def leaf_multipliers(params: Any, mask: Mask, *, name: str = "mask") -> list[float]:
  """One decay multiplier per leaf of `params` (1.0 decayed, 0.0 untouched).

  A mask tree may be a prefix of `params`: an entry covers every leaf below it.

  Raises:
    ValueError: the mask names paths the parameters lack, misses some of theirs, or holds
      a value that is not a multiplier ≥ 0.
  """
  return [m for m, _ in _resolve(params, mask, name)]


def default_mask(params: Any) -> Any:
  """Decay only leaves with ``ndim >= 2`` (kernels and embeddings; not biases or norm scales).

  Pass the function itself as any transform's ``mask=``; it is applied to the params at
  `init` and at every `update`.

  Args:
    params: a pytree of arrays (Flax NNX state, a Linen dict or any pytree).

  Returns:
    A pytree of bools shaped like `params`: True where the leaf has ``ndim >= 2``.

  Example:
    >>> wd_jax.default_mask({"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)})
    {'bias': False, 'kernel': True}
    >>> opt = wd_jax.adamw(1e-3, weight_decay=0.1, mask=wd_jax.default_mask)

  References:
    He et al., "Bag of tricks for image classification with convolutional neural
    networks", CVPR 2019 (§3.1, "no bias decay").
  """
  _refuse_step_count(params, "default_mask")
  return jax.tree.map(lambda x: np.ndim(x) >= 2, params)


default_mask.explain = lambda params: [
  f"default_mask: ndim {np.ndim(x)} {'>=' if np.ndim(x) >= 2 else '<'} 2"
  for x in jax.tree.leaves(params)
]


class _ExplainedMask:
  """A mask function that can also say what set each leaf's multiplier (`describe_mask`)."""

  def _assign(self, params: Any) -> list[tuple[float, str]]:
    raise NotImplementedError

  def __call__(self, params: Any) -> Any:
    _refuse_step_count(params, self.__name__)
    mults = iter([m for m, _ in self._assign(params)])
    return jax.tree.map(lambda _: next(mults), params)

  def explain(self, params: Any) -> list[str]:
    """What set each leaf's multiplier, in `jax.tree.leaves` order."""
    return [why for _, why in self._assign(params)]


class RegexMask(_ExplainedMask):
  """Per-leaf multipliers from regular-expression rules on parameter paths (see `regex_mask`).

  Call it on the params for the multiplier tree; ``explain(params)`` gives, per leaf in
  `jax.tree.leaves` order, the rule (or the default) that set its multiplier.

  Attributes:
    rules: ``(pattern, compiled regex, multiplier)`` triples, in order (the first match wins).
    default: the multiplier of unmatched paths, or a mask callable giving it.
    allow_unused_rules: whether a rule that sets no multiplier is accepted.

  Example:
    >>> mask = wd_jax.regex_mask({".*bias": 0.0, "head/.*": 0.1})
    >>> params = {"body": {"kernel": jnp.ones((3, 4)), "bias": jnp.ones(4)},
    ...           "head": {"kernel": jnp.ones((4, 2))}}
    >>> mask.explain(params)
    ["rule '.*bias'", 'default', "rule 'head/.*'"]
  """

  def __init__(self, rules, default, allow_unused_rules: bool):
    items = list(rules.items()) if isinstance(rules, Mapping) else list(rules)
    self.rules: list[tuple[str, re.Pattern, float]] = []
    for item in items:
      if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise ValueError(f"rules must hold (pattern, multiplier) pairs, got {item!r}.")
      pattern, mult = item
      if not isinstance(pattern, str):
        raise ValueError(f"rules has a pattern that is not a string: {pattern!r}.")
      try:
        regex = re.compile(pattern)
      except re.error as e:
        raise ValueError(f"rules has an invalid regular expression {pattern!r}: {e}") from e
      self.rules.append((pattern, regex, _as_multiplier(f"rules[{pattern!r}]", mult)))
    if not callable(default):
      default = _as_multiplier("default", default)
    self.default = default
    self.allow_unused_rules = allow_unused_rules
    self.__name__ = "regex_mask"

  def _assign(self, params: Any) -> list[tuple[float, str]]:
    paths = param_paths(params)
    base = None
    if callable(self.default):
      base = _resolve(params, self.default, "regex_mask default")
    out, first_hits, any_hits = [], {}, {}
    for i, p in enumerate(paths):
      winner = None
      for j, (pattern, regex, mult) in enumerate(self.rules):
        if regex.fullmatch(p):
          any_hits.setdefault(j, p)
          if winner is None:
            winner = j
            first_hits.setdefault(j, p)
            out.append((mult, f"rule {pattern!r}"))
      if winner is None:
        if base is None:
          out.append((self.default, "default"))
        else:
          out.append((base[i][0], f"default ({base[i][1]})"))
    if not self.allow_unused_rules:
      self._refuse_unused(paths, first_hits, any_hits)
    return out

  def _refuse_unused(self, paths, first_hits, any_hits) -> None:
    """Raises for a rule that sets no multiplier: it matches no path, or only shadowed ones."""
    unused = []
    for j, (pattern, _, _) in enumerate(self.rules):
      if j in any_hits and j not in first_hits:
        unused.append(f"{pattern!r} matches only paths an earlier rule sets (e.g. {any_hits[j]!r})")
      elif j not in any_hits:
        unused.append(f"{pattern!r} matches no parameter path")
    if unused:
      shown = ", ".join(repr(p) for p in paths[:8]) + (" ..." if len(paths) > 8 else "")
      raise ValueError(
        "regex_mask rule sets no multiplier: " + "; ".join(unused) + f". Parameter paths: "
        f"[{shown}]. Fix the pattern (it must re.fullmatch the whole path), or pass "
        "allow_unused_rules=True."
      )

  def __repr__(self) -> str:
    rules = {p: m for p, _, m in self.rules}
    return f"regex_mask({rules!r}, default={self.default!r})"


def regex_mask(
  rules: Mapping[str, float] | Sequence[tuple[str, float]],
  *,
  default: Any = 1.0,
  allow_unused_rules: bool = False,
) -> RegexMask:
  """Per-layer weight-decay multipliers from regular expressions on parameter paths.

  The *first* rule whose pattern `re.fullmatch`es the path (``"head/kernel"``) wins;
  paths that no rule matches get `default`, which may itself be a mask callable such
  as `default_mask`. This is big_vision's ``wd_mults`` idea. A rule that sets no
  multiplier (it matches no path, or only paths an earlier rule already set) is almost
  always a typo, so applying the mask raises unless `allow_unused_rules`.

  Example:
    >>> mask = wd_jax.regex_mask({".*bias": 0.0, "head/.*": 0.1})
    >>> mask({"body": {"kernel": 1.0, "bias": 1.0}, "head": {"kernel": 1.0}})
    {'body': {'bias': 0.0, 'kernel': 1.0}, 'head': {'kernel': 0.1}}

  Args:
    rules: ``{pattern: multiplier}`` or a list of ``(pattern, multiplier)`` pairs;
      multipliers are bools or numbers ≥ 0, checked here with the rule named.
    default: multiplier for unmatched paths, or a callable mask giving it per leaf.
    allow_unused_rules: accept rules that set no multiplier on the parameters.

  Returns:
    A callable ``params -> pytree of multipliers`` for any transform's ``mask=``; its
    ``explain(params)`` says which rule set each multiplier (`describe_mask` prints it).

  Raises:
    ValueError: an invalid pattern or multiplier (at construction); a rule that sets no
      multiplier (when the mask is applied to parameters).

  References:
    big_vision (google-research/big_vision): the ``wd_mults`` regex multipliers of its
    optimizer config.
  """
  return RegexMask(rules, default, allow_unused_rules)


def _default_fan_in(path: str, leaf: Any) -> int | None:
  del path
  shape = np.shape(leaf)
  return math.prod(shape[:-1]) if len(shape) >= 2 else None


class FanInMask(_ExplainedMask):
  """Multipliers scaled by each leaf's fan-in (see `fan_in_mask`).

  Attributes:
    base_fan_in: the fan-in at which the multiplier is unchanged.
    exponent: e in (fan_in/base_fan_in)^e.
    mask: the mask whose multipliers are scaled.
    fan_in: ``(path, leaf) -> int | None``, each leaf's fan-in.

  Example:
    >>> mask = wd_jax.fan_in_mask(64, exponent=-1.0)
    >>> mask.explain({"hidden": {"kernel": jnp.ones((256, 256)), "bias": jnp.ones(256)}})
    ['default_mask: ndim 1 < 2', 'default_mask: ndim 2 >= 2 × (fan_in 256/64)^-1']
  """

  def __init__(self, base_fan_in, exponent, mask, fan_in):
    self.base_fan_in, self.exponent, self.mask = base_fan_in, exponent, mask
    self.fan_in = _default_fan_in if fan_in is None else fan_in
    self.__name__ = "fan_in_mask"

  def _assign(self, params: Any) -> list[tuple[float, str]]:
    base = _resolve(params, self.mask, "fan_in_mask mask")
    out = []
    for (m, why), path, leaf in zip(base, param_paths(params), jax.tree.leaves(params)):
      n = self.fan_in(path, leaf)
      if n is None or m == 0.0:
        out.append((m, why))
        continue
      validation.check_int(f"fan_in of {path!r}", n, lower=1, hint=" or None")
      scale = (int(n) / self.base_fan_in) ** self.exponent
      out.append((m * scale, f"{why} × (fan_in {int(n)}/{self.base_fan_in})^{self.exponent:g}"))
    return out


def fan_in_mask(
  base_fan_in: int,
  *,
  exponent: float = 1.0,
  mask: Mask = default_mask,
  fan_in: Callable[[str, Any], int | None] | None = None,
) -> FanInMask:
  """Width-aware multipliers for μP-style setups: m_l = mask_l · (fan_in_l / base_fan_in)^e.

  fan_in_l is ``prod(shape[:-1])`` for leaves with ndim ≥ 2 (a Flax kernel ``(..., in,
  out)``; a conv kernel ``(h, w, in, out)`` has fan-in h·w·in); other leaves keep `mask`'s
  multiplier. `fan_in(path, leaf)` overrides that rule (return None to leave a leaf alone).

  Which exponent: the decay step of a wd_jax transform is c_t·λ·m_l·θ, with c_t set by
  the coupling from the *global* learning rate. Under μP the base optimizer scales each
  hidden layer's learning rate as η_l = α·base/fan_in_l. Wang & Aitchison (2024) keep the
  EMA timescale τ_l = 1/(η_l λ_l) of every layer fixed across widths, i.e. λ_l ∝ fan_in_l
  when λ is multiplied by the layer's own η_l (torch parameter groups). To give a layer the
  per-step shrink η_l·λ_l of such a setup with λ_l = λ·(fan_in_l/base)^p, use
  ``exponent = p − 1``: p = 1 (their rule) needs no multiplier at all in wd_jax, p = 0 (one
  λ for every parameter group) is ``exponent=-1``. Use ``exponent=1`` where λ is multiplied
  by a learning rate that does *not* scale with width.

  Example:
    >>> mask = wd_jax.fan_in_mask(64, exponent=1.0)
    >>> mask({"hidden": {"kernel": jnp.ones((256, 256)), "bias": jnp.ones(256)}})
    {'hidden': {'bias': 0.0, 'kernel': 4.0}}

  Args:
    base_fan_in: the fan-in at which the multiplier is 1 (the base model's width).
    exponent: e in (fan_in/base)^e.
    mask: the multipliers to scale (any mask; default `default_mask`).
    fan_in: optional ``(path, leaf) -> int | None`` giving each leaf's fan-in.

  Returns:
    A mask callable; ``explain(params)`` says how each multiplier was set.

  References:
    Wang & Aitchison, "How to set AdamW's weight decay as you scale model and dataset
    size", 2024. Yang et al., "Tensor Programs V" (μP), 2022.
  """
  validation.check_int("base_fan_in", base_fan_in, lower=1)
  if isinstance(exponent, bool):
    raise ValueError(f"exponent must be a finite number, got {exponent!r}.")
  validation.check_number("exponent", exponent, allow_schedule=False)
  return FanInMask(int(base_fan_in), float(exponent), mask, fan_in)


@dataclasses.dataclass(frozen=True)
class MaskRow:
  path: str
  shape: tuple[int, ...]
  size: int
  multiplier: float
  source: str = ""  # what set the multiplier (a rule, the default, a mask entry)

  @property
  def decayed(self) -> bool:
    return self.multiplier != 0.0


@dataclasses.dataclass(frozen=True)
class MaskTable:
  """What a mask does to each parameter; `str()` gives a readable table (`describe_mask`).

  Attributes:
    rows: one row per parameter leaf: ``path``, ``shape``, ``size``, ``multiplier``,
      ``source`` (what set the multiplier) and ``decayed``.

  Example:
    >>> params = {"w": jnp.ones((4, 3)), "b": jnp.ones(3)}
    >>> table = wd_jax.describe_mask(params, wd_jax.default_mask)
    >>> table.decayed_size, table.total_size, table.rows[0].decayed
    (12, 15, False)
  """

  rows: tuple[MaskRow, ...]

  @property
  def total_size(self) -> int:
    """Number of parameter elements."""
    return sum(r.size for r in self.rows)

  @property
  def decayed_size(self) -> int:
    """Number of parameter elements with a multiplier other than 0."""
    return sum(r.size for r in self.rows if r.decayed)

  def __str__(self) -> str:
    total = max(self.total_size, 1)
    header = ("parameter", "shape", "decayed", "multiplier", "share", "set by")
    body = [
      (
        r.path,
        str(r.shape),
        "yes" if r.decayed else "no",
        f"{r.multiplier:g}",
        f"{100 * r.size / total:.1f}%",
        r.source,
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
  """A table of path, shape, decayed or not, multiplier, share, and what set the multiplier.

  Print it before training to see what weight decay will touch.

  Args:
    params: the parameters (Flax NNX state, a Linen dict or any pytree).
    mask: any mask a transform accepts (None: every leaf is decayed).

  Returns:
    A `MaskTable`; ``print`` it for the table.

  Raises:
    ValueError: the mask does not match the params (paths without an entry, entries
      without a parameter) or holds a value that is not a multiplier ≥ 0.

  Example:
    >>> params = {"w": jnp.ones((4, 3)), "b": jnp.ones(3)}
    >>> print(wd_jax.describe_mask(params, wd_jax.regex_mask({"b": 0.0})))
    parameter  shape   decayed  multiplier  share  set by
    ---------  ------  -------  ----------  -----  --------
    b          (3,)    no       0           20.0%  rule 'b'
    w          (4, 3)  yes      1           80.0%  default
    decayed: 12 of 15 parameters (80.0%)

  References:
    big_vision's ``wd_mults`` and He et al., CVPR 2019 ("no bias decay"): the per-layer
    practice the masks express (see `regex_mask`, `default_mask`).
  """
  resolved = _resolve(params, mask, "mask")
  leaves = jax.tree.leaves(params)
  rows = tuple(
    MaskRow(p, tuple(np.shape(x)), int(np.size(x)), m, why)
    for p, x, (m, why) in zip(param_paths(params), leaves, resolved)
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
