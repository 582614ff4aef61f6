"""Diagnostics against hand computations, and the equilibrium predictions against simulation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import wd_jax
from wd_jax import diagnostics as D


def test_norms_by_hand():
  tree = {"a": jnp.array([3.0, 4.0]), "b": {"k": jnp.array([[1.0, 2.0], [2.0, 4.0]])}}
  np.testing.assert_allclose(D.global_norm(tree), math.sqrt(25 + 25))
  norms = D.leaf_norms(tree)
  assert set(norms) == {"a", "b/k"}
  np.testing.assert_allclose(norms["a"], 5.0)
  np.testing.assert_allclose(norms["b/k"], 5.0)


@pytest.mark.parametrize("angle", [1e-4, 0.3, 1.2, 3.0])
def test_angular_update_by_hand(angle):
  old = {"w": jnp.array([2.0, 0.0, 0.0])}
  new = {"w": 5.0 * jnp.array([math.cos(angle), math.sin(angle), 0.0])}
  np.testing.assert_allclose(D.angular_update(old, new)["w"], angle, rtol=1e-5)


def test_angular_update_is_scale_free():
  k1, k2 = jax.random.split(jax.random.key(0))
  a, b = jax.random.normal(k1, (50,)), jax.random.normal(k2, (50,))
  expected = math.acos(float(jnp.dot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b))))
  np.testing.assert_allclose(D.angular_update({"w": a}, {"w": 7.0 * b})["w"], expected, rtol=1e-5)


def test_effective_learning_rate_and_zero_fraction():
  params = {"w": jnp.array([[1.0, 2.0], [0.0, 2.0]]), "b": jnp.array([0.0, 0.0, 5.0])}
  elr = D.effective_learning_rate(0.9, params)
  np.testing.assert_allclose(elr["w"], 0.9 / 9.0)
  np.testing.assert_allclose(elr["b"], 0.9 / 25.0)
  np.testing.assert_allclose(D.zero_fraction(params), 3 / 7)


def test_l2_share_by_leaf_by_hand():
  wd, b1 = 0.5, 0.9
  opt = wd_jax.adam_l2(0.1, wd, b1=b1, track_moments=True)
  params = {"u": jnp.array([1.0, -2.0]), "v": jnp.array([3.0])}
  g = {"u": jnp.array([0.4, 0.0]), "v": jnp.array([-1.0])}
  _, state = opt.update(g, opt.init(params), params)
  shares = D.l2_share_by_leaf(state)
  # After one step m_loss = (1-β1) g and m_l2 = (1-β1) λ θ; the (1-β1) cancels in the ratio.
  for k in params:
    nl, n2 = np.linalg.norm(g[k]), np.linalg.norm(wd * np.asarray(params[k]))
    np.testing.assert_allclose(shares[k], n2 / (nl + n2), rtol=1e-6)


def test_predictions_by_hand():
  a, lam, b1, b2, mu = 0.01, 0.1, 0.9, 0.99, 0.9
  np.testing.assert_allclose(
    D.predicted_angular_update("adamw", a, lam, b1=b1), math.sqrt(2 * a * lam * 0.1 / 1.9)
  )
  np.testing.assert_allclose(
    D.predicted_angular_update("sgdw", a, lam, momentum=mu), math.sqrt(2 * a * lam / 1.9)
  )
  lion = math.sqrt(math.pi / 2) * math.sqrt(2 * a * lam) * math.sqrt(0.01 + 0.81 * 0.01 / 1.99)
  np.testing.assert_allclose(D.predicted_angular_update("lion", a, lam, b1=b1, b2=b2), lion)
  assert math.isnan(D.predicted_angular_update("adam_l2", a, lam))
  np.testing.assert_allclose(
    D.predicted_equilibrium_norm("adamw", a, lam, 1000), math.sqrt(a * 1000 / (2 * lam))
  )
  np.testing.assert_allclose(
    D.predicted_equilibrium_norm("sgd_l2", a, lam, 1000, grad_norm_at_unit_norm=3.0, momentum=mu),
    (a * 9.0 / (2 * lam * 0.1)) ** 0.25,
  )
  with pytest.raises(ValueError, match=r"optimizer.*'rmsprop'"):
    D.predicted_angular_update("rmsprop", a, lam)
  with pytest.raises(ValueError, match="grad_norm_at_unit_norm"):
    D.predicted_equilibrium_norm("sgdw", a, lam, 10)


def _simulate(opt, *, w0, steps, tail, num_elements=4096, seed=0):
  """A scale-invariant weight: isotropic gradient ⟂ w, scaled by 1/‖w‖ (Kosson et al. 2023)."""
  w = jax.random.normal(jax.random.key(seed), (num_elements,))
  w = w0 * w / jnp.linalg.norm(w)

  def body(carry, key):
    w, state = carry
    xi = jax.random.normal(key, w.shape)
    g = (xi - jnp.dot(xi, w) / jnp.dot(w, w) * w) / jnp.linalg.norm(w)
    u, state = opt.update(g, state, w)
    new = optax.apply_updates(w, u)
    return (new, state), (jnp.linalg.norm(new), D.angular_update(w, new)[""])

  keys = jax.random.split(jax.random.key(seed + 1), steps)
  _, (norms, angles) = jax.jit(lambda c: jax.lax.scan(body, c, keys))((w, opt.init(w)))
  return float(jnp.mean(norms[-tail:])), float(jnp.mean(angles[-tail:]))


def test_adamw_equilibrium_matches_simulation():
  # αλ = 5e-4: the random-walk model is first order in αλ (at αλ = 5e-3 the norm ratio is ~0.98).
  a, lam, c = 0.001, 0.5, 4096
  w_eq = D.predicted_equilibrium_norm("adamw", a, lam, c)
  norm, angle = _simulate(wd_jax.adamw(a, weight_decay=lam), w0=w_eq, steps=20_000, tail=5_000)
  np.testing.assert_allclose(norm / w_eq, 1.0, atol=0.01)
  np.testing.assert_allclose(angle / D.predicted_angular_update("adamw", a, lam), 1.0, atol=0.01)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_equilibrium_matches_simulation(momentum):
  a, lam, c = 0.1, 0.05, 4096
  norm, angle = _simulate(wd_jax.sgd_l2(a, lam, momentum=momentum), w0=1.0, steps=6_000, tail=2_000)
  w_eq = D.predicted_equilibrium_norm(
    "sgd_l2", a, lam, c, grad_norm_at_unit_norm=math.sqrt(c - 1), momentum=momentum
  )
  np.testing.assert_allclose(norm / w_eq, 1.0, atol=0.01)
  np.testing.assert_allclose(
    angle / D.predicted_angular_update("sgd_l2", a, lam, momentum=momentum), 1.0, atol=0.01
  )


def test_step_diagnostics_keys_and_values():
  opt = wd_jax.adam_l2(0.1, 0.3, track_moments=True)
  params = {"w": jnp.array([[1.0, 2.0]]), "b": jnp.array([0.5])}
  grads = {"w": jnp.array([[0.1, -0.1]]), "b": jnp.array([0.2])}
  state = opt.init(params)
  u, state = opt.update(grads, state, params)
  new = optax.apply_updates(params, u)
  out = jax.jit(D.step_diagnostics)(params, new, grads, state)
  for key in (
    "param_norm",
    "grad_norm",
    "update_norm",
    "zero_fraction",
    "l2_share",
    "param_norm/w",
    "angular_update/b",
    "l2_share/w",
  ):
    assert key in out, key
  np.testing.assert_allclose(out["update_norm"], optax.tree.norm(u), rtol=1e-6)
  np.testing.assert_allclose(out["l2_share"], wd_jax.l2_share(state), rtol=1e-6)
  no_track = D.step_diagnostics(
    params, new, grads, wd_jax.adamw(0.1, weight_decay=0.3).init(params), per_leaf=False
  )
  assert "l2_share" not in no_track and "param_norm/w" not in no_track


def test_pollution_on_hand_computed_moments():
  from wd_jax.moments import TrackedAdamL2State

  # m_loss = (3, 0), m_l2 = (−3, 4): m = (0, 4); v = (9, 1) at count 1 with b2 = 0: d = (3, 1).
  state = TrackedAdamL2State(
    jnp.array(1),
    {"w": jnp.array([3.0, 0.0])},
    {"w": jnp.array([-3.0, 4.0])},
    {"w": jnp.array([9.0, 1.0])},
    None,
    None,
  )
  q = D.pollution(state, b2=0.0, eps=0.0, per_leaf=True)
  np.testing.assert_allclose(q["m_cos"], 0.0, atol=1e-7)  # (0, 4) ⟂ (3, 0)
  np.testing.assert_allclose(q["m_ratio"], 5.0 / 3.0, rtol=1e-6)
  # Steps: m/d = (0, 4), m_loss/d = (1, 0), m_l2/d = (−1, 4).
  np.testing.assert_allclose(q["step_cos"], 0.0, atol=1e-7)
  np.testing.assert_allclose(q["step_ratio"], np.sqrt(17.0), rtol=1e-6)
  assert set(q) >= {"m_cos/w", "m_ratio/w", "step_cos/w", "step_ratio/w"}
  # The share saturates where these do not: ‖m_l2‖/(‖m_loss‖ + ‖m_l2‖) = 5/8 here.
  np.testing.assert_allclose(D.l2_share_by_leaf(state)["w"], 5.0 / 8.0, rtol=1e-6)


def test_pollution_is_one_and_zero_without_l2_and_needs_a_tracked_state():
  opt = wd_jax.adam_l2(0.1, 0.0, track_moments=True)
  p, g = {"w": jnp.array([2.0, -1.0])}, {"w": jnp.array([1.0, 1.0])}
  _, state = opt.update(g, opt.init(p), p)
  q = D.pollution(state)
  np.testing.assert_allclose([q["m_cos"], q["step_cos"]], [1.0, 1.0], rtol=1e-6)
  np.testing.assert_allclose([q["m_ratio"], q["step_ratio"]], [0.0, 0.0], atol=1e-7)
  with pytest.raises(ValueError, match="track_moments"):
    D.pollution(wd_jax.adamw(0.1, weight_decay=0.1).init(p))


def test_step_deviation_of_adamw_is_its_decay_step_against_its_adam_step():
  # With a float λ the decoupled decay is u − u₀ = −α λ θ exactly (one step, zero state).
  p, g = {"w": jnp.array([2.0, -1.0])}, {"w": jnp.array([1.0, 0.5])}
  lr, lam = 0.1, 0.3
  u, _ = wd_jax.adamw(lr, weight_decay=lam).update(g, wd_jax.adamw(lr, weight_decay=lam).init(p), p)
  u0, _ = wd_jax.adamw(lr, weight_decay=0.0).update(
    g, wd_jax.adamw(lr, weight_decay=0.0).init(p), p
  )
  d = D.step_deviation(u, u0)
  decay = lr * lam * np.array([2.0, -1.0])
  np.testing.assert_allclose(
    d["step_ratio"], np.linalg.norm(decay) / np.linalg.norm(np.asarray(u0["w"])), rtol=1e-5
  )
  cos = np.dot(np.asarray(u["w"]), np.asarray(u0["w"])) / (
    np.linalg.norm(np.asarray(u["w"])) * np.linalg.norm(np.asarray(u0["w"]))
  )
  np.testing.assert_allclose(d["step_cos"], cos, rtol=1e-6)
