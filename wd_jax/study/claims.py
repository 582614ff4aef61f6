"""Pre-registered claims: declared in a study's config before it runs, decided by `stats`.

A claim is data, not code. The config declares what it says, who says it, which measurement it
reads, the comparison (greater / less / equivalent within a margin / slope within a range), the
margin or range, and α:

>>> import ml_collections
>>> from wd_jax.study.claims import claim
>>> c = ml_collections.ConfigDict()
>>> c.claims = {"decay_helps": claim(
...     "AdamW ends with a higher test accuracy than Adam+L2.", "Loshchilov & Hutter 2019",
...     "greater", a="adamw/test_accuracy@tuned", b="adam_l2/test_accuracy@tuned")}
>>> c.claims.decay_helps.comparison, c.claims.decay_helps.alpha
('greater', 0.05)

The study computes the named measurements (one value per seed, seeds paired across arms) and
`decide` hands each frozen `Claim` and its values to `wd_jax.study.stats.decide`: the code that
measures never sees, and cannot change, the comparison, margin or α. A claim whose measurement
the study cannot produce is refused by `check` before anything runs.

``kind="construction"`` marks claims that hold by construction (an identity, the algebra of the
update): they are still measured and decided, and the summary lists them apart from the
empirical ones.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import ml_collections

from wd_jax.study import stats

KINDS = ("empirical", "construction")
_DECLARED = (
  "statement",
  "source",
  "kind",
  "comparison",
  "a",
  "b",
  "measure",
  "margin",
  "alpha",
  "paired",
  "low",
  "high",
  "power_at",
  "names",
)


def claim(
  statement: str,
  source: str,
  comparison: str,
  *,
  a: str | None = None,
  b: str | None = None,
  measure: str | None = None,
  margin: float | None = None,
  alpha: float = 0.05,
  paired: bool = True,
  low: float | None = None,
  high: float | None = None,
  power_at: float | None = None,
  names: tuple[str, str] | None = None,
  kind: str = "empirical",
) -> ml_collections.ConfigDict:
  """A claim declaration for a study config (see the module docstring).

  Args:
    statement: what is claimed, in one sentence.
    source: who claims it (paper, REFERENCES.md section).
    comparison: "greater", "less", "equivalent" or "slope_within".
    a: greater/less/equivalent: the measurement of arm A (one value per seed).
    b: the measurement of arm B (paired by seed with A); None: A is compared to 0.
    measure: slope_within: the measurement giving ``{"x", "y", "groups"}``.
    margin: δ: greater/less: the effect must exceed it (default 0); equivalent: the
      equivalence margin (required, > 0).
    alpha: the level of the test.
    paired: A and B share seeds (paired t); False: Welch.
    low: slope_within: the range's lower end.
    high: slope_within: the range's upper end.
    power_at: the true effect at which the summary reports the design's power (default: see
      `wd_jax.study.stats`).
    names: labels of A and B in the verdict's sentence.
    kind: "empirical", or "construction" for claims true by construction.

  Returns:
    A ConfigDict holding only the declared keys.

  Example:
    >>> from wd_jax.study import claims
    >>> c = claims.claim("AdamW beats Adam+L2.", "Loshchilov & Hutter 2019", "greater",
    ...                  a="adamw/test_accuracy", b="adam_l2/test_accuracy", margin=0.01)
    >>> c.comparison, c.margin, c.alpha, c.paired
    ('greater', 0.01, 0.05, True)

  References:
    Nosek, Ebersole, DeHaven & Mellor, "The preregistration revolution", PNAS 2018.
  """
  out: dict[str, Any] = {
    "statement": statement,
    "source": source,
    "kind": kind,
    "comparison": comparison,
    "alpha": alpha,
  }
  extra = {
    "a": a,
    "b": b,
    "measure": measure,
    "margin": margin,
    "low": low,
    "high": high,
    "power_at": power_at,
    "names": names,
  }
  out.update({k: v for k, v in extra.items() if v is not None})
  if comparison in ("greater", "less", "equivalent"):
    out["paired"] = paired
  return ml_collections.ConfigDict(out)


def declare(**claims: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A config's ``claims`` field: name -> `claim(...)`, kept in declaration order.

  Args:
    **claims: each claim's name and its `claim` declaration.

  Returns:
    A ConfigDict (unsorted keys) to assign to ``config.claims``.

  Example:
    >>> from wd_jax.study import claims
    >>> declared = claims.declare(decay_helps=claims.claim(
    ...   "AdamW ends with a higher test accuracy than Adam+L2.", "Loshchilov & Hutter 2019",
    ...   "greater", a="adamw/test_accuracy", b="adam_l2/test_accuracy"))
    >>> list(declared)
    ['decay_helps']

  References:
    Nosek, Ebersole, DeHaven & Mellor, "The preregistration revolution", PNAS 2018.
  """
  out = ml_collections.ConfigDict(sort_keys=False)
  for name, c in claims.items():
    out[name] = c
  return out


