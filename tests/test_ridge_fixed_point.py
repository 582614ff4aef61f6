"""Coupled L2 is ridge regression; AdamW's decay is not (full-batch linear regression, float64).

On ½‖Xθ − y‖²/n (the engine's regression loss) the fixed point of a coupled L2 step is
∇loss + λθ = 0, the ridge solution θ*(λ) = (XᵀX/n + λI)⁻¹Xᵀy/n (`ridge_solution`): full-batch
SGD + L2 and Adam + L2 with a decaying lr must end on it. AdamW's update
θ ← θ − α_t (m̂/(√v̂ + ε) + λθ) stops where g_i/(|g_i| + ε) = −λθ_i per coordinate, i.e.
g_i = −λθ_i ε/(1 − λ|θ_i|): a ridge problem whose per-coordinate strength is ~λε, next to least
squares, not θ*(λ). The runs are many decay timescales τ = 1/(α λ) long, so AdamW's distance
from θ*(λ) is where it settles, not a run stopped early.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import wd_jax
from wd_jax.engine import data as data_lib
from wd_jax.engine import train

STEPS = 8_000  # full-batch steps of every run (cosine decay of the lr to 0)
EPS = 1e-8  # Adam's ε (optax's default)


def _problem(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  ds = data_lib.linear_regression(num_examples=64, dim=8, noise=0.5, seed=seed)
  return np.asarray(ds.x_train, np.float64), np.asarray(ds.y_train, np.float64)


def _loss(x, y, theta):
  return train.loss_and_metrics("regression", x @ theta, y)[0]  # the engine's loss


def _full_batch(opt, x, y, steps: int = STEPS) -> np.ndarray:
  """θ after `steps` full-batch steps of `opt` from θ = 0, in float64 (under x64)."""
  x, y = jnp.asarray(x), jnp.asarray(y)
  grad = jax.grad(lambda t: _loss(x, y, t))

  def body(carry, _):
    t, s = carry
    u, s = opt.update(grad(t), s, t)
    return (optax.apply_updates(t, u), s), None

  theta = jnp.zeros(x.shape[1], jnp.float64)
  final = jax.jit(lambda c: jax.lax.scan(body, c, None, length=steps)[0])((theta, opt.init(theta)))
  return np.asarray(final[0])


def adamw_fixed_point(x, y, lam: float, eps: float = EPS) -> np.ndarray:
  """The θ where full-batch AdamW stops: ∇loss_i = −λθ_i ε/(1 − λ|θ_i|) for every i (m̂ = g,
  v̂ = g² at rest), solved by iterating the per-coordinate ridge solve to its fixed point."""
  n = x.shape[0]
  gram, rhs = x.T @ x / n, x.T @ y / n
  theta = np.linalg.solve(gram, rhs)
  for _ in range(50):
    strength = lam * eps / (1.0 - lam * np.abs(theta))
    theta = np.linalg.solve(gram + np.diag(strength), rhs)
  return theta


def test_the_engine_loss_makes_the_ridge_solution_a_stationary_point():
  """∇loss + λθ vanishes at `ridge_solution` under the engine's regression loss, and not
  trivially: λθ* is far from 0."""
  with jax.enable_x64(True):
    x, y = _problem()
    lam = 0.1
    theta = jnp.asarray(data_lib.ridge_solution(x, y, lam))
    value, g = jax.value_and_grad(lambda t: _loss(jnp.asarray(x), jnp.asarray(y), t))(theta)
    r = x @ np.asarray(theta) - y
    np.testing.assert_allclose(float(value), 0.5 * r @ r / len(r), rtol=1e-14)
    assert float(jnp.linalg.norm(g + lam * theta)) < 1e-14
    assert float(jnp.linalg.norm(g)) > 1e-2


def test_coupled_l2_reaches_the_ridge_solution_and_adamw_does_not():
  with jax.enable_x64(True):
    x, y = _problem()
    lam = 0.3
    ridge = data_lib.ridge_solution(x, y, lam)
    least_squares = data_lib.ridge_solution(x, y, 0.0)
    shrink = np.linalg.norm(ridge - least_squares)  # how far λ moves the solution
    assert shrink > 0.05  # the comparison below is not a rounding error
    lr_adam = 2e-2
    tau = 1.0 / (lr_adam * lam)  # AdamW's decay timescale at the peak lr, in steps
    assert STEPS >= 30 * tau  # cosine: Σ_t α_t λ = STEPS / (2τ) ≥ 15 timescales of decay
    cosine = lambda peak: optax.cosine_decay_schedule(peak, STEPS)
    coupled = {
      "sgd_l2": wd_jax.sgd_l2(cosine(0.5), lam),
      "sgd_l2 (momentum 0.9)": wd_jax.sgd_l2(cosine(0.1), lam, momentum=0.9),
      "adam_l2": wd_jax.adam_l2(cosine(lr_adam), lam),
    }
    for name, opt in coupled.items():
      theta = _full_batch(opt, x, y)
      assert np.max(np.abs(theta - ridge)) < 1e-12, name
    theta_w = _full_batch(wd_jax.adamw(cosine(lr_adam), weight_decay=lam), x, y)
    fixed = adamw_fixed_point(x, y, lam)
    # AdamW settles on its own fixed point (to 1% of the margin) and misses θ*(λ) by almost the
    # whole shrinkage λ causes: it lands next to least squares.
    assert np.linalg.norm(theta_w - fixed) < 0.01 * shrink
    assert np.linalg.norm(theta_w - ridge) > 0.95 * shrink
    assert np.linalg.norm(fixed - least_squares) < 1e-6 * shrink
