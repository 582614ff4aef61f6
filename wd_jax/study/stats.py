"""Verdicts on pre-registered claims from per-seed (or seeds × items) measurements.

Every claim of a study is declared before it runs: a comparison, a margin δ (or a range for a
slope) and a level α. This module turns the per-seed values into one of three verdicts, with the
effect, its confidence interval, the power of the design and, for an inconclusive verdict, how
many seeds would decide it.

**Design.** Variants that share seeds are *paired*: value ``a[i]`` and ``b[i]`` come from seed
``i``, so the test uses the per-seed differences ``d = a − b`` (paired t), which removes
everything the two runs of a seed share (initialisation, data order). ``b=None`` is a one-sample
test of ``a`` against 0 (``a`` is already a difference, or a quantity compared to 0).
``paired=False`` compares independent arms with Welch's t. A value that is not finite (a diverged
run) drops its whole pair (or, unpaired, itself); ``Decision.dropped`` counts the drops and the
detail sentence says so.

**Seeds × test items.** Values of shape (seeds, items), e.g. each test item's accuracy in each
seed's run (``test_items.npz``), are paired by seed *and* item, and the interval counts both as
random: the crossed two-way random-effects estimate of `wd_jax.study._estimate.crossed_se_df`
(the variance of the seed means plus the items' shared part, Satterthwaite's dof). A finite
test set is a sample too: with it, a gap that the seeds agree on but that a few hundred items
carry is not read as certain. n counts seeds; a seed with a non-finite value is dropped whole.

**Interval.** Every verdict reads one interval: the two-sided (1−2α) Student-t confidence
interval of the effect (90% at α = 0.05). Its lower bound is the one-sided α test of
"effect ≤ bound", its upper bound that of "effect ≥ bound", and "inside (L, H)" is the two
one-sided tests (TOST) at level α each: every verdict below is a level-α test.

============  ======================  =====================  ============
comparison    supported when          not supported when     inconclusive
============  ======================  =====================  ============
greater       lo > δ                  hi < δ                 otherwise
less          hi < −δ                 lo > −δ                otherwise
equivalent    −δ < lo and hi < δ      lo > δ or hi < −δ      otherwise
slope_within  low < lo and hi < high  hi < low or lo > high  otherwise
============  ======================  =====================  ============

δ ≥ 0 for greater/less, δ > 0 for equivalent; [lo, hi] is the (1−2α) interval of A − B (or of
the slope). With δ = 0, "not supported" for ``greater`` means A is significantly *below* B; with
δ > 0 it means the data rule out a gap as large as δ, even when A is significantly above B by
less. "equivalent" is TOST (Schuirmann 1987; Lakens 2017): an interval straddling a bound is
inconclusive, never "equal"; "means within δ" alone is not evidence.

**Edge cases.** Fewer than 2 usable pairs (per arm, groups; 3 points for an ungrouped slope):
always inconclusive, with infinite CI and the reason in the detail. Zero spread with n ≥ 2: the CI
is the point itself, so the verdict is decided unless the point sits exactly on a bound (then
inconclusive and ``n_needed`` is None).

**Power and n_needed.** ``Decision.power`` is the probability that this design (its n and
observed sd, α) declares "supported" when the true effect is ``power_at``: by default one observed
sd beyond the threshold for greater/less (so it describes the design, not the observed effect),
0 for equivalence, the middle of [low, high] for a slope. It comes from the noncentral t
(one-sided) or from integrating over the sampling distribution of the sd (two-sided, TOST),
treating the observed sd as the true one. ``Decision.n_needed`` (inconclusive verdicts only) is
the smallest n at which the verdict the observed effect points to (supported, or not supported
when the observed effect lies beyond the bound the other way) is reached with 80% probability,
at the observed effect and sd. It is None when the verdict is decided, when the observed effect
sits exactly on a bound or the spread is zero (undecidable at this effect), when n < 2, or when
more than `cap` (1000) would be needed.

**Several claims.** Each claim is tested at α; `multiple_claims_note` states the count and which
"supported" verdicts survive Holm's step-down correction of the family (Holm 1979).

Example:
  >>> from wd_jax.study import stats
  >>> d = stats.decide_greater([0.91, 0.93, 0.92], [0.89, 0.90, 0.90])
  >>> print(d.detail)
  A−B = +0.0233 [90% CI +0.0136, +0.0331], n=3 paired; claim A−B > 0: supported (p = 0.0099)

References:
  Student (1908), The probable error of a mean. Welch (1947), The generalization of "Student's"
  problem when several different population variances are involved. Schuirmann (1987), A
  comparison of the two one-sided tests procedure and the power approach for assessing the
  equivalence of average bioavailability. Holm (1979), A simple sequentially rejective multiple
  test procedure. Lakens (2017), Equivalence tests: a practical primer for t tests, correlations,
  and meta-analyses. Efron & Tibshirani (1993), An Introduction to the Bootstrap (percentile
  interval).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from wd_jax.study import power as power_lib
from wd_jax.study._estimate import (
  COMPARISONS,
  Sample,
  bootstrap_interval,
  check_alpha,
  check_claim_keys,
  check_margin,
  check_range,
  claim_bounds,
  holm,
  interval,
  p_inside,
  paired_differences,
  per_item_slopes,
  seeds_items_interval,
  slope_sample,
  t_interval,
  two_arm_sample,
  verdict_codes,
)
from wd_jax.study.power import n_needed, power_one_sided, power_tost

__all__ = [
  "COMPARISONS",
  "INCONCLUSIVE",
  "NOT_SUPPORTED",
  "SUPPORTED",
  "Decision",
  "bootstrap_interval",
  "decide",
  "decide_equivalent",
  "decide_greater",
  "decide_less",
  "decide_slope",
  "holm",
  "multiple_claims_note",
  "n_needed",
  "paired_differences",
  "per_item_slopes",
  "power_one_sided",
  "power_tost",
  "seeds_items_interval",
  "t_interval",
]

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"
_VERDICTS = {1: SUPPORTED, -1: NOT_SUPPORTED, 0: INCONCLUSIVE}


@dataclasses.dataclass(frozen=True)
class Decision:
  """The verdict on one claim, with the numbers behind it.

  ``ci`` is always the two-sided (1−2α) Student-t interval of ``effect`` (90% at α = 0.05); for
  greater/less only the bound facing the threshold decides (a one-sided level-α test), for
  equivalence and slopes both bounds do (TOST).

  Attributes:
    verdict: `SUPPORTED`, `NOT_SUPPORTED` or `INCONCLUSIVE`.
    comparison: ``"greater"``, ``"less"``, ``"equivalent"`` or ``"slope_within"``.
    effect: the mean paired difference a − b (unpaired: mean a − mean b; or the slope).
    ci: the two-sided (1−2α) t interval of `effect`.
    n: pairs used (per-arm n unpaired, the smaller arm; points or groups for a slope).
    dropped: pairs (values, points, groups) dropped because a value was not finite.
    alpha: the level of each one-sided test.
    margin: δ (greater/less/equivalent); for slopes the half-width (high − low) / 2.
    power: P(supported) for this n, the observed sd and α when the true effect is
      `power_at`.
    n_needed: inconclusive only: the n that decides it with 80% power at the observed effect.
    detail: one sentence: effect, CI, n, claim, verdict.
    p_value: p of the claim's own level-α test (supported iff p < α).
    power_at: the true effect at which `power` is computed.

  Example:
    >>> from wd_jax.study import stats
    >>> d = stats.decide_greater([0.91, 0.93, 0.92], [0.89, 0.90, 0.90])
    >>> d.verdict, round(d.effect, 4), d.n, round(d.p_value, 4)
    ('supported', 0.0233, 3, 0.0099)
  """

  verdict: str  # SUPPORTED | NOT_SUPPORTED | INCONCLUSIVE
  comparison: str  # "greater" | "less" | "equivalent" | "slope_within"
  effect: float  # mean paired difference a−b (or mean a − mean b unpaired; or the slope)
  ci: tuple[float, float]  # two-sided (1−2α) t interval of effect
  n: int  # pairs (per-arm n unpaired, the smaller arm; points or groups for a slope) used
  dropped: int  # pairs (values, points, groups) dropped because a value was not finite
  alpha: float
  margin: float  # δ (greater/less/equivalent); for slopes the half-width (high − low) / 2
  power: float  # P(supported) for this n, observed sd and α when the true effect is power_at
  n_needed: int | None  # inconclusive only: n that decides it with 80% power at the observed effect
  detail: str  # one sentence: effect, CI, n, claim, verdict
  p_value: float = math.nan  # p of the claim's own level-α test (supported iff p < α)
  power_at: float = math.nan  # the true effect at which `power` is computed


def _num(x: float) -> str:
  return f"{x:+.3g}" if math.isfinite(x) else str(x)


def _claim_text(comparison: str, label: str, margin: float, bounds: tuple[float, float]) -> str:
  if comparison == "greater":
    return f"{label} > {margin:g}"
  if comparison == "less":
    return f"{label} < {-margin:g}" if margin else f"{label} < 0"  # not "< -0"
  if comparison == "equivalent":
    return f"|{label}| < {margin:g}"
  return f"{label} in [{bounds[0]:g}, {bounds[1]:g}]"


def _undecided(sample: Sample, bounds: tuple[float, float], alpha: float) -> tuple[int | None, str]:
  """An inconclusive verdict's n that would decide it, and the sentence that says so."""
  needed = power_lib.n_to_decide(sample.effect, bounds, sample.design, alpha)
  if needed is not None:
    return needed, f"~{needed} {sample.unit} would decide it at the observed effect (80% power)"
  decisive = power_lib.decisive_power(sample.effect, bounds, alpha)
  design = sample.design
  if decisive is None or (design.sd == 0 and design.floor == 0):
    return None, "undecidable at the observed effect (it sits on the bound)"
  if design.floor > 0 and decisive(design.floor, design.df(power_lib.CAP)) < power_lib.TARGET_POWER:
    return None, (
      f"more {sample.unit} alone would not decide it: the test items leave a standard error of "
      f"{design.floor:.2g}; more test items would"
    )
  return None, f"more than {power_lib.CAP} {sample.unit} would be needed at the observed effect"


