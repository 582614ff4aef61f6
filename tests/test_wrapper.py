"""The position-safe decay wrapper and the semantics built on it (float64).

The sign trap (decoupled decay placed in every position of a chain: it refuses, or it
decays, never grows), each recipe's decay step against its formula (coupling, cautious
weight decay, decay toward a reference point), the timescale and width rules, and
optax's conventions (inject_hyperparams, state counts and dtypes, map_params).
"""

import doctest
import importlib
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from problems import nested_params

import wd_jax

LR, WD = 0.1, 0.5


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


_params = nested_params


def _zeros(params):
  return jax.tree.map(jnp.zeros_like, params)


# ---------------------------------------------------------------------------------------------
# The sign trap.

ELEMENTS = {
  "clip": lambda: optax.clip_by_global_norm(1.0),
  "adam": lambda: optax.scale_by_adam(),
  "trust_ratio": lambda: optax.scale_by_trust_ratio(),
  "lr": lambda: optax.scale_by_learning_rate(LR),
}
ORDER = list(ELEMENTS)


def _decay():
  return wd_jax.decoupled_weight_decay(WD, learning_rate=LR)


def _chain_with_decay_at(i):
  elems = [ELEMENTS[n]() for n in ORDER]
  return optax.chain(*elems[:i], _decay(), *elems[i:])


PLACEMENTS = {
  **{
    f"before_{ORDER[i]}" if i < len(ORDER) else "last": (lambda i=i: _chain_with_decay_at(i))
    for i in range(len(ORDER) + 1)
  },
  "alone": _decay,
  "nested_before_lr": lambda: optax.chain(
    optax.chain(optax.scale_by_adam(), _decay()), optax.scale_by_learning_rate(LR)
  ),
  "nested_after_lr": lambda: optax.chain(
    optax.scale_by_adam(), optax.chain(optax.scale_by_learning_rate(LR), _decay())
  ),
  "masked": lambda: optax.chain(
    optax.scale_by_adam(),
    optax.masked(_decay(), wd_jax.default_mask),
    optax.scale_by_learning_rate(LR),
  ),
  "injected": lambda: optax.chain(
    optax.scale_by_adam(),
    optax.inject_hyperparams(wd_jax.decoupled_weight_decay)(weight_decay=WD, learning_rate=LR),
    optax.scale_by_learning_rate(LR),
  ),
  "multi_steps": lambda: optax.MultiSteps(
    optax.chain(optax.scale_by_adam(), _decay(), optax.scale_by_learning_rate(LR)), 2
  ),
  "apply_if_finite": lambda: optax.apply_if_finite(
    optax.chain(optax.scale_by_trust_ratio(), _decay(), optax.sgd(LR)), 3
  ),
}


@pytest.mark.parametrize("placement", list(PLACEMENTS))
def test_decoupled_weight_decay_refuses_every_chain_position(placement):
  opt = PLACEMENTS[placement]()
  with pytest.raises(ValueError, match=r"not a chain element.*with_weight_decay"):
    opt.init(_params())


# Complete optimizers built from the same pieces, each wrapped in every way the API allows.
COMPLETE = {
  "sgd": lambda: optax.sgd(LR),
  "sgd_momentum": lambda: optax.sgd(LR, momentum=0.9, nesterov=True),
  "clip_adam_lr": lambda: optax.chain(
    optax.clip_by_global_norm(1.0), optax.scale_by_adam(), optax.scale_by_learning_rate(LR)
  ),
  "adam_trust_ratio_lr": lambda: optax.chain(
    optax.scale_by_adam(), optax.scale_by_trust_ratio(), optax.scale_by_learning_rate(LR)
  ),
  "nested": lambda: optax.chain(
    optax.chain(optax.clip(1.0), optax.scale_by_adam()), optax.scale_by_learning_rate(LR)
  ),
  "lion": lambda: optax.lion(LR, weight_decay=0.0),
  "muon": lambda: optax.contrib.muon(LR),
}
WRAPS = {
  "with_weight_decay": lambda base: wd_jax.with_weight_decay(base, WD, learning_rate=LR),
  "decoupled_weight_decay_called": lambda base: _decay()(base),
  "inside_multi_steps": lambda base: optax.MultiSteps(
    wd_jax.with_weight_decay(base, WD, learning_rate=LR), 1
  ),
  "inside_apply_if_finite": lambda base: optax.apply_if_finite(
    wd_jax.with_weight_decay(base, WD, learning_rate=LR), 3
  ),
  "after_gradient_clip": lambda base: optax.chain(
    optax.clip_by_global_norm(1.0), wd_jax.with_weight_decay(base, WD, learning_rate=LR)
  ),
  "injected": lambda base: optax.inject_hyperparams(wd_jax.with_weight_decay)(
    base_optimizer=base, weight_decay=WD, learning_rate=LR
  ),
  "nested_wrappers": lambda base: wd_jax.with_weight_decay(
    wd_jax.with_weight_decay(base, WD / 2, learning_rate=LR),
    WD / 2,
    learning_rate=LR,
    allow_base_decay=True,  # the inner wrapper decays: two decays of λ/2, on purpose
  ),
}


# Every wrapping around one complete optimizer, and every complete optimizer in the plain wrapper.
WRAP_CASES = [("clip_adam_lr", w) for w in WRAPS] + [
  (b, "with_weight_decay") for b in COMPLETE if b != "clip_adam_lr"
]


@pytest.mark.parametrize(("base", "wrap"), WRAP_CASES)
def test_wrapped_complete_optimizer_decays_on_a_zero_gradient_step(base, wrap):
  opt, params = WRAPS[wrap](COMPLETE[base]()), _params()
  updates, _ = opt.update(_zeros(params), opt.init(params), params)
  new = optax.apply_updates(params, updates)
  shrink = 1 - LR * WD
  if wrap == "nested_wrappers":  # two decays of λ/2 on the same θ: 1 − 2·α·λ/2
    shrink = 1 - LR * WD
  chex.assert_trees_all_close(new, jax.tree.map(lambda p: shrink * p, params), atol=1e-15, rtol=0)
  for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(params)):
    assert np.all(np.abs(np.asarray(a)) < np.abs(np.asarray(b)))  # decays, never grows