@dataclasses.dataclass(frozen=True)
class Claim:
  """A declared claim, frozen: what the study's measuring code receives.

  Attributes:
    name: the claim's key in ``config.claims``.
    statement: what is claimed, in one sentence.
    source: who claims it.
    kind: ``"empirical"`` or ``"construction"``.
    test: the keys `wd_jax.study.stats.decide` reads (read-only).
    measurements: the names of the measurements it reads (a, b or measure).

  Example:
    >>> from wd_jax.study import claims
    >>> declared = claims.declare(decay_helps=claims.claim(
    ...   "AdamW ends with a higher test accuracy than Adam+L2.", "Loshchilov & Hutter 2019",
    ...   "greater", a="adamw/test_accuracy", b="adam_l2/test_accuracy"))
    >>> (c,) = claims.parse(declared)
    >>> c.name, c.comparison, c.measurements
    ('decay_helps', 'greater', ('adamw/test_accuracy', 'adam_l2/test_accuracy'))
  """

  name: str
  statement: str
  source: str
  kind: str
  test: Mapping[str, Any]  # the keys `stats.decide` reads (read-only)
  measurements: tuple[str, ...]  # the measurement names it reads (a, b or measure)

  @property
  def comparison(self) -> str:
    """The declared comparison (``"greater"``, ``"less"``, ...)."""
    return self.test["comparison"]


def parse(claims: Any) -> list[Claim]:
  """The claims of a config's ``claims`` field, checked; `ValueError` naming the bad key.

  Args:
    claims: the config's ``claims`` field (name -> `claim` declaration).

  Returns:
    One frozen `Claim` per declaration, in order.

  Raises:
    ValueError: no claims, an unknown key, a missing or malformed value (named with the
      claim, e.g. ``config.claims.decay_helps.alpha``).

  Example:
    >>> from wd_jax.study import claims
    >>> declared = claims.declare(decay_helps=claims.claim(
    ...   "AdamW ends with a higher test accuracy than Adam+L2.", "Loshchilov & Hutter 2019",
    ...   "greater", a="adamw/test_accuracy", b="adam_l2/test_accuracy"))
    >>> [c.name for c in claims.parse(declared)]
    ['decay_helps']

  References:
    Nosek, Ebersole, DeHaven & Mellor, "The preregistration revolution", PNAS 2018.
  """
  if claims is None or not len(claims):
    raise ValueError("config.claims is empty: a study declares its claims before it runs.")
  return [_parse_one(name, c) for name, c in dict(claims).items()]


def _parse_one(name: str, c: Any) -> Claim:
  """One declaration -> its `Claim`: the shared keys, then the comparison's own."""
  where = f"config.claims.{name}"
  c = c.to_dict() if hasattr(c, "to_dict") else dict(c)
  kind = _check_common(where, c)
  if c["comparison"] == "slope_within":
    used = _check_slope(where, c)
  else:
    used = _check_arms(where, c)
  alpha = c.get("alpha", 0.05)
  if not isinstance(alpha, float) or not 0 < alpha < 0.5:
    raise ValueError(f"{where}.alpha must be a float in (0, 0.5), got {alpha!r}.")
  test = {k: v for k, v in c.items() if k not in ("statement", "source", "kind", "a", "b")}
  test.pop("measure", None)
  if "names" in test:
    test["names"] = tuple(test["names"])
  return Claim(name, c["statement"], c["source"], kind, types.MappingProxyType(test), used)


