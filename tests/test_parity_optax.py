"""Parity with optax's own recipes, and with REFERENCES §1's update rules written out in numpy.

Everything runs in float64 on one small problem: a 2-layer tanh MLP trained on a fixed
stream of random mini-batches. Each optimizer computes its gradient from its own
current parameters, so whole trajectories are compared. The numpy references compute
the gradient by hand (backprop written out below) and the optimizer step by hand.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from problems import teacher_loss, teacher_problem
from problems import train_teacher as _train

import wd_jax

STEPS = 120  # optax-vs-wd_jax runs
REF_STEPS = 60  # runs against the numpy formulas
WARMUP = 10
BATCH = 32
PEAK = 1e-2
B1, B2, EPS = 0.9, 0.99, 1e-8  # b2 is not optax's default, so a dropped argument shows
MIN_EFFECT = 1e-3  # the decay must move θ by at least this much (the tests are not vacuous)


def _schedule(peak=PEAK, steps=STEPS):
  return optax.warmup_cosine_decay_schedule(
    init_value=0.0, peak_value=peak, warmup_steps=WARMUP, decay_steps=steps, end_value=peak / 100
  )


def _lr(kind, peak=PEAK, steps=STEPS):
  """The learning rate of each kind: a float, or the same optax warmup + cosine schedule.

  ``"warmup_cosine"`` is the schedule as optax calls it, at an int32 step count: it
  returns float32 even under x64, and XLA evaluates its cosine differently inside and
  outside `jit` (up to ~4e-7 relative in the tail), so a numpy reference cannot see
  the same α_t to the last bit. ``"warmup_cosine_f64"`` evaluates the same schedule at
  a float64 count: float64 values, equal inside and outside `jit` to ~1e-18, which is
  what the tight (1e-8) comparisons against the numpy formulas need.
  """
  if kind == "constant":
    return peak
  schedule = _schedule(peak, steps)
  if kind == "warmup_cosine":
    return schedule
  assert kind == "warmup_cosine_f64", kind
  return lambda count: schedule(jnp.asarray(count, jnp.float64))


def _alphas(lr, steps):
  """α_t for t = 0..steps-1: the same schedule called, eagerly, at the int32 counts optax uses."""
  if not callable(lr):
    return np.full(steps, lr)
  return np.array([float(lr(np.int32(t))) for t in range(steps)])


def _problem(seed=0, steps=STEPS):
  return teacher_problem(seed, steps, BATCH)


_loss_jax = teacher_loss


def _grad_np(p, x, y):
  """∇ of `_loss_jax` by hand."""
  h = np.tanh(x @ p["w1"] + p["b1"])
  d_out = (h @ p["w2"] + p["b2"] - y) / x.shape[0]
  d_z = (d_out @ p["w2"].T) * (1 - h**2)
  return {"w1": x.T @ d_z, "b1": d_z.sum(0), "w2": h.T @ d_out, "b2": d_out.sum(0)}


_MEMO = {}


def _memo(key, fn):
  """`fn()` computed once per `key` (reference runs shared by several parametrized tests)."""
  if key not in _MEMO:
    _MEMO[key] = fn()
  return _MEMO[key]


def _diffs(a, b):
  """(max |a − b|, max |a − b| / max(|b|, 1e-3)) over all leaves."""
  abs_d = max(float(np.max(np.abs(a[k] - b[k]))) for k in b)
  rel_d = max(float(np.max(np.abs(a[k] - b[k]) / np.maximum(np.abs(b[k]), 1e-3))) for k in b)
  return abs_d, rel_d


def _assert_close(ours, ref, *, rtol, atol):
  abs_d, rel_d = _diffs(ours, ref)
  print(f"max abs diff {abs_d:.3e}, max rel diff {rel_d:.3e}")
  chex.assert_trees_all_close(ours, ref, rtol=rtol, atol=atol)


def _moved(a, b):
  return max(float(np.max(np.abs(a[k] - b[k]))) for k in b)


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


def test_numpy_gradient_matches_jax():
  params, xs, ys = _problem()
  g = jax.grad(_loss_jax)(jax.tree.map(jnp.asarray, params), xs[0], ys[0])
  chex.assert_trees_all_close(
    jax.tree.map(np.asarray, g), _grad_np(params, xs[0], ys[0]), atol=1e-14
  )


# ---------------------------------------------------------------------------------------------
# wd_jax recipes == optax recipes (they differ only in float64 rounding).

OPTAX_RTOL, OPTAX_ATOL = 1e-10, 1e-12


def _optax_adamw(lr, wd, mask=None):
  return optax.adamw(lr, b1=B1, b2=B2, eps=EPS, weight_decay=wd, mask=mask)


def _no_decay(lr, params, xs, ys, **momentum):
  """The λ = 0 run in numpy (Adam, or SGD given `momentum`): shows a test is not vacuous."""
  base = "sgdw" if momentum else "adamw"
  return _reference_decoupled(base, "lr", lr, 0.0, params, xs, ys, **momentum)


@pytest.mark.parametrize(
  ("lr_kind", "masked"),
  [
    ("constant", False),
    ("warmup_cosine_f64", False),
    ("warmup_cosine_f64", True),
    ("warmup_cosine", False),
    ("warmup_cosine", True),
  ],
  ids=lambda v: {False: "all", True: "default_mask"}.get(v, v),
)
def test_adamw_lr_matches_optax_adamw(lr_kind, masked):
  params, xs, ys = _problem()
  lr, wd = _lr(lr_kind), 0.1
  mask = wd_jax.default_mask if masked else None
  ours = _train(
    wd_jax.adamw(lr, weight_decay=wd, b1=B1, b2=B2, eps=EPS, coupling="lr", mask=mask),
    params,
    xs,
    ys,
  )
  theirs = _memo(
    ("optax.adamw", lr_kind, masked),
    lambda: _train(_optax_adamw(lr, wd, mask), params, xs, ys),
  )
  _assert_close(ours, theirs, rtol=OPTAX_RTOL, atol=OPTAX_ATOL)
  assert _moved(ours, _no_decay(lr, params, xs, ys)) > MIN_EFFECT
  if masked:  # the mask mattered: decaying the biases too gives other biases
    unmasked = _memo(
      ("optax.adamw", lr_kind, False), lambda: _train(_optax_adamw(lr, wd), params, xs, ys)
    )
    bias_moved = max(float(np.max(np.abs(ours[k] - unmasked[k]))) for k in ("b1", "b2"))
    assert bias_moved > MIN_EFFECT


ADAM_L2_VARIANTS = {
  "adam_l2": lambda lr, wd, mask: wd_jax.adam_l2(lr, wd, b1=B1, b2=B2, eps=EPS, mask=mask),
  "adam_l2_tracked": lambda lr, wd, mask: wd_jax.adam_l2(
    lr, wd, b1=B1, b2=B2, eps=EPS, mask=mask, track_moments=True
  ),
  "scale_by_adam_l2": lambda lr, wd, mask: optax.chain(
    wd_jax.scale_by_adam_l2(wd, b1=B1, b2=B2, eps=EPS, mask=mask),
    optax.scale_by_learning_rate(lr),
  ),
  "scale_by_adam_l2_tracked": lambda lr, wd, mask: optax.chain(
    wd_jax.scale_by_adam_l2(wd, b1=B1, b2=B2, eps=EPS, mask=mask, track_moments=True),
    optax.scale_by_learning_rate(lr),
  ),
}


def _optax_adam_l2(lr, wd, mask):
  return optax.chain(
    optax.add_decayed_weights(wd, mask=mask),
    optax.scale_by_adam(b1=B1, b2=B2, eps=EPS),
    optax.scale_by_learning_rate(lr),
  )


@pytest.mark.parametrize("masked", [False, True], ids=["all", "default_mask"])
@pytest.mark.parametrize("variant", list(ADAM_L2_VARIANTS))
def test_adam_l2_matches_optax_chain(variant, masked):
  params, xs, ys = _problem()
  lr_kind = "warmup_cosine"  # the int32-count schedule, as optax calls it
  lr, wd = _lr(lr_kind), 0.1
  mask = wd_jax.default_mask if masked else None
  ours = _train(ADAM_L2_VARIANTS[variant](lr, wd, mask), params, xs, ys)
  theirs = _memo(
    ("optax adam l2", lr_kind, masked),
    lambda: _train(_optax_adam_l2(lr, wd, mask), params, xs, ys),
  )
  _assert_close(ours, theirs, rtol=OPTAX_RTOL, atol=OPTAX_ATOL)
  assert _moved(ours, _no_decay(lr, params, xs, ys)) > MIN_EFFECT


@pytest.mark.parametrize(
  ("momentum", "nesterov"),
  [(0.0, False), (0.9, False), (0.9, True)],
  ids=["plain", "heavy_ball", "nesterov"],
)
def test_sgd_l2_matches_optax_chain(momentum, nesterov):
  params, xs, ys = _problem()
  lr, wd = _schedule(peak=5e-2), 0.1

  def optax_sgd_l2(wd):
    return optax.chain(
      optax.add_decayed_weights(wd), optax.sgd(lr, momentum=momentum or None, nesterov=nesterov)
    )

  ours = _train(wd_jax.sgd_l2(lr, wd, momentum=momentum, nesterov=nesterov), params, xs, ys)
  _assert_close(ours, _train(optax_sgd_l2(wd), params, xs, ys), rtol=OPTAX_RTOL, atol=OPTAX_ATOL)
  no_decay = _no_decay(lr, params, xs, ys, momentum=momentum, nesterov=nesterov)
  assert _moved(ours, no_decay) > MIN_EFFECT


# ---------------------------------------------------------------------------------------------
# wd_jax == REFERENCES §1 written out in numpy (gradient and step by hand).

REF_RTOL, REF_ATOL = 1e-8, 1e-10
REF_LR_KINDS = ["constant", "warmup_cosine_f64"]  # see `_lr` for why not the int32 schedule


class _NumpyAdam:
  """Adam's direction m̂/(√v̂ + ε) by hand, on dicts of numpy arrays."""

  def __init__(self, params):
    self.m = {k: np.zeros_like(v) for k, v in params.items()}
    self.v = {k: np.zeros_like(v) for k, v in params.items()}
    self.t = 0

  def direction(self, g):
    self.t += 1
    out = {}
    for k in g:
      self.m[k] = B1 * self.m[k] + (1 - B1) * g[k]
      self.v[k] = B2 * self.v[k] + (1 - B2) * g[k] ** 2
      out[k] = self.m[k] / (1 - B1**self.t) / (np.sqrt(self.v[k] / (1 - B2**self.t)) + EPS)
    return out

  def v_hat(self):
    return {k: v / (1 - B2**self.t) for k, v in self.v.items()}