def test_placed_like_add_decayed_weights_the_weights_would_grow():
  """What the refusal prevents: -αλθ added before the lr scaling comes out as +α²λθ."""
  naive = optax.chain(
    optax.scale_by_adam(),
    optax.add_decayed_weights(-LR * WD),  # decoupled decay's -c_t λ θ, as a chain element
    optax.scale_by_learning_rate(LR),
  )
  p = _params()
  new = optax.apply_updates(p, naive.update(_zeros(p), naive.init(p), p)[0])
  for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(p)):
    assert np.all(np.abs(np.asarray(a)) > np.abs(np.asarray(b)))


ALL_RECIPES = sorted(wd_jax.OPTIMIZERS)


# adam_l2 is left out: its λθ goes through Adam's normalisation, a ±α step that overshoots 0.
@pytest.mark.parametrize("name", [n for n in ALL_RECIPES if n != "adam_l2"])
def test_every_recipe_decays_on_a_zero_gradient_step(name):
  adam_leaves = {"adam_weight_decay": 0.5} if name == "muon" else {}  # optax's Muon: its λ
  opt = wd_jax.get_optimizer(name, learning_rate=0.01, weight_decay=0.5, **adam_leaves)
  p = _params()
  s, step = opt.init(p), jax.jit(opt.update)
  for _ in range(2):
    u, s = step(_zeros(p), s, p)
    new = optax.apply_updates(p, u)
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(p)):
      a, b = np.abs(np.asarray(a)), np.abs(np.asarray(b))
      assert np.all(a <= b)
      if name != "adams":  # SWD applies no decay while every gradient has been 0 (v̄ = 0)
        assert np.all(a < b)
    p = new


# ---------------------------------------------------------------------------------------------
# The decay step of each recipe against its formula, one step from a warmed-up state:
#   Δ = Δ_base − c_t · λ · m · a ⊙ (θ − θ₀),   a = 1[Δ_base ⊙ (θ − θ₀) ≤ 0] when cautious.
# Δ_base is the same recipe with λ = 0 from the same state.

# Evaluated at a float64 count: float64 values, the same inside and outside jit (an optax
# schedule at an int32 count is float32, and differs by an ulp between the two).
_SCHEDULE = optax.warmup_cosine_decay_schedule(0.0, 0.05, 3, 20, end_value=0.005)
SCHEDULE = lambda count: _SCHEDULE(jnp.asarray(count, jnp.float64))
PEAK = 0.05
DECOUPLED = {
  "adamw": lambda **kw: wd_jax.adamw(SCHEDULE, **kw),
  "nadamw": lambda **kw: wd_jax.nadamw(SCHEDULE, **kw),
  "sgdw": lambda **kw: wd_jax.sgdw(SCHEDULE, momentum=0.9, **kw),
  "lion": lambda **kw: wd_jax.lion(SCHEDULE, **kw),
  "adan": lambda **kw: wd_jax.adan(SCHEDULE, **kw),
  "muon": lambda **kw: _muon(**kw),
  "muon_torch": lambda **kw: _muon(convention="torch", eps=1e-7, **kw),
  "adafactor": lambda weight_decay, mask, **kw: wd_jax.adafactor(
    SCHEDULE, weight_decay_rate=weight_decay, weight_decay_mask=mask, **kw
  ),
  "lamb_after_trust_ratio": lambda **kw: wd_jax.lamb(SCHEDULE, decay_in_trust_ratio=False, **kw),
}
MASK = {"w1": 1.0, "b1": 0.0, "head": {"kernel": 0.5, "bias": 2.0}}
# Muon's mask is its matrices' (weight_decay_mask); its other leaves take adam_weight_decay.
MULTIPLIERS = {
  "muon": {"w1": 1.0, "b1": 1.0, "head": {"kernel": 0.5, "bias": 1.0}},
  "muon_torch": {"w1": 1.0, "b1": 1.0, "head": {"kernel": 0.5, "bias": 1.0}},
}


def _muon(weight_decay, mask, **kw):
  # An array 0 (not a host 0) for the λ = 0 base keeps the Adam leaves' wrapper: one state.
  return wd_jax.muon(
    SCHEDULE,
    weight_decay=weight_decay,
    adam_weight_decay=weight_decay or jnp.zeros([]),
    weight_decay_mask=mask,
    **kw,
  )


def _grads(t):
  return jax.tree.map(lambda x: 0.3 * x, _params(seed=10 + t))


def _one_step_against_formula(name, coupling, *, cautious=False, reference=None, lam=0.3):
  make = DECOUPLED[name]
  kw = {"coupling": coupling, "mask": MASK, "cautious": cautious, "reference": reference}
  if coupling in ("schedule", "corrected"):
    kw["peak_learning_rate"] = PEAK
  opt, base = make(weight_decay=lam, **kw), make(weight_decay=0.0, **kw)
  p0 = _params()
  p, s = p0, opt.init(p0)
  step = jax.jit(opt.update)
  for t in range(4):  # a few steps, so that α_t, the moments and θ − θ₀ are all non-trivial
    u, s = step(_grads(t), s, p)
    p = optax.apply_updates(p, u)
  count = 4
  got, _ = step(_grads(9), s, p)
  ref_base, _ = jax.jit(base.update)(_grads(9), s, p)
  c = float(wd_jax.decay_factor(coupling, SCHEDULE, PEAK, count, jnp.float64))
  ref0 = _params() if reference == "init" else jax.tree.map(jnp.zeros_like, p)
  mults = jax.tree.leaves(MULTIPLIERS.get(name, MASK))
  agreements = []
  for g, b, theta, r, m in zip(*(jax.tree.leaves(t) for t in (got, ref_base, p, ref0)), mults):
    d = theta - r
    a = (b * d <= 0) if cautious else jnp.ones_like(d, bool)
    agreements.append(np.asarray(a))
    np.testing.assert_allclose(g, b - c * lam * m * jnp.where(a, d, 0.0), rtol=0, atol=1e-15)
  moved = max(
    float(jnp.max(jnp.abs(g - b))) for g, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref_base))
  )
  assert moved > 1e-5  # the decay term is there
  return np.concatenate([a.ravel() for a, m in zip(agreements, mults) if m])


