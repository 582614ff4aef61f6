"""matched_weight_decay: the λ of Adam's own decays whose initial shrink matches a timescale."""

import math

import jax
import jax.numpy as jnp
import pytest

import wd_jax


def _l2_shrink_through_adam(params, grad_sq, lam, lr, steps=4000, seed=0):
  """The per-step shrink of ‖θ‖² along θ from λθ alone, read from a tracked Adam+L2 state after
  `steps` updates at fixed θ with random-sign loss gradients of size √G (so v̂ → G + λ²θ²)."""
  opt = wd_jax.adam_l2(lr, lam, track_moments=True)
  keys = jax.random.split(jax.random.key(seed), steps)

  def body(state, key):
    sign = jax.tree.map(
      lambda g: jnp.where(jax.random.bernoulli(key, 0.5, g.shape), 1.0, -1.0), grad_sq
    )
    g = jax.tree.map(lambda s, g2: s * jnp.sqrt(g2), sign, grad_sq)
    _, state = opt.update(g, state, params)
    return state, None

  state, _ = jax.lax.scan(body, opt.init(params), keys)
  tracked = wd_jax.transforms.find_states(state, wd_jax.TrackedAdamL2State)[0]
  t = float(tracked.count)
  num = den = 0.0
  for th, m_l2, nu in zip(*(jax.tree.leaves(x) for x in (params, tracked.mu_l2, tracked.nu))):
    step = (m_l2 / (1 - 0.9**t)) / (jnp.sqrt(nu / (1 - 0.999**t)) + 1e-8)
    num += float(jnp.sum(th * lr * step))
    den += float(jnp.sum(th * th))
  return num / den


@pytest.mark.parametrize("tau", [300.0, 3000.0])
def test_adam_l2_lambda_shrinks_the_weights_at_one_over_tau_through_the_optimizer(tau):
  key = jax.random.key(1)
  params = {"a": jax.random.normal(key, (64,)), "b": 0.3 * jnp.ones((8, 4))}
  grad_sq = {"a": jnp.linspace(1e-6, 4e-4, 64), "b": jnp.full((8, 4), 1e-5)}
  lr = 1e-2  # the fastest τ Adam+L2 reaches is ~1/(α E|θ|/Eθ²) ≈ 130 steps here
  lam = wd_jax.matched_weight_decay(
    tau, optimizer="adam_l2", params=params, grad_sq=grad_sq, learning_rate=lr
  )
  measured = _l2_shrink_through_adam(params, grad_sq, lam, lr)
  assert measured == pytest.approx(1 / tau, rel=0.05)


def test_adams_lambda_is_the_closed_form():
  params = {"w": jnp.ones((3, 3)), "b": jnp.zeros(3)}
  grad_sq = {"w": jnp.full((3, 3), 4e-6), "b": jnp.full(3, 1e-6)}
  mean_v = (9 * 4e-6 + 3 * 1e-6) / 12
  lam = wd_jax.matched_weight_decay(
    500, optimizer="adams", params=params, grad_sq=grad_sq, learning_rate=2e-3
  )
  assert lam == pytest.approx(math.sqrt(mean_v) / (2e-3 * 500), rel=1e-6)  # float32 G


def test_the_mask_decides_which_weights_are_matched():
  params = {"kernel": jnp.full(4, 0.5), "bias": jnp.full(2, 3.0)}
  grad_sq = {"kernel": jnp.full(4, 1e-4), "bias": jnp.full(2, 1.0)}
  mask = {"kernel": True, "bias": False}
  lam = wd_jax.matched_weight_decay(
    4000, optimizer="adam_l2", params=params, grad_sq=grad_sq, learning_rate=1e-3, mask=mask
  )
  only_kernel = wd_jax.matched_weight_decay(
    4000,
    optimizer="adam_l2",
    params={"kernel": params["kernel"]},
    grad_sq={"kernel": grad_sq["kernel"]},
    learning_rate=1e-3,
  )
  assert lam == pytest.approx(only_kernel, rel=1e-9)
  # Closed form with one G: α λ/√(G + λ²θ²) = 1/τ  →  λ² (α²τ² − θ²) = G
  g, th, a, tau = 1e-4, 0.5, 1e-3, 4000.0
  assert lam == pytest.approx(math.sqrt(g / (a * a * tau * tau - th * th)), rel=1e-6)


def test_a_timescale_faster_than_adam_can_shrink_is_refused_with_the_fastest():
  params, grad_sq = {"w": jnp.ones(4)}, {"w": jnp.full(4, 1e-4)}
  with pytest.raises(ValueError, match=r"tau_steps=500.*exceed 1000 steps"):
    wd_jax.matched_weight_decay(
      500, optimizer="adam_l2", params=params, grad_sq=grad_sq, learning_rate=1e-3
    )


@pytest.mark.parametrize(
  "kwargs, match",
  [
    ({"optimizer": "adamw"}, "optimizer"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"mask": {"w": False}}, "decays nothing"),
    ({"grad_sq": {"w": jnp.ones(3)}}, "same tree"),
  ],
)
def test_bad_arguments_name_themselves(kwargs, match):
  args = dict(
    optimizer="adam_l2", params={"w": jnp.ones(4)}, grad_sq={"w": jnp.ones(4)}, learning_rate=1e-3
  )
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    wd_jax.matched_weight_decay(1000, **args)