class _NumpyMomentum:
  """Buffer b ← μ b + g with b_0 = 0; direction b, or g + μ b with Nesterov (torch SGD)."""

  def __init__(self, params, momentum=0.9, nesterov=False):
    self.b = {k: np.zeros_like(v) for k, v in params.items()}
    self.mu, self.nesterov = momentum, nesterov

  def direction(self, g):
    self.b = {k: self.mu * self.b[k] + g[k] for k in g}
    if self.nesterov:
      return {k: g[k] + self.mu * self.b[k] for k in g}
    return self.b


def _decay_factor(coupling, alpha, peak):
  """c_t of REFERENCES §1; "schedule" is Composer's decay_factor = lr_t / lr_0, lr_0 the peak."""
  if coupling == "lr":
    return alpha
  if coupling == "schedule":
    return alpha / peak
  if coupling == "constant":
    return 1.0
  assert coupling == "corrected", coupling
  return alpha**2 / peak


def _reference_decoupled(base, coupling, lr, wd, params, xs, ys, **momentum):
  """θ ← θ − c_t λ θ − α_t d_t, d_t the Adam direction ("adamw") or momentum buffer ("sgdw")."""
  peak = PEAK if callable(lr) else lr
  p = {k: v.copy() for k, v in params.items()}
  inner = _NumpyAdam(p) if base == "adamw" else _NumpyMomentum(p, **momentum)
  for alpha, x, y in zip(_alphas(lr, len(xs)), xs, ys):
    d = inner.direction(_grad_np(p, x, y))
    c = _decay_factor(coupling, alpha, peak)
    p = {k: p[k] - c * wd * p[k] - alpha * d[k] for k in p}
  return p