# Every coupling on AdamW, and each other recipe under one coupling (the wrapper's code is the
# same for all; what differs is the base step it follows), every coupling at least three times.
COUPLING_CASES = [("adamw", c) for c in wd_jax.COUPLINGS] + [
  (name, wd_jax.COUPLINGS[i % len(wd_jax.COUPLINGS)])
  for i, name in enumerate(n for n in DECOUPLED if n != "adamw")
]


@pytest.mark.parametrize(("name", "coupling"), COUPLING_CASES)
def test_decay_step_matches_formula(name, coupling):
  _one_step_against_formula(name, coupling)


@pytest.mark.parametrize("name", list(DECOUPLED))
def test_cautious_decay_step_matches_formula(name):
  agree = _one_step_against_formula(name, "lr", cautious=True)
  assert agree.any() and not agree.all()  # the indicator selected some coordinates, not all


@pytest.mark.parametrize("name", ["adamw", "lion", "muon_torch"])
def test_decay_toward_reference_matches_formula(name):
  agree = _one_step_against_formula(name, "schedule", reference="init", cautious=True)
  assert agree.any() and not agree.all()


def test_cautious_counts_a_zero_update_as_agreeing():
  # u ⊙ θ ≥ 0 holds where u = 0: a zero-gradient step decays every coordinate.
  opt = wd_jax.adamw(LR, weight_decay=WD, cautious=True)
  p = _params()
  new = optax.apply_updates(p, opt.update(_zeros(p), opt.init(p), p)[0])
  chex.assert_trees_all_close(new, jax.tree.map(lambda x: (1 - LR * WD) * x, p), atol=1e-15)


def test_cautious_schedule_free_decays_z_at_y():
  """Schedule-free: z's step is base − c_t λ 1[base ⊙ y ≤ 0] y (optax decays at y too)."""
  kw = {"mask": MASK, "cautious": True}
  opt = wd_jax.schedule_free_adamw(SCHEDULE, weight_decay=0.3, **kw)
  base = wd_jax.schedule_free_adamw(SCHEDULE, weight_decay=0.0, **kw)
  p, s = _params(), opt.init(_params())
  for t in range(4):
    u, s = opt.update(_grads(t), s, p)
    p = optax.apply_updates(p, u)
  _, s_dec = opt.update(_grads(9), s, p)
  _, s_base = base.update(_grads(9), s, p)
  c = float(SCHEDULE(4))
  step = jax.tree.map(jnp.subtract, s_base.z, s.z)  # the base's step of z
  for zd, zb, st, y, m in zip(
    *(jax.tree.leaves(t) for t in (s_dec.z, s_base.z, step, p)), jax.tree.leaves(MASK)
  ):
    np.testing.assert_allclose(zd, zb - c * 0.3 * m * jnp.where(st * y <= 0, y, 0.0), atol=1e-15)


def test_cautious_lamb_in_trust_ratio_matches_formula():
  """LAMB's native form: r = d + λ 1[d ⊙ θ ≥ 0] θ, then the per-leaf trust ratio ‖θ‖/‖r‖."""
  lam, p, g = 0.3, _params(), _grads(0)
  opt = wd_jax.lamb(LR, weight_decay=lam, cautious=True, mask=MASK)
  got, _ = opt.update(g, opt.init(p), p)
  for u, gl, theta, m in zip(*(jax.tree.leaves(t) for t in (got, g, p)), jax.tree.leaves(MASK)):
    d = gl / (jnp.abs(gl) + 1e-6)  # Adam's first step: m̂/(√v̂ + ε)
    r = d + lam * m * jnp.where(d * theta >= 0, theta, 0.0)
    ratio = jnp.linalg.norm(theta) / jnp.linalg.norm(r)
    np.testing.assert_allclose(u, -LR * ratio * r, rtol=1e-13)


def test_lamb_in_trust_ratio_allows_only_lr_coupling():
  with pytest.raises(ValueError, match=r"coupling must be 'lr'.*'schedule'"):
    wd_jax.lamb(LR, weight_decay=0.1, coupling="schedule", peak_learning_rate=LR)


# ---------------------------------------------------------------------------------------------
# Whole trajectories against the papers' update rules written out in numpy.


def _least_squares(seed=0):
  rng = np.random.default_rng(seed)
  a = {"w": rng.normal(size=(6, 5)), "v": rng.normal(size=(6, 1))}
  b = {"w": rng.normal(size=(6, 4)), "v": rng.normal(size=(6, 3))}
  theta0 = {"w": rng.normal(size=(5, 4)), "v": rng.normal(size=(1, 3))}
  grad = lambda th: {k: a[k].T @ (a[k] @ th[k] - b[k]) / 6 for k in th}
  return theta0, grad


def _run_jax(opt, theta0, grad, steps):
  p = jax.tree.map(jnp.asarray, theta0)
  s = opt.init(p)
  step = jax.jit(lambda p, s: opt.update(jax.tree.map(jnp.asarray, grad(p)), s, p))
  for _ in range(steps):
    u, s = step(p, s)
    p = optax.apply_updates(p, u)
  return jax.tree.map(np.asarray, p)