def _decision(comparison, sample: Sample, label, alpha, margin, bounds, power_at) -> Decision:
  drop = f", {sample.dropped} dropped (not finite)" if sample.dropped else ""
  claim = _claim_text(comparison, label, margin, bounds)
  common = dict(
    comparison=comparison,
    effect=float(sample.effect),
    n=sample.n,
    dropped=sample.dropped,
    alpha=alpha,
    margin=margin,
    power_at=power_at,
  )
  if sample.design is None:
    detail = (
      f"{label} = {_num(sample.effect)} from {sample.how}{drop}: {sample.short}; "
      f"claim {claim}: {INCONCLUSIVE}"
    )
    return Decision(
      INCONCLUSIVE, ci=(-math.inf, math.inf), power=math.nan, n_needed=None, detail=detail, **common
    )
  lo, hi = (float(v) for v in interval(sample.effect, sample.se, sample.df, alpha))
  code = int(verdict_codes(lo, hi, bounds))
  p = float(p_inside(sample.effect, sample.se, sample.df, bounds))
  power = math.nan
  if math.isfinite(power_at):
    power = power_lib.power_inside(*bounds, power_at, sample.se, sample.df, alpha)
  pct = f"{100 * (1 - 2 * alpha):.3g}%"
  head = f"{label} = {_num(sample.effect)} [{pct} CI {_num(lo)}, {_num(hi)}], {sample.how}{drop}"
  needed, tail = None, f"claim {claim}: {_VERDICTS[code]} (p = {p:.2g})"
  if code == 0:
    needed, more = _undecided(sample, bounds, alpha)
    at = f"power {power:.2f} at {_num(power_at)}" if math.isfinite(power) else "no spread"
    tail = f"{tail}; {at}; {more}"
  return Decision(
    _VERDICTS[code],
    ci=(lo, hi),
    power=power,
    n_needed=needed,
    detail=f"{head}; {tail}",
    p_value=p,
    **common,
  )