# λ per coupling, so that c_t·λ (the fraction of θ removed per step) is ~1e-3 at the peak.
COUPLING_WD = {"lr": 0.1, "schedule": 1e-3, "constant": 1e-3, "corrected": 0.1}


@pytest.mark.parametrize(
  ("base", "lr_kind"),
  [("adamw", "warmup_cosine_f64"), ("adamw", "constant"), ("sgdw", "warmup_cosine_f64")],
)
@pytest.mark.parametrize("coupling", wd_jax.COUPLINGS)
def test_decoupled_coupling_matches_formula(base, coupling, lr_kind):
  params, xs, ys = _problem(steps=REF_STEPS)
  lr, wd = _lr(lr_kind, steps=REF_STEPS), COUPLING_WD[coupling]
  # peak_learning_rate is required with a schedule; with a float lr it defaults to the lr.
  kw = {"coupling": coupling, "peak_learning_rate": PEAK if callable(lr) else None}
  if base == "adamw":
    opt = wd_jax.adamw(lr, weight_decay=wd, b1=B1, b2=B2, eps=EPS, **kw)
  else:
    opt = wd_jax.sgdw(lr, wd, momentum=0.9, **kw)
  ours = _train(opt, params, xs, ys)
  ref = _reference_decoupled(base, coupling, lr, wd, params, xs, ys)
  _assert_close(ours, ref, rtol=REF_RTOL, atol=REF_ATOL)
  assert _moved(ref, _reference_decoupled(base, coupling, lr, 0.0, params, xs, ys)) > MIN_EFFECT