def test_cautious_adamw_trajectory_matches_paper():
  """Chen et al. (2025), Alg. 1 with Adam: θ ← θ − η_t(u + λ 1[u ⊙ θ ≥ 0] ⊙ θ), u = m̂/(√v̂+ε)."""
  theta0, grad = _least_squares()
  sched = lambda t: SCHEDULE(jnp.asarray(t, jnp.float64))
  lam, steps, b1, b2, eps = 2.0, 40, 0.9, 0.999, 1e-8
  p = {k: v.copy() for k, v in theta0.items()}
  m = {k: np.zeros_like(v) for k, v in p.items()}
  v = {k: np.zeros_like(x) for k, x in p.items()}
  for t in range(1, steps + 1):
    g, eta = grad(p), float(sched(t - 1))
    for k in p:
      m[k] = b1 * m[k] + (1 - b1) * g[k]
      v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
      u = m[k] / (1 - b1**t) / (np.sqrt(v[k] / (1 - b2**t)) + eps)
      p[k] = p[k] - eta * (u + lam * (u * p[k] >= 0) * p[k])
  ours = _run_jax(
    wd_jax.adamw(sched, weight_decay=lam, cautious=True), theta0, lambda th: grad(th), steps
  )
  plain = _run_jax(wd_jax.adamw(sched, weight_decay=lam), theta0, lambda th: grad(th), steps)
  chex.assert_trees_all_close(ours, p, atol=1e-12, rtol=0)
  assert max(np.max(np.abs(ours[k] - plain[k])) for k in p) > 1e-3  # cautious ≠ plain AdamW


@pytest.mark.parametrize("coupled", [True, False], ids=["coupled", "decoupled"])
def test_l2_sp_trajectory_matches_formula(coupled):
  """L2-SP (Li et al. 2018) toward θ₀: coupled g + λ(θ − θ₀) through SGD momentum, or
  decoupled θ ← θ − α λ (θ − θ₀) after the momentum step."""
  theta0, grad = _least_squares(1)
  lr, lam, mu, steps = 0.05, 0.8, 0.9, 50
  p = {k: x.copy() for k, x in theta0.items()}
  buf = {k: np.zeros_like(x) for k, x in p.items()}
  for _ in range(steps):
    g = grad(p)
    for k in p:
      gk = g[k] + lam * (p[k] - theta0[k]) if coupled else g[k]
      buf[k] = mu * buf[k] + gk
      p[k] = p[k] - lr * buf[k] - (0.0 if coupled else lr * lam * (p[k] - theta0[k]))
  make = wd_jax.sgd_l2 if coupled else wd_jax.sgdw
  ours = _run_jax(make(lr, lam, momentum=mu, reference="init"), theta0, grad, steps)
  toward_zero = _run_jax(make(lr, lam, momentum=mu), theta0, grad, steps)
  chex.assert_trees_all_close(ours, p, atol=1e-12, rtol=0)
  dist = lambda q: sum(np.sum((q[k] - theta0[k]) ** 2) for k in q)
  assert dist(ours) < dist(toward_zero)  # L2-SP keeps θ nearer the pretrained θ₀


def test_reference_tree_is_matched_by_path_and_checked():
  p = _params()
  ref = jax.tree.map(lambda x: x + 1.0, p)
  opt = wd_jax.with_weight_decay(optax.sgd(LR), WD, learning_rate=LR, reference=ref)
  new = optax.apply_updates(p, opt.update(_zeros(p), opt.init(p), p)[0])
  chex.assert_trees_all_close(new, jax.tree.map(lambda x: x + LR * WD, p), atol=1e-15)
  bad = dict(ref, w1=jnp.ones((2, 2)))
  with pytest.raises(ValueError, match=r"reference\['w1'\] has shape \(2, 2\)"):
    wd_jax.adamw(LR, reference=bad).init(p)
  with pytest.raises(ValueError, match="reference has no entry for the parameter 'b1'"):
    wd_jax.adamw(LR, reference={k: v for k, v in ref.items() if k != "b1"}).init(p)
  with pytest.raises(ValueError, match="reference must be None, 'init'"):
    wd_jax.adamw(LR, reference="pretrained")


# ---------------------------------------------------------------------------------------------
# Timescale (Wang & Aitchison 2024) and width-aware multipliers.


@pytest.mark.parametrize("coupling", wd_jax.COUPLINGS)
def test_weight_decay_from_timescale(coupling):
  c_peak = {"lr": 2e-3, "schedule": 1.0, "constant": 1.0, "corrected": 2e-3}[coupling]
  lam = wd_jax.timescale_weight_decay(5000, coupling=coupling, learning_rate=2e-3)
  assert lam == pytest.approx(1 / (c_peak * 5000), rel=1e-15)
  lam_epochs = wd_jax.timescale_weight_decay(
    tau_epochs=2.5, steps_per_epoch=2000, coupling=coupling, learning_rate=2e-3
  )
  assert lam_epochs == pytest.approx(lam, rel=1e-15)
  report = wd_jax.describe_timescale(lam, total_steps=100, coupling=coupling, learning_rate=2e-3)
  assert report.tau_steps == pytest.approx(5000, rel=1e-12)  # the round trip