def _label(b, names: tuple[str, str]) -> str:
  return names[0] if b is None else f"{names[0]}−{names[1]}"


def _one_sided(comparison, a, b, margin, alpha, paired, power_at, names) -> Decision:
  alpha = check_alpha(alpha)
  margin = check_margin("margin", margin, positive=False)
  sample = two_arm_sample(a, b, paired)
  bounds = claim_bounds(comparison, margin, math.nan, math.nan)
  if power_at is None:
    sd = sample.design.sd if sample.design is not None else math.nan
    sign = 1.0 if comparison == "greater" else -1.0
    power_at = sign * (margin + sd) if sd > 0 else math.nan
  label = _label(b, names)
  return _decision(comparison, sample, label, alpha, margin, bounds, float(power_at))


def decide_greater(
  a: Sequence[float],
  b: Sequence[float] | None = None,
  *,
  margin: float = 0.0,
  alpha: float = 0.05,
  paired: bool = True,
  power_at: float | None = None,
  names: tuple[str, str] = ("A", "B"),
) -> Decision:
  """Verdict on "A exceeds B by more than `margin`" (b=None: "A > margin").

  With d the per-seed differences (or Welch's difference when unpaired) and [lo, hi] its
  (1−2α) t interval: supported when lo > margin (the one-sided level-α test rejects
  H0: effect ≤ margin); not supported when hi < margin (the data rule out an effect as large as
  the margin; with margin 0, A is significantly below B); inconclusive otherwise.

  Args:
    a: one value per seed of variant A (None / non-finite marks a diverged run), or an array
      seeds × test items (paired by seed and item; see the module docstring).
    b: one value per seed of variant B, or None for a one-sample test of a against 0.
    margin: δ ≥ 0, the smallest excess that counts.
    alpha: level of the one-sided test, in (0, 0.5).
    paired: a[i], b[i] share seed i (default); False: independent arms (Welch).
    power_at: true effect at which `Decision.power` is computed; default margin + one observed
      sd (of the differences; per arm when unpaired).
    names: labels of A and B in the detail.

  Returns:
    The `Decision`.

  Example:
    >>> from wd_jax.study import stats
    >>> d = stats.decide_greater([0.93, 0.90, 0.95], [0.90, 0.91, 0.92])
    >>> d.verdict, d.n_needed
    ('inconclusive', 14)
    >>> print(d.detail)  # doctest: +NORMALIZE_WHITESPACE
    A−B = +0.0167 [90% CI -0.0223, +0.0556], n=3 paired; claim A−B > 0: inconclusive (p = 0.17);
    power 0.32 at +0.0231; ~14 pairs would decide it at the observed effect (80% power)

  References:
    Student (1908); Welch (1947) for ``paired=False``.
  """
  return _one_sided("greater", a, b, margin, alpha, paired, power_at, names)