def _check_common(where: str, c: Mapping[str, Any]) -> str:
  """The keys every claim shares (known keys, the three strings, kind, comparison); its kind."""
  for key in c:
    if key not in _DECLARED:
      raise ValueError(f"{where}: unknown key {key!r}; a claim declares {list(_DECLARED)}.")
  for key in ("statement", "source", "comparison"):
    if not isinstance(c.get(key), str) or not c.get(key):
      raise ValueError(f"{where}.{key} must be a non-empty string, got {c.get(key)!r}.")
  kind = c.get("kind", "empirical")
  if kind not in KINDS:
    raise ValueError(f"{where}.kind must be one of {list(KINDS)}, got {kind!r}.")
  if c["comparison"] not in stats.COMPARISONS:
    raise ValueError(
      f"{where}.comparison must be one of {stats.COMPARISONS}, got {c['comparison']!r}."
    )
  return kind


def _check_slope(where: str, c: Mapping[str, Any]) -> tuple[str, ...]:
  """A slope_within claim's measure and bounds; the measurement it reads."""
  if not isinstance(c.get("measure"), str):
    raise ValueError(f"{where}.measure must name the measurement of a slope_within claim.")
  for key in ("low", "high"):
    if not isinstance(c.get(key), (int, float)) or not math.isfinite(c[key]):
      raise ValueError(f"{where}.{key} must be a finite number, got {c.get(key)!r}.")
  if c["low"] >= c["high"]:
    raise ValueError(f"{where}: low {c['low']} must be below high {c['high']}.")
  return (c["measure"],)


def _check_arms(where: str, c: Mapping[str, Any]) -> tuple[str, ...]:
  """A comparison's arms (a, and b if any) and margin; the measurements it reads."""
  if not isinstance(c.get("a"), str):
    raise ValueError(f"{where}.a must name the measurement of arm A, got {c.get('a')!r}.")
  if "b" in c and not isinstance(c["b"], str):
    raise ValueError(f"{where}.b must name a measurement, got {c['b']!r}.")
  margin = c.get("margin", 0.0)
  if not isinstance(margin, (int, float)) or not math.isfinite(margin) or margin < 0:
    raise ValueError(f"{where}.margin must be a finite number >= 0, got {margin!r}.")
  if c["comparison"] == "equivalent" and not margin > 0:
    raise ValueError(f"{where}.margin must be > 0 for an equivalent claim, got {margin!r}.")
  return (c["a"], c["b"]) if "b" in c else (c["a"],)


def check(claims: Any, available: Iterable[str]) -> list[Claim]:
  """`parse`, then refuses a claim whose measurement the study cannot produce (before running).

  Args:
    claims: the config's ``claims`` field.
    available: every measurement name the study will produce for this config.

  Returns:
    The parsed claims (`parse`).

  Raises:
    ValueError: as `parse`, or a claim reading a measurement the study does not produce.

  Example:
    >>> from wd_jax.study import claims
    >>> declared = claims.declare(decay_helps=claims.claim(
    ...   "AdamW ends with a higher test accuracy than Adam+L2.", "Loshchilov & Hutter 2019",
    ...   "greater", a="adamw/test_accuracy", b="adam_l2/test_accuracy"))
    >>> claims.check(declared, ["adamw/test_accuracy"])
    Traceback (most recent call last):
    ...
    ValueError: config.claims.decay_helps reads measurement 'adam_l2/test_accuracy', ...

  References:
    Nosek, Ebersole, DeHaven & Mellor, "The preregistration revolution", PNAS 2018.
  """
  parsed = parse(claims)
  names = set(available)
  for c in parsed:
    for m in c.measurements:
      if m not in names:
        raise ValueError(
          f"config.claims.{c.name} reads measurement {m!r}, which this study does not produce "
          f"for this config; it produces: {sorted(names)}."
        )
  return parsed