@pytest.mark.parametrize("coupling", wd_jax.COUPLINGS)
def test_total_shrink_matches_a_zero_gradient_run(coupling):
  schedule = optax.warmup_cosine_decay_schedule(0.0, 0.02, 20, 200)
  lr = lambda count: schedule(jnp.asarray(count, jnp.float64))
  lam, steps = 0.3, 200
  if coupling in ("schedule", "constant"):
    lam = 0.003
  kw = {"peak_learning_rate": 0.02} if coupling in ("schedule", "corrected") else {}
  report = wd_jax.describe_timescale(
    lam, total_steps=steps, coupling=coupling, learning_rate=lr, steps_per_epoch=50, **kw
  )
  alphas = np.array([float(lr(t)) for t in range(steps)])
  c = {"lr": alphas, "schedule": alphas / 0.02, "constant": np.ones(steps),
       "corrected": alphas**2 / 0.02}[coupling]  # fmt: skip
  assert report.total_shrink == pytest.approx(math.exp(-lam * c.sum()), rel=1e-12)
  assert report.tau_steps == pytest.approx(1 / (lam * c.max()), rel=1e-12)
  assert report.tau_epochs == pytest.approx(report.tau_steps / 50, rel=1e-15)
  # The steps apply Π(1 − c_t λ); exp(−Σ c_t λ) is its first-order form.
  opt = wd_jax.with_weight_decay(optax.sgd(lr), lam, learning_rate=lr, coupling=coupling, **kw)
  p, s, step = jnp.ones(1), opt.init(jnp.ones(1)), jax.jit(opt.update)
  for _ in range(steps):
    u, s = step(jnp.zeros(1), s, p)
    p = p + u
  x = lam * c
  assert float(p[0]) == pytest.approx(np.prod(1 - x), rel=1e-6)
  assert abs(math.log(float(p[0])) - math.log(report.total_shrink)) <= np.sum(x**2)
  assert "total shrink" in str(report) and "epochs" in str(report)


def test_timescale_bad_input():
  with pytest.raises(ValueError, match="exactly one of tau_steps and tau_epochs"):
    wd_jax.timescale_weight_decay(learning_rate=1e-3)
  with pytest.raises(ValueError, match="steps_per_epoch is required"):
    wd_jax.timescale_weight_decay(tau_epochs=3, learning_rate=1e-3)
  with pytest.raises(ValueError, match="peak_learning_rate is required"):
    wd_jax.timescale_weight_decay(100, learning_rate=optax.constant_schedule(1e-3))
  with pytest.raises(ValueError, match="tau_steps must be > 0"):
    wd_jax.timescale_weight_decay(-5, learning_rate=1e-3)


def test_fan_in_mask_gives_the_mup_timescale_rule():
  """μP hidden lrs η_l = α·base/fan_in; Wang & Aitchison keep τ_l = 1/(η_l λ_l) fixed with
  λ_l = λ·fan_in/base (decay multiplied by the layer's lr). wd_jax multiplies λ by the global
  α, so the same per-step shrink η_l·λ_l is m_l = (η_l/α)(λ_l/λ): fan_in_mask(exponent=p − 1)."""
  base_fan_in, alpha, lam = 64, 0.01, 0.2
  params = {f"h{n}": {"kernel": jnp.ones((n, 32)), "bias": jnp.ones(32)} for n in (64, 256, 1024)}
  for p_rule in (1.0, 0.0):  # λ_l ∝ fan_in (the paper's rule), or one λ for every group
    mask = wd_jax.fan_in_mask(base_fan_in, exponent=p_rule - 1)
    opt = wd_jax.with_weight_decay(optax.sgd(alpha), lam, learning_rate=alpha, mask=mask)
    new = optax.apply_updates(params, opt.update(_zeros(params), opt.init(params), params)[0])
    for name, n in (("h64", 64), ("h256", 256), ("h1024", 1024)):
      eta_l = alpha * base_fan_in / n
      lam_l = lam * (n / base_fan_in) ** p_rule
      shrink = 1 - float(new[name]["kernel"][0, 0])
      assert shrink == pytest.approx(eta_l * lam_l, rel=1e-12)
      assert float(new[name]["bias"][0]) == 1.0  # default_mask: biases not decayed
      if p_rule == 1.0:  # the paper's rule: the same timescale at every width
        assert 1 / shrink == pytest.approx(1 / (alpha * lam), rel=1e-12)


def test_fan_in_mask_composes_and_explains():
  params = {"emb": jnp.ones((100, 8)), "conv": jnp.ones((3, 3, 4, 8)), "b": jnp.ones(8)}
  mask = wd_jax.regex_mask({"emb": 0.0}, default=wd_jax.fan_in_mask(9, exponent=0.5))
  rows = {r.path: r for r in wd_jax.describe_mask(params, mask).rows}
  assert rows["emb"].multiplier == 0.0 and rows["emb"].source == "rule 'emb'"
  assert rows["conv"].multiplier == pytest.approx((36 / 9) ** 0.5)  # fan-in 3·3·4
  assert "fan_in 36/9" in rows["conv"].source
  assert rows["b"].multiplier == 0.0 and "ndim 1 < 2" in rows["b"].source
  with pytest.raises(ValueError, match="base_fan_in must be an int >= 1"):
    wd_jax.fan_in_mask(0)


# ---------------------------------------------------------------------------------------------
# Masks that say what they did.


def test_regex_rule_that_matches_nothing_is_an_error():
  mask = wd_jax.regex_mask({".*biass": 0.0})
  with pytest.raises(ValueError, match=r"'\.\*biass' matches no parameter path.*head/bias"):
    wd_jax.adamw(LR, weight_decay=0.1, mask=mask).init(_params())
  with pytest.raises(ValueError, match=r"'\.\*biass' matches no parameter path"):
    wd_jax.describe_mask(_params(), mask)
  relaxed = wd_jax.regex_mask({".*biass": 0.0}, allow_unused_rules=True)
  assert all(r.multiplier == 1.0 for r in wd_jax.describe_mask(_params(), relaxed).rows)


def test_regex_rule_shadowed_by_an_earlier_one_is_an_error():
  mask = wd_jax.regex_mask([(".*", 0.5), (".*bias", 0.0)])
  with pytest.raises(ValueError, match=r"'\.\*bias' matches only paths an earlier rule sets"):
    mask(_params())