def decide_less(
  a: Sequence[float],
  b: Sequence[float] | None = None,
  *,
  margin: float = 0.0,
  alpha: float = 0.05,
  paired: bool = True,
  power_at: float | None = None,
  names: tuple[str, str] = ("A", "B"),
) -> Decision:
  """Verdict on "A is below B by more than `margin`" (b=None: "A < −margin"); mirrors greater.

  Supported when hi < −margin; not supported when lo > −margin (with margin 0, A is
  significantly above B); inconclusive otherwise. [lo, hi] is the (1−2α) t interval of A − B.

  Args:
    a, b, alpha, paired, names: as `decide_greater`.
    margin: δ ≥ 0, the smallest shortfall that counts.
    power_at: true effect at which `Decision.power` is computed; default −margin − one sd.

  Returns:
    The `Decision`.

  Example:
    >>> from wd_jax.study import stats
    >>> stats.decide_less([1.2, 1.1, 1.3], [1.5, 1.4, 1.5]).verdict
    'supported'

  References:
    Student (1908); Welch (1947) for ``paired=False``.
  """
  return _one_sided("less", a, b, margin, alpha, paired, power_at, names)


def decide_equivalent(
  a: Sequence[float],
  b: Sequence[float] | None = None,
  *,
  margin: float,
  alpha: float = 0.05,
  paired: bool = True,
  power_at: float = 0.0,
  names: tuple[str, str] = ("A", "B"),
) -> Decision:
  """Verdict on ``|A − B| < margin`` by two one-sided tests (TOST) at level α.

  Supported when the (1−2α) t interval lies inside (−margin, +margin) (both H0: effect ≤ −δ and
  H0: effect ≥ δ rejected at α); not supported when it lies entirely outside [−margin, +margin]
  (A and B differ by more than the margin, at α); inconclusive otherwise. Means within the
  margin are not enough: a wide interval is inconclusive.

  Args:
    a: one value per seed of variant A, or seeds × test items.
    b: one value per seed of variant B, or None for a one-sample test of a against 0.
    margin: δ > 0, the equivalence margin declared with the claim.
    alpha: level of each one-sided test, in (0, 0.5).
    paired: a[i], b[i] share seed i (default); False: independent arms (Welch).
    power_at: true effect at which `Decision.power` (of declaring equivalence) is computed.
    names: labels of A and B in the detail.

  Returns:
    The `Decision`.

  Example:
    >>> from wd_jax.study import stats
    >>> a, b = [0.700, 0.712, 0.695, 0.705], [0.698, 0.707, 0.697, 0.700]
    >>> print(stats.decide_equivalent(a, b, margin=0.01).detail)
    A−B = +0.0025 [90% CI -0.0014, +0.0064], n=4 paired; claim |A−B| < 0.01: supported (p = 0.01)

  References:
    Schuirmann (1987); Lakens (2017).
  """
  alpha = check_alpha(alpha)
  margin = check_margin("margin", margin, positive=True)
  sample = two_arm_sample(a, b, paired)
  label = _label(b, names)
  return _decision("equivalent", sample, label, alpha, margin, (-margin, margin), float(power_at))


