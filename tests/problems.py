"""Small problems the optimizer tests share (float64 unless asked otherwise)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax


def teacher_problem(seed: int = 0, steps: int = 120, batch: int = 32):
  """Initial params of a 8→16→4 tanh MLP and a stream of (x, y) teacher batches, numpy float64."""
  rng = np.random.default_rng(seed)
  params = {
    "w1": rng.normal(size=(8, 16)) / np.sqrt(8),
    "b1": 0.5 * rng.normal(size=(16,)),
    "w2": rng.normal(size=(16, 4)) / 4,
    "b2": 0.5 * rng.normal(size=(4,)),
  }
  teacher = rng.normal(size=(8, 4))
  xs = rng.normal(size=(steps, batch, 8))
  ys = np.sin(xs @ teacher) + 0.1 * rng.normal(size=(steps, batch, 4))
  return params, xs, ys


def teacher_loss(p, x, y):
  """½ mean squared error of the `teacher_problem` MLP."""
  out = jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
  return 0.5 * jnp.mean(jnp.sum((out - y) ** 2, axis=-1))


teacher_grad = jax.jit(jax.grad(teacher_loss))  # one compile shared by every test


def train_teacher(opt, params, xs, ys):
  """Final params (numpy float64) after one jitted `opt` step per `teacher_problem` batch.

  λ stays a Python float inside `opt`, as users pass it: a traced float64 λ would
  promote float32 schedule products to float64 and hide a float32 rounding of c_t·λ.
  """

  @jax.jit
  def update(p, s, g):
    u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), s

  p = jax.tree.map(jnp.asarray, params)
  s = opt.init(p)
  for x, y in zip(xs, ys):
    p, s = update(p, s, teacher_grad(p, x, y))
  chex.assert_trees_all_equal_dtypes(p, jax.tree.map(jnp.asarray, params))  # still float64
  return jax.tree.map(np.asarray, p)


def nested_params(seed: int = 0, dtype=jnp.float64):
  """A small nested tree with kernels, biases and a head: what masks and decays act on."""
  k = jax.random.split(jax.random.key(seed), 4)
  return {
    "w1": jax.random.normal(k[0], (5, 7), dtype),
    "b1": jax.random.normal(k[1], (7,), dtype),
    "head": {"kernel": jax.random.normal(k[2], (7, 3), dtype), "bias": jnp.ones((3,), dtype)},
  }