def _reference_swd(lr, wd, params, xs, ys, mask=None):
  """SWD: θ ← θ (1 − λ m α_t / √v̄) − α_t m̂/(√v̂ + ε), v̄ the mean of v̂ over all elements."""
  mults = {k: 1.0 for k in params} if mask is None else {k: float(v) for k, v in mask.items()}
  p = {k: v.copy() for k, v in params.items()}
  adam = _NumpyAdam(p)
  for alpha, x, y in zip(_alphas(lr, len(xs)), xs, ys):
    d = adam.direction(_grad_np(p, x, y))
    v_hat = adam.v_hat()
    v_bar = sum(v.sum() for v in v_hat.values()) / sum(v.size for v in v_hat.values())
    p = {k: p[k] * (1 - wd * mults[k] * alpha / np.sqrt(v_bar)) - alpha * d[k] for k in p}
  return p


@pytest.mark.parametrize("masked", [False, True], ids=["all", "default_mask"])
@pytest.mark.parametrize("lr_kind", REF_LR_KINDS)
def test_adams_matches_swd_formula(lr_kind, masked):
  params, xs, ys = _problem(steps=REF_STEPS)
  lr, wd = _lr(lr_kind, steps=REF_STEPS), 1e-3
  mask = wd_jax.default_mask if masked else None
  ours = _train(wd_jax.adams(lr, wd, b1=B1, b2=B2, eps=EPS, mask=mask), params, xs, ys)
  # With the mask, v̄ still averages v̂ over *all* elements; only the decay is masked.
  ref_mask = wd_jax.default_mask(params) if masked else None
  ref = _reference_swd(lr, wd, params, xs, ys, ref_mask)
  _assert_close(ours, ref, rtol=REF_RTOL, atol=REF_ATOL)
  assert _moved(ref, _reference_swd(lr, 0.0, params, xs, ys)) > MIN_EFFECT