def decide_slope(
  x: Sequence[float],
  y: Sequence[float],
  *,
  low: float,
  high: float,
  alpha: float = 0.05,
  groups: Sequence[Any] | None = None,
  power_at: float | None = None,
) -> Decision:
  """Verdict on "the slope of y on x lies in [low, high]".

  With `groups` (e.g. the seed of each point): one OLS slope per group, and the t interval over
  the per-group slopes (n = groups, n − 1 dof; a paired design, since each group spans the same
  x). A group with a non-finite x or y is dropped whole (its x design would differ). Without
  groups: one OLS slope b = Sxy/Sxx with se = √(SSR/(n−2)/Sxx) and n − 2 dof; non-finite points
  are dropped. Supported when the (1−2α) interval lies inside (low, high); not supported when it
  does not meet [low, high]; inconclusive otherwise. ``n_needed`` counts groups (grouped) or
  points at the same spread of x (ungrouped).

  Args:
    x: the regressor, one value per point.
    y: the response, one value per point.
    low: lower end of the claimed range (finite).
    high: upper end of the claimed range (finite, > low).
    alpha: level of each one-sided test, in (0, 0.5).
    groups: optional group label per point (one slope per group).
    power_at: true slope at which `Decision.power` is computed; default (low + high) / 2.

  Returns:
    The `Decision` (`effect` is the slope; `margin` is (high − low) / 2).

  Example:
    >>> from wd_jax.study import stats
    >>> x = [0.0, 1.0, 2.0] * 3
    >>> y = [0.0, 1.0, 2.1, 0.1, 1.0, 2.0, 0.0, 1.1, 2.0]
    >>> groups = [0, 0, 0, 1, 1, 1, 2, 2, 2]  # three seeds, three x each
    >>> d = stats.decide_slope(x, y, low=0.9, high=1.1, groups=groups)
    >>> print(d.detail)  # doctest: +NORMALIZE_WHITESPACE
    slope = +1 [90% CI +0.916, +1.08], 3 groups (per-group OLS); claim slope in [0.9, 1.1]:
    supported (p = 0.037)

  References:
    Student (1908); Schuirmann (1987) for the two one-sided tests.
  """
  alpha = check_alpha(alpha)
  low, high = check_range(low, high)
  sample = slope_sample(x, y, groups)
  power_at = float((low + high) / 2 if power_at is None else power_at)
  return _decision("slope_within", sample, "slope", alpha, (high - low) / 2, (low, high), power_at)