@pytest.mark.parametrize(
  ("value", "shown"), [("no", "'no'"), (None, "None"), (-1.0, "-1.0"), (math.nan, "nan")]
)
def test_regex_values_are_checked_with_the_rule_named(value, shown):
  with pytest.raises(ValueError, match=r"rules\['\.\*bias'\] must be .*" + shown):
    wd_jax.regex_mask({".*bias": value})


def test_describe_mask_says_which_rule_set_each_multiplier():
  mask = wd_jax.regex_mask({".*bias": 0.0, "head/.*": 0.1}, default=wd_jax.default_mask)
  rows = {r.path: r.source for r in wd_jax.describe_mask(_params(), mask).rows}
  assert rows == {
    "b1": "default (default_mask: ndim 1 < 2)",
    "head/bias": "rule '.*bias'",
    "head/kernel": "rule 'head/.*'",
    "w1": "default (default_mask: ndim 2 >= 2)",
  }
  text = str(wd_jax.describe_mask(_params(), mask))
  assert "set by" in text and "rule 'head/.*'" in text


def test_prefix_mask_equals_the_full_mask():
  full = {"w1": True, "b1": False, "head": {"kernel": False, "bias": False}}
  prefix = {"w1": True, "b1": False, "head": False}
  a = optax.apply_updates(
    _params(),
    wd_jax.adamw(LR, weight_decay=WD, mask=full).update(
      _grads(0), wd_jax.adamw(LR, weight_decay=WD, mask=full).init(_params()), _params()
    )[0],
  )
  opt = wd_jax.adamw(LR, weight_decay=WD, mask=prefix)
  b = optax.apply_updates(_params(), opt.update(_grads(0), opt.init(_params()), _params())[0])
  chex.assert_trees_all_equal(a, b)
  rows = {r.path: r.source for r in wd_jax.describe_mask(_params(), prefix).rows}
  assert rows["head/kernel"] == "mask entry 'head'"
  with pytest.raises(ValueError, match=r"mask entries without a parameter \['head/kernel/x'\]"):
    wd_jax.describe_mask(_params(), dict(prefix, head={"kernel": {"x": True}, "bias": True}))


@pytest.mark.parametrize(
  "mask",
  [
    None,
    wd_jax.default_mask,
    {"w1": True, "b1": False, "head": True},
    wd_jax.regex_mask({".*bias": 0.0}),
  ],
  ids=["none", "callable", "prefix_tree", "regex"],
)
@pytest.mark.parametrize("name", ["adamw", "adam_l2", "muon"])
def test_masks_survive_map_params(name, mask):
  opt = wd_jax.get_optimizer(name, learning_rate=LR, weight_decay=0.1, mask=mask)
  params = _params()
  state = opt.init(params)
  shapes = optax.tree.map_params(opt, lambda p: p.shape, state, transform_non_params=lambda _: None)
  assert jax.tree.structure(shapes) is not None
  # θ₀ kept for decay toward it is params-shaped: map_params reaches it.
  opt = wd_jax.adamw(LR, weight_decay=0.1, mask=mask, reference="init")
  state = opt.init(params)
  ones = optax.tree.map_params(opt, jnp.ones_like, state)
  chex.assert_trees_all_equal(ones.reference, jax.tree.map(jnp.ones_like, params))


def test_a_tree_without_leaves_is_not_checked_against_the_mask():
  """map_params finds the params' copies by calling init on a leafless stand-in; the decays
  recognise it by having no leaves, the one thing map_params documents about it (no private
  class name). A real empty tree is the same case: nothing to decay, nothing to match."""
  mask = {"w1": True, "b1": False, "head": False}
  opt = wd_jax.adamw(LR, weight_decay=0.1, mask=mask, reference="init")
  assert jax.tree.leaves(opt.init({}).reference) == []
  ones = optax.tree.map_params(opt, jnp.ones_like, opt.init(_params()))
  chex.assert_trees_all_equal(ones.reference, jax.tree.map(jnp.ones_like, _params()))
  with pytest.raises(ValueError, match="mask does not match"):
    opt.init({"w1": _params()["w1"]})  # ... while a tree with leaves is checked


# ---------------------------------------------------------------------------------------------
# optax conventions: inject_hyperparams, counts, dtypes.


def test_inject_hyperparams_keeps_the_coupling_or_refuses():
  sched = optax.cosine_decay_schedule(0.1, 10)
  for coupling in ("schedule", "corrected"):
    injected = optax.inject_hyperparams(wd_jax.adamw)(
      learning_rate=sched, weight_decay=0.1, coupling=coupling
    )
    with pytest.raises(ValueError, match=r"peak_learning_rate is required.*JAX array"):
      injected.init(_params())
    injected_float = optax.inject_hyperparams(wd_jax.adamw)(
      learning_rate=0.1, weight_decay=0.1, coupling=coupling
    )
    with pytest.raises(ValueError, match="peak_learning_rate is required"):
      injected_float.init(_params())
    # With the peak given, the injected optimizer is the same map as the plain one.
    ours = optax.inject_hyperparams(wd_jax.adamw)(
      learning_rate=sched, weight_decay=0.1, coupling=coupling, peak_learning_rate=0.1
    )
    plain = wd_jax.adamw(sched, weight_decay=0.1, coupling=coupling, peak_learning_rate=0.1)
    pa = pb = _params()
    sa, sb = ours.init(pa), plain.init(pb)
    for t in range(6):
      ua, sa = jax.jit(ours.update)(_grads(t), sa, pa)
      ub, sb = jax.jit(plain.update)(_grads(t), sb, pb)
      pa, pb = optax.apply_updates(pa, ua), optax.apply_updates(pb, ub)
    chex.assert_trees_all_close(pa, pb, atol=1e-14, rtol=0)


