"""diagnostics.relative_sharpness against hand computations: quadratics, masks, scale invariance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import wd_jax
from wd_jax import diagnostics as D


def _quadratic(curvatures):
  """L(w) = Σ_l ½ a_l ‖w_l‖²: with ± pairs S = ½ρ² Σ_l a_l ‖ε_l‖² exactly, whatever the draw."""
  return lambda p: sum(0.5 * a * jnp.sum(p[k] ** 2) for k, a in curvatures.items())


PARAMS = {"u": jnp.array([1.0, 2.0, 2.0]), "v": jnp.array([[3.0, 4.0]])}  # ‖u‖ = 3, ‖v‖ = 5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_relative_sharpness_of_a_quadratic_by_hand(seed):
  loss = _quadratic({"u": 2.0, "v": 0.5})
  s = D.relative_sharpness(loss, PARAMS, jax.random.key(seed), radius=0.1, num_directions=3)
  np.testing.assert_allclose(s, 0.5 * 0.01 * (2.0 * 9 + 0.5 * 25), rtol=1e-5)


def test_absolute_sharpness_moves_each_leaf_by_the_root_of_its_size():
  loss = _quadratic({"u": 2.0, "v": 0.5})
  s = D.relative_sharpness(loss, PARAMS, jax.random.key(0), radius=0.1, relative=False)
  np.testing.assert_allclose(s, 0.5 * 0.01 * (2.0 * 3 + 0.5 * 2), rtol=1e-4)  # float32


def test_leaves_outside_the_mask_do_not_move():
  loss = _quadratic({"u": 2.0, "v": 0.5})
  key = jax.random.key(0)
  only_v = D.relative_sharpness(loss, PARAMS, key, radius=0.1, mask={"u": False, "v": True})
  np.testing.assert_allclose(only_v, 0.5 * 0.01 * 0.5 * 25, rtol=1e-5)
  by_rule = D.relative_sharpness(loss, PARAMS, key, radius=0.1, mask=wd_jax.default_mask)
  np.testing.assert_allclose(by_rule, only_v, rtol=1e-6)  # default_mask: ndim ≥ 2 only


def _on_the_sphere(p):
  """A loss of w's direction only (w followed by a normalisation): L(c·w) = L(w) for c > 0."""
  w = p["w"] / jnp.linalg.norm(p["w"])
  return jnp.sum((w - jnp.array([0.6, 0.8, 0.0])) ** 2) + jnp.sum(p["b"] ** 2)


@pytest.mark.parametrize("scale", [0.01, 0.1, 10.0])
def test_relative_sharpness_is_scale_invariant_and_absolute_is_not(scale):
  p = {"w": jnp.array([0.5, 1.0, -0.3]), "b": jnp.array([0.2])}
  scaled = {"w": scale * p["w"], "b": p["b"]}
  key = jax.random.key(3)
  rel = lambda q: D.relative_sharpness(_on_the_sphere, q, key, radius=0.05)
  np.testing.assert_allclose(rel(scaled), rel(p), rtol=1e-4)
  ab = lambda q: D.relative_sharpness(_on_the_sphere, q, key, radius=0.05, relative=False)
  ratio = float(ab(scaled) / ab(p))
  assert (ratio > 2.0) if scale < 1 else (ratio < 0.5)  # a shrunk weight looks sharper


def test_jit_gives_the_same_value():
  loss = _quadratic({"u": 2.0, "v": 0.5})
  key = jax.random.key(0)
  fn = jax.jit(lambda p, k: D.relative_sharpness(loss, p, k, radius=0.2, num_directions=2))
  np.testing.assert_allclose(fn(PARAMS, key), 0.5 * 0.04 * (18 + 12.5), rtol=1e-5)


@pytest.mark.parametrize(
  "kwargs, message",
  [({"radius": 0.0}, "radius"), ({"radius": -1.0}, "radius"), ({"num_directions": 0}, "num_dir")],
)
def test_bad_arguments_are_refused(kwargs, message):
  with pytest.raises(ValueError, match=message):
    D.relative_sharpness(_quadratic({"u": 1.0, "v": 1.0}), PARAMS, jax.random.key(0), **kwargs)