@dataclasses.dataclass(frozen=True)
class Finding:
  """A claim with its decision and what the study measured, for the summary.

  Attributes:
    claim: the `Claim`.
    decision: its `wd_jax.study.stats.Decision`.
    measured: what was measured, in words (may be empty).
    holm_p: the Holm-adjusted p-value over the study's empirical claims (NaN for a claim
      true by construction, which is kept out of the family).
    survives_holm: for a "supported" empirical verdict, whether it survives Holm's correction
      at the family-wise α; None otherwise.

  Example:
    >>> from wd_jax.study import claims
    >>> helps = claims.claim("A ends higher than B.", "a paper", "greater", a="a", b="b")
    >>> (finding,) = claims.decide(claims.parse(claims.declare(helps=helps)),
    ...                            {"a": [0.91, 0.93, 0.92], "b": [0.89, 0.90, 0.90]})
    >>> finding.claim.name, finding.decision.verdict, finding.survives_holm
    ('helps', 'supported', True)
  """

  claim: Claim
  decision: stats.Decision
  measured: str = ""
  holm_p: float = math.nan  # Holm-adjusted p over the study's empirical claims
  survives_holm: bool | None = None  # a "supported" verdict that survives Holm (else None)


def decide(
  claims: Sequence[Claim],
  measurements: Mapping[str, Any],
  describe: Callable[[Claim], str] | None = None,
) -> list[Finding]:
  """Decides every claim from the study's measurements, then corrects the empirical claims'
  p-values for their number (Holm, family-wise α = the smallest declared α).

  Args:
    claims: the parsed claims (`check`).
    measurements: name -> one value per seed (seeds in the same order for every arm), or a
      (seeds, test items) array (paired by seed and item), or for a slope
      ``{"x": ..., "y": ..., "groups": ...}``.
    describe: optional ``claim -> str``, what was measured in words (beside the verdict).

  Returns:
    One `Finding` per claim, in declaration order.

  Example:
    >>> from wd_jax.study import claims
    >>> declared = claims.declare(decay_helps=claims.claim(
    ...   "AdamW ends with a higher test accuracy than Adam+L2.", "Loshchilov & Hutter 2019",
    ...   "greater", a="adamw/test_accuracy", b="adam_l2/test_accuracy"))
    >>> values = {"adamw/test_accuracy": [0.91, 0.93, 0.92],
    ...           "adam_l2/test_accuracy": [0.89, 0.90, 0.90]}  # one value per seed, paired
    >>> (finding,) = claims.decide(claims.check(declared, values), values)
    >>> print(finding.decision.detail)
    A−B = +0.0233 [90% CI +0.0136, +0.0331], n=3 paired; claim A−B > 0: supported (p = 0.0099)

  References:
    Nosek, Ebersole, DeHaven & Mellor, "The preregistration revolution", PNAS 2018.
  """
  out = []
  for c in claims:
    if c.comparison == "slope_within":
      values = dict(measurements[c.measurements[0]])
    else:
      values = {"a": measurements[c.measurements[0]]}
      if len(c.measurements) > 1:
        values["b"] = measurements[c.measurements[1]]
    decision = stats.decide(dict(c.test), values)
    out.append(Finding(c, decision, describe(c) if describe else ""))
  family = [k for k, f in enumerate(out) if f.claim.kind == "empirical"]
  if family:
    alpha = min(out[k].decision.alpha for k in family)
    adjusted, rejected = stats.holm([out[k].decision.p_value for k in family], alpha)
    for k, p, r in zip(family, adjusted, rejected):
      keep = bool(r) if out[k].decision.verdict == stats.SUPPORTED else None
      out[k] = dataclasses.replace(out[k], holm_p=float(p), survives_holm=keep)
  return out