# Every numeric hyperparameter of each recipe, injected under jit, equals the plain recipe.
INJECTED = {
  "adamw": dict(learning_rate=0.05, weight_decay=0.1, b1=0.8, b2=0.99, eps=1e-7, eps_root=1e-9),
  "adam_l2": dict(learning_rate=0.05, weight_decay=0.1, b1=0.8, b2=0.99, eps=1e-7, eps_root=1e-9),
  "adams": dict(learning_rate=0.05, weight_decay=0.1, b1=0.8, b2=0.99, eps=1e-7),
  "sgd_l2": dict(learning_rate=0.05, weight_decay=0.1, momentum=0.9),
  "sgdw": dict(learning_rate=0.05, weight_decay=0.1, momentum=0.9, peak_learning_rate=0.1),
  "nadamw": dict(learning_rate=0.05, weight_decay=0.1, b1=0.8, b2=0.99, eps=1e-7),
  "lion": dict(learning_rate=0.01, weight_decay=0.1, b1=0.8, b2=0.95),
  "lamb": dict(learning_rate=0.05, weight_decay=0.1, b1=0.8, b2=0.99, eps=1e-5),
  "adan": dict(learning_rate=0.05, weight_decay=0.1, b1=0.9, b2=0.9, b3=0.95, eps=1e-7),
  "muon": dict(
    learning_rate=0.05, weight_decay=0.1, beta=0.9, eps=1e-7, adam_b1=0.8, adam_weight_decay=0.2
  ),
  "adafactor": dict(
    learning_rate=0.05, weight_decay_rate=0.1, decay_rate=0.7, clipping_threshold=2.0
  ),
  "schedule_free_adamw": dict(learning_rate=0.05, weight_decay=0.1, b1=0.8, b2=0.99),
}


@pytest.mark.parametrize("name", list(INJECTED))
def test_every_hyperparameter_injectable_under_jit(name):
  hp = INJECTED[name]
  static = ("min_dim_size_to_factor",) if name == "adafactor" else ()  # sets shapes, as in optax
  injected = optax.inject_hyperparams(wd_jax.OPTIMIZERS[name], static)(**hp)
  plain = wd_jax.get_optimizer(name, **hp)
  pa = pb = _params()
  sa, sb = injected.init(pa), plain.init(pb)
  step_a, step_b = jax.jit(injected.update), jax.jit(plain.update)
  for t in range(3):
    ua, sa = step_a(_grads(t), sa, pa)
    ub, sb = step_b(_grads(t), sb, pb)
    pa, pb = optax.apply_updates(pa, ua), optax.apply_updates(pb, ub)
  # optax.adafactor's β2_t is float32 from a Python decay_rate, float64 from an injected one:
  # optax's own differs by the same ~1e-9 between the two.
  chex.assert_trees_all_close(pa, pb, atol=1e-8 if name == "adafactor" else 1e-13, rtol=0)
  assert set(hp) <= set(sa.hyperparams)  # every one of them is in the injected state


def _counts(state):
  return len(optax.tree.get_all_with_path(state, "count"))


COUNTERPARTS = {  # wd_jax recipe (constant hyperparameters) → optax's counterpart
  "adamw": (lambda: wd_jax.adamw(LR, weight_decay=0.1), lambda: optax.adamw(LR, weight_decay=0.1)),
  "nadamw": (
    lambda: wd_jax.nadamw(LR, weight_decay=0.1),
    lambda: optax.nadamw(LR, weight_decay=0.1),
  ),
  "sgdw": (lambda: wd_jax.sgdw(LR, 0.1, momentum=0.9), lambda: optax.sgd(LR, momentum=0.9)),
  "sgd_l2": (lambda: wd_jax.sgd_l2(LR, 0.1), lambda: optax.sgd(LR)),
  "adam_l2": (lambda: wd_jax.adam_l2(LR, 0.1), lambda: optax.adam(LR)),
  "lion": (lambda: wd_jax.lion(LR), lambda: optax.lion(LR)),
  "lamb": (lambda: wd_jax.lamb(LR), lambda: optax.lamb(LR)),
  "adan": (lambda: wd_jax.adan(LR), lambda: optax.adan(LR)),
  "muon": (lambda: wd_jax.muon(LR), lambda: optax.contrib.muon(LR)),
  "adafactor": (
    lambda: wd_jax.adafactor(LR, weight_decay_rate=0.1),
    lambda: optax.adafactor(LR, weight_decay_rate=0.1),
  ),
  "schedule_free_adamw": (
    lambda: wd_jax.schedule_free_adamw(LR, weight_decay=0.1),
    lambda: optax.contrib.schedule_free_adamw(LR, weight_decay=0.1),
  ),
}


@pytest.mark.parametrize("name", list(COUNTERPARTS))
def test_as_many_counts_as_optax(name):
  ours, theirs = (f().init(_params()) for f in COUNTERPARTS[name])
  assert _counts(ours) == _counts(theirs)


def test_one_count_for_adamw_as_optax():
  state = wd_jax.adamw(LR, weight_decay=0.1).init(_params())
  assert int(optax.tree.get(state, "count")) == 0  # raised with two counts before
  scheduled = wd_jax.adamw(LR, weight_decay=optax.linear_schedule(0.1, 0.0, 10)).init(_params())
  assert _counts(scheduled) == 2  # λ_t needs its step count


@pytest.mark.parametrize("name", ALL_RECIPES)
def test_state_dtype_stable_under_schedules(name):
  """bfloat16 params with scheduled α and λ (float32 values): state and updates stay bfloat16."""
  params = _params(dtype=jnp.bfloat16)
  lr = optax.linear_schedule(0.01, 0.001, 10)
  kw = {"peak_learning_rate": 0.01} if name in ("adamw", "sgdw") else {}
  opt = wd_jax.get_optimizer(
    name, learning_rate=lr, weight_decay=optax.linear_schedule(0.1, 0.01, 10), **kw
  )
  state = opt.init(params)
  dtypes = jax.tree.map(lambda x: x.dtype, state)
  step = jax.jit(opt.update)
  for t in range(2):
    updates, state = step(jax.tree.map(lambda x: x.astype(jnp.bfloat16), _grads(t)), state, params)
    chex.assert_trees_all_equal_dtypes(updates, params)
    assert jax.tree.map(lambda x: x.dtype, state) == dtypes
    params = optax.apply_updates(params, updates)
  chex.assert_tree_all_finite(params)