def decide(claim: Mapping[str, Any], values: Mapping[str, Any]) -> Decision:
  """The verdict on a declared claim: dispatch to `decide_greater`, ..., `decide_slope`.

  Args:
    claim: the pre-registered claim: ``comparison`` ("greater" | "less" | "equivalent" |
      "slope_within"), ``alpha`` (0.05), ``margin`` (greater/less: default 0; equivalent:
      required), ``paired`` (True), ``low``/``high`` (slope_within, required), optional
      ``power_at`` and ``names``. Other keys (the metric, the statement, the source) belong to
      the study and are ignored; a statistics key of another comparison (e.g. ``low`` on a
      greater claim) is an error.
    values: ``a`` and optionally ``b`` (sequences, one value per seed), or ``x``, ``y`` and
      optionally ``groups`` for slope_within.

  Returns:
    The `Decision`.

  Raises:
    ValueError: unknown comparison, a missing key, or a key that does not apply (named).

  Example:
    >>> from wd_jax.study import stats
    >>> claim = {"comparison": "less", "margin": 0.0, "alpha": 0.05, "metric": "test_loss"}
    >>> stats.decide(claim, {"a": [1.2, 1.1, 1.3], "b": [1.5, 1.4, 1.5]}).verdict
    'supported'

  References:
    Those of `decide_greater`, `decide_less`, `decide_equivalent` and `decide_slope`.
  """
  if hasattr(claim, "to_dict"):  # an ml_collections.ConfigDict
    claim = claim.to_dict()
  comparison = check_claim_keys(claim, values)
  alpha = claim.get("alpha", 0.05)
  power_at = claim.get("power_at")
  if comparison == "slope_within":
    return _decide_declared_slope(claim, values, alpha, power_at)
  if "a" not in values:
    raise ValueError(f"values for a {comparison!r} claim need the key 'a'.")
  names = tuple(claim.get("names", ("A", "B")))
  common = dict(alpha=alpha, paired=claim.get("paired", True), names=names)
  if comparison == "equivalent":
    if "margin" not in claim:
      raise ValueError("an equivalent claim needs the key 'margin' (the equivalence margin δ > 0).")
    if power_at is not None:
      common["power_at"] = power_at
    return decide_equivalent(values["a"], values.get("b"), margin=claim["margin"], **common)
  fn = decide_greater if comparison == "greater" else decide_less
  return fn(
    values["a"], values.get("b"), margin=claim.get("margin", 0.0), power_at=power_at, **common
  )


def _decide_declared_slope(
  claim: Mapping[str, Any], values: Mapping[str, Any], alpha: float, power_at: Any
) -> Decision:
  """`decide_slope` on a declared slope_within claim, its required keys checked."""
  for key in ("low", "high"):
    if key not in claim:
      raise ValueError(f"a slope_within claim needs the key {key!r}.")
  for key in ("x", "y"):
    if key not in values:
      raise ValueError(f"values for a slope_within claim need the key {key!r}.")
  return decide_slope(
    values["x"],
    values["y"],
    low=claim["low"],
    high=claim["high"],
    alpha=alpha,
    groups=values.get("groups"),
    power_at=power_at,
  )


def multiple_claims_note(
  decisions: Sequence[Decision] | Mapping[str, Decision], alpha: float = 0.05
) -> str:
  """One sentence for a summary: how many claims were tested, and which survive Holm.

  Each claim is tested at α on its own; over k claims some "supported" verdicts may be chance.
  Holm's correction at family-wise level α, over the p-values of all k claims' own tests, says
  which "supported" verdicts survive. "Not supported" and "inconclusive" verdicts are counted
  in k but not re-judged.

  Args:
    decisions: the study's decisions, in order (claims are numbered from 1), or by label.
    alpha: the family-wise level.

  Returns:
    The note.

  Example:
    >>> from wd_jax.study import stats
    >>> ds = {
    ...   "faster": stats.decide_greater([0.3, 0.35, 0.32]),  # p = 0.001
    ...   "flatter": stats.decide_less([0.1, 0.12, 0.11], [0.12, 0.15, 0.13]),  # p = 0.0099
    ...   "cheaper": stats.decide_greater([0.05, 0.03, 0.04]),  # p = 0.011
    ... }
    >>> print(stats.multiple_claims_note(ds, 0.05))  # doctest: +NORMALIZE_WHITESPACE
    3 claims tested at α = 0.05 each; Holm–Bonferroni (family-wise α = 0.05): 3 of 3 supported
    verdicts survive (faster, flatter, cheaper).

  References:
    Holm (1979), A simple sequentially rejective multiple test procedure.
  """
  items = (
    list(decisions.items()) if isinstance(decisions, Mapping) else list(enumerate(decisions, 1))
  )
  if not items:
    return "No claims tested."
  labels = [str(k) for k, _ in items]
  adjusted, rejected = holm([d.p_value for _, d in items], alpha)
  supported = [i for i, (_, d) in enumerate(items) if d.verdict == SUPPORTED]
  kept = [labels[i] for i in supported if rejected[i]]
  lost = [f"{labels[i]}: adjusted p = {adjusted[i]:.2g}" for i in supported if not rejected[i]]
  note = (
    f"{len(items)} claim{'s' if len(items) != 1 else ''} tested at α = {alpha:g} each; "
    f"Holm–Bonferroni (family-wise α = {alpha:g}): {len(kept)} of {len(supported)} supported "
    f"verdicts survive"
  )
  if kept:
    note += f" ({', '.join(kept)})"
  if lost:
    note += f"; not surviving: {'; '.join(lost)}"
  return note + "."