def _reference_ista(lr, wd, params, xs, ys):
  """Proximal gradient (ISTA): z = θ − α_t g; θ ← sign(z)·max(|z| − α_t λ, 0)."""
  p = {k: v.copy() for k, v in params.items()}
  for alpha, x, y in zip(_alphas(lr, len(xs)), xs, ys):
    g = _grad_np(p, x, y)
    z = {k: p[k] - alpha * g[k] for k in p}
    p = {k: np.sign(z[k]) * np.maximum(np.abs(z[k]) - alpha * wd, 0.0) for k in p}
  return p


@pytest.mark.parametrize("lr_kind", REF_LR_KINDS)
def test_prox_l1_after_sgd_matches_ista(lr_kind):
  params, xs, ys = _problem(steps=REF_STEPS)
  lr, wd = _lr(lr_kind, peak=0.1, steps=REF_STEPS), 0.05
  opt = optax.chain(optax.sgd(lr), wd_jax.prox_l1(wd, learning_rate=lr))
  ours = _train(opt, params, xs, ys)
  ref = _reference_ista(lr, wd, params, xs, ys)
  _assert_close(ours, ref, rtol=REF_RTOL, atol=REF_ATOL)
  zeros = {k: int(np.sum(v == 0.0)) for k, v in ours.items()}
  print(f"exact zeros: {zeros}")
  assert sum(zeros.values()) > 0  # the threshold put weights on exactly 0 ...
  for k in ours:  # ... the same weights as the numpy ISTA
    np.testing.assert_array_equal(ours[k] == 0.0, ref[k] == 0.0)


# ---------------------------------------------------------------------------------------------
# Regression: optax schedules return float32 at an int32 count even under x64. The same
# optimizer fed the same α_t values, once as float32 and once upcast to float64, must agree to
# float64 rounding (as optax.adamw does, bit for bit): c_t·λ must not be rounded to float32.

PRECISION_CASES = {
  "adamw_lr": lambda lr, wd: wd_jax.adamw(lr, weight_decay=wd, b1=B1, b2=B2, eps=EPS),
  "sgdw_corrected": lambda lr, wd: wd_jax.sgdw(
    lr, wd, momentum=0.9, coupling="corrected", peak_learning_rate=PEAK
  ),
  "prox_l1": lambda lr, wd: optax.chain(optax.sgd(lr), wd_jax.prox_l1(wd, learning_rate=lr)),
}