# ---------------------------------------------------------------------------------------------
# Complex parameters, empty trees, and the Adam options.


def _complex_params():
  k = jax.random.split(jax.random.key(3), 2)
  return {
    "w": jax.random.normal(k[0], (3, 4), jnp.complex128),
    "b": jax.random.normal(k[1], (4,), jnp.complex128),
  }


def _complex_grads(t):
  return jax.tree.map(lambda x: (0.3 + 0.1j * t) * x.conj(), _complex_params())


def _run_complex(opt, steps=3):
  p = _complex_params()
  s, step = opt.init(p), jax.jit(opt.update)
  for t in range(steps):
    u, s = step(_complex_grads(t), s, p)
    p = optax.apply_updates(p, u)
  return p


@pytest.mark.parametrize(
  "kw",
  [
    {"track_moments": True, "nesterov": True, "eps_root": 1e-6},
    {"track_moments": True, "amsgrad": True},
  ],
  ids=["nesterov_eps_root", "amsgrad"],
)
def test_adam_l2_tracked_on_complex_params_matches_optax(kw):
  adam = {k: v for k, v in kw.items() if k in ("nesterov", "eps_root")}
  direction = optax.scale_by_amsgrad(**adam) if kw.get("amsgrad") else optax.scale_by_adam(**adam)
  ref = optax.chain(optax.add_decayed_weights(0.2), direction, optax.scale_by_learning_rate(0.05))
  ours = _run_complex(wd_jax.adam_l2(0.05, 0.2, **kw))
  chex.assert_trees_all_close(ours, _run_complex(ref), atol=1e-14, rtol=0)
  no_decay = _run_complex(wd_jax.adam_l2(0.05, 0.0, **kw))
  moved = max(
    float(jnp.max(jnp.abs(a - b))) for a, b in zip(*map(jax.tree.leaves, (ours, no_decay)))
  )
  assert moved > 1e-3


def test_adam_l2_ablation_on_complex_params_uses_the_modulus():
  # L2 in neither moment, step 1: u = (g + λθ)/(max(|g|, |λθ|) + ε), moduli of complex values.
  opt = wd_jax.scale_by_adam_l2(0.5, l2_in_first_moment=False, l2_in_second_moment=False)
  p, g = _complex_params(), _complex_grads(1)
  u, _ = opt.update(g, opt.init(p), p)
  for ul, gl, pl in zip(*(jax.tree.leaves(t) for t in (u, g, p))):
    den = jnp.maximum(jnp.abs(gl), jnp.abs(0.5 * pl)) + 1e-8
    np.testing.assert_allclose(ul, (gl + 0.5 * pl) / den, rtol=1e-13)


def test_mu_dtype_is_kept():
  for opt in (
    wd_jax.adamw(LR, mu_dtype=jnp.bfloat16),
    wd_jax.adam_l2(LR, mu_dtype=jnp.bfloat16, track_moments=True),
  ):
    p = _params(dtype=jnp.float32)
    _, s = jax.jit(opt.update)(
      jax.tree.map(lambda x: x.astype(jnp.float32), _grads(0)), opt.init(p), p
    )
    mus = [x for path, x in optax.tree.get_all_with_path(s, "mu")] or [
      x for _, x in optax.tree.get_all_with_path(s, "mu_loss")
    ]
    assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(mus))


def test_adams_on_an_empty_tree():
  opt = wd_jax.adams(LR, 0.1)
  u, _ = opt.update({}, opt.init({}), {})  # divided by the number of elements (0) before
  assert u == {}


# ---------------------------------------------------------------------------------------------
# l2_share says when it cannot know.


def test_l2_share_of_optax_coupled_chain_cannot_know():
  opt = optax.chain(
    optax.add_decayed_weights(0.1), optax.scale_by_adam(), optax.scale_by_learning_rate(LR)
  )
  p = _params()
  _, s = opt.update(_grads(0), opt.init(p), p)
  with pytest.raises(ValueError, match=r"cannot know.*ScaleByAdamState"):
    wd_jax.l2_share(s)
  with pytest.raises(ValueError, match="cannot know"):
    wd_jax.l2_share(optax.adamw(LR).init(p))


@pytest.mark.parametrize("name", [n for n in ALL_RECIPES if n not in ("adam_l2", "sgd_l2")])
def test_l2_share_is_zero_for_every_decoupled_recipe(name):
  opt = wd_jax.get_optimizer(name, learning_rate=LR, weight_decay=0.1)
  assert float(wd_jax.l2_share(opt.init(_params()))) == 0.0


def test_diagnostics_reachable_after_import():
  assert wd_jax.diagnostics.l2_share_by_leaf is not None


# ---------------------------------------------------------------------------------------------
# The docstring examples run (with only jax, jnp, optax and wd_jax in scope).


@pytest.mark.parametrize(
  "module", ["_decay", "transforms", "masks", "optimizers", "moments", "timescale", "schedules"]
)
def test_docstring_examples(module):
  mod = importlib.import_module(f"wd_jax.{module}")
  globs = {"jax": jax, "jnp": jnp, "optax": optax, "wd_jax": wd_jax}
  with jax.enable_x64(False):
    result = doctest.testmod(
      mod, extraglobs=globs, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
  assert result.failed == 0
  assert result.attempted > 0 or module == "schedules"
