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
  norm, angle = _simulate(wd_jax.adamw(a, lam), w0=w_eq, steps=20_000, tail=5_000)
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
    params, new, grads, wd_jax.adamw(0.1, 0.3).init(params), per_leaf=False
  )
  assert "l2_share" not in no_track and "param_norm/w" not in no_track