@pytest.mark.parametrize("case", list(PRECISION_CASES))
def test_float32_schedule_keeps_float64_decay(case):
  params, xs, ys = _problem(steps=REF_STEPS)
  lr, wd = _schedule(steps=REF_STEPS), 0.1
  lr_f64 = lambda count: lr(count).astype(jnp.float64)  # the very same α_t values
  a = _train(PRECISION_CASES[case](lr, wd), params, xs, ys)
  b = _train(PRECISION_CASES[case](lr_f64, wd), params, xs, ys)
  _assert_close(a, b, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# Every recipe against optax's own implementation, at its native decay placement: 120 steps of
# warmup + cosine in float64 with a mask (biases not decayed), max |Δθ| ≤ 1e-10, and the decay
# must move θ by more than MIN_EFFECT (against the same recipe with λ = 0) so that no parity
# holds vacuously. optax applies the decay inside its chain (before scale_by_learning_rate or
# the trust ratio, at y for schedule-free); wd_jax wraps the complete optimizer.

RECIPE_ATOL = 1e-10

RECIPE_CASES = {
  # name: (wd_jax recipe (lr, λ, mask), optax reference (lr, λ, mask), peak lr, λ)
  "lion": (
    lambda lr, wd, m: wd_jax.lion(lr, weight_decay=wd, b1=0.9, b2=0.98, mask=m),
    lambda lr, wd, m: optax.lion(lr, b1=0.9, b2=0.98, weight_decay=wd, mask=m),
    1e-3,
    1.0,
  ),
  "nadamw": (
    lambda lr, wd, m: wd_jax.nadamw(lr, weight_decay=wd, b1=B1, b2=B2, eps=EPS, mask=m),
    lambda lr, wd, m: optax.nadamw(lr, b1=B1, b2=B2, eps=EPS, weight_decay=wd, mask=m),
    PEAK,
    0.1,
  ),
  "adamw_amsgrad": (
    lambda lr, wd, m: wd_jax.adamw(
      lr, weight_decay=wd, b1=B1, b2=B2, eps=EPS, amsgrad=True, mask=m
    ),
    lambda lr, wd, m: optax.chain(
      optax.scale_by_amsgrad(b1=B1, b2=B2, eps=EPS),
      optax.add_decayed_weights(wd, m),
      optax.scale_by_learning_rate(lr),
    ),
    PEAK,
    0.1,
  ),
  "adan": (
    lambda lr, wd, m: wd_jax.adan(lr, weight_decay=wd, mask=m),
    lambda lr, wd, m: optax.adan(lr, weight_decay=wd, mask=m),
    PEAK,
    0.1,
  ),
  "lamb": (
    lambda lr, wd, m: wd_jax.lamb(lr, weight_decay=wd, mask=m),
    lambda lr, wd, m: optax.lamb(lr, weight_decay=wd, mask=m),
    PEAK,
    0.1,
  ),
  "lamb_decay_after_trust_ratio": (
    lambda lr, wd, m: wd_jax.lamb(lr, weight_decay=wd, decay_in_trust_ratio=False, mask=m),
    lambda lr, wd, m: optax.chain(
      optax.scale_by_adam(eps=1e-6),
      optax.scale_by_trust_ratio(),
      optax.add_decayed_weights(wd, m),
      optax.scale_by_learning_rate(lr),
    ),
    PEAK,
    0.1,
  ),
  "muon": (
    lambda lr, wd, m: wd_jax.muon(lr, weight_decay=wd, weight_decay_mask=m),
    lambda lr, wd, m: optax.contrib.muon(lr, weight_decay=wd, weight_decay_mask=m),
    2e-2,
    0.1,
  ),
  "schedule_free_adamw": (
    lambda lr, wd, m: wd_jax.schedule_free_adamw(
      lr, weight_decay=wd, b1=B1, b2=B2, eps=EPS, mask=m
    ),
    lambda lr, wd, m: optax.contrib.schedule_free(
      optax.chain(
        optax.scale_by_rms(decay=B2, eps=EPS, eps_in_sqrt=False, bias_correction=True),
        optax.add_decayed_weights(wd, m),
        optax.scale_by_learning_rate(lr),
      ),
      learning_rate=lr,
      b1=B1,
    ),
    PEAK,
    0.1,
  ),
}
# The optax-side mask: muon's decay lives in the Muon branch of a partition, which sees only
# the matrices (contrib.muon's adam_weight_decay is 0); every other reference takes the
# default mask as a tree of bools.
_OPTAX_MASK = {"muon": lambda p: jax.tree.map(lambda x: x.shape == (8, 16), p)}
_WD_JAX_MASK = {"muon": lambda p: {k: k == "w1" for k in p}}


def _recipe_run(name, wd, masked, params, xs, ys, side):
  make_ours, make_ref, peak, _ = RECIPE_CASES[name]
  lr = _lr("warmup_cosine", peak=peak)
  if side == "wd_jax":
    mask = _WD_JAX_MASK.get(name, wd_jax.default_mask) if masked else None
    return _train(make_ours(lr, wd, mask), params, xs, ys)
  mask = _OPTAX_MASK.get(name, wd_jax.default_mask) if masked else None
  return _train(make_ref(lr, wd, mask), params, xs, ys)


@pytest.mark.parametrize("name", list(RECIPE_CASES))
def test_recipe_matches_optax(name):
  params, xs, ys = _problem()
  wd = RECIPE_CASES[name][3]
  ours = _recipe_run(name, wd, True, params, xs, ys, "wd_jax")
  theirs = _recipe_run(name, wd, True, params, xs, ys, "optax")
  diff = _diffs(ours, theirs)[0]
  print(f"{name}: max |wd_jax - optax| = {diff:.3e} after {STEPS} steps")
  assert diff <= RECIPE_ATOL
  no_decay = _recipe_run(name, 0.0, True, params, xs, ys, "wd_jax")
  assert _moved(ours, no_decay) > MIN_EFFECT  # the decay acted ...
  masked_leaves = ("b1", "b2", "w2") if name == "muon" else ("b1", "b2")
  if name != "muon":  # ... and the mask mattered (contrib.muon's Adam leaves never decay)
    unmasked = _recipe_run(name, wd, False, params, xs, ys, "wd_jax")
    assert (
      _moved({k: ours[k] for k in masked_leaves}, {k: unmasked[k] for k in masked_leaves})
      > MIN_EFFECT
    )
  else:
    matrices = _recipe_run(name, wd, False, params, xs, ys, "wd_jax")
    assert _moved({"w2": ours["w2"]}, {"w2": matrices["w2"]}) > MIN_EFFECT


def test_schedule_free_adamw_matches_optax_alias():
  """The unmasked recipe against ``optax.contrib.schedule_free_adamw`` itself (decay at y)."""
  params, xs, ys = _problem()
  lr, wd = _lr("warmup_cosine"), 0.1
  ours = _train(
    wd_jax.schedule_free_adamw(lr, weight_decay=wd, b1=B1, b2=B2, eps=EPS), params, xs, ys
  )
  theirs = _train(
    optax.contrib.schedule_free_adamw(lr, b1=B1, b2=B2, eps=EPS, weight_decay=wd), params, xs, ys
  )
  diff = _diffs(ours, theirs)[0]
  print(f"schedule_free_adamw (no mask): max |wd_jax - optax| = {diff:.3e}")
  assert diff <= RECIPE_ATOL
  no_decay = _train(
    wd_jax.schedule_free_adamw(lr, weight_decay=0.0, b1=B1, b2=B2, eps=EPS), params, xs, ys
  )
  assert _moved(ours, no_decay) > MIN_EFFECT


def test_muon_consistent_rms_matches_optax():
  params, xs, ys = _problem()
  lr, wd = _lr("warmup_cosine", peak=2e-2), 0.1
  ours = _train(wd_jax.muon(lr, weight_decay=wd, consistent_rms=0.2), params, xs, ys)
  theirs = _train(optax.contrib.muon(lr, weight_decay=wd, consistent_rms=0.2), params, xs, ys)
  diff = _diffs(ours, theirs)[0]
  print(f"muon consistent_rms=0.2: max |wd_jax - optax| = {diff:.3e}")
  assert diff <= RECIPE_ATOL
  assert (
    _moved(ours, _train(wd_jax.muon(lr, weight_decay=0.0, consistent_rms=0.2), params, xs, ys))
    > MIN_EFFECT
  )


@pytest.mark.parametrize("min_dim", [4, 128], ids=["factored", "unfactored"])
def test_adafactor_matches_optax(min_dim):
  """The default convention is optax.adafactor's own chain, decay included (λ multiplied by
  nothing), so the parity is float64 rounding."""
  params, xs, ys = _problem()
  lr, wd = _lr("warmup_cosine"), 1e-3

  def ours(wd, mask=wd_jax.default_mask):
    opt = wd_jax.adafactor(lr, min_dim, weight_decay_rate=wd, weight_decay_mask=mask)
    return _train(opt, params, xs, ys)

  mine = ours(wd)
  theirs = _train(
    optax.adafactor(lr, min_dim, weight_decay_rate=wd, weight_decay_mask=wd_jax.default_mask),
    params,
    xs,
    ys,
  )
  diff = _diffs(mine, theirs)[0]
  print(f"adafactor (min_dim_size_to_factor={min_dim}): max |wd_jax - optax| = {diff:.3e}")
  assert diff <= RECIPE_ATOL
  assert _moved(mine, ours(0.0)) > MIN_EFFECT
  unmasked = ours(wd, None)
  biases = ("b1", "b2")
  assert _moved({k: mine[k] for k in biases}, {k: unmasked[k] for k in biases}) > MIN_EFFECT
