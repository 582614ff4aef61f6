# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Coupled L2 versus decoupled weight decay, seen from inside Adam
#
# This tutorial composes the two kinds of weight decay as Optax chains, trains two small MLPs on
# MNIST-1D (generated locally, no download) and *sees* what coupled L2 does to Adam: how far the
# λθ term turns Adam's step away from the step the loss alone would take. It runs in well under
# five minutes on a laptop CPU.
#
# It is a [jupytext](https://jupytext.readthedocs.io) percent script: run it as
# `python docs/tutorial.py [output_dir]`, or open it as a notebook with jupytext.
# It needs `pip install "wd-jax[studies]"` (the data and the plot).

# %%
import itertools
import os
import sys

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

import wd_jax
from wd_jax.engine.data import mnist1d

if "ipykernel" not in sys.modules:
  matplotlib.use("Agg")
import matplotlib.pyplot as plt

OUT = sys.argv[1] if len(sys.argv) > 1 and "ipykernel" not in sys.modules else "."
os.makedirs(OUT, exist_ok=True)

# %% [markdown]
# ## 1. Two chains, one line each
#
# Coupled L2 adds λθ to the gradient *before* Adam's moments, so λθ enters the first moment m
# and the second moment v: it is a chain element placed first. Decoupled decay subtracts αλθ
# *after* Adam has built its whole step from the loss gradient alone, so it wraps the complete
# optimizer (inside a chain it could be rescaled or flip sign, and wd-jax refuses it there):

# %%
LR, L2, WD = 3e-3, 0.01, 0.1  # any values, to compare the compositions with the recipes

coupled = optax.chain(wd_jax.add_l2(L2), optax.adam(LR))
decoupled = wd_jax.decoupled_weight_decay(WD, learning_rate=LR)(optax.adam(LR))

# The same two optimizers as ready-made recipes; `track_moments=True` keeps the exact split of
# m into the loss's part and the L2 part, which the diagnostics read.
adam_l2 = wd_jax.adam_l2(LR, L2, track_moments=True)
adamw = wd_jax.adamw(LR, weight_decay=WD)

params = {"w": jnp.array([1.0, -2.0])}
g = {"w": jnp.array([0.5, 0.5])}
for name, chain, recipe in (("coupled", coupled, adam_l2), ("decoupled", decoupled, adamw)):
  u_chain, _ = chain.update(g, chain.init(params), params)
  u_recipe, _ = recipe.update(g, recipe.init(params), params)
  np.testing.assert_allclose(u_chain["w"], u_recipe["w"], rtol=1e-6)
  print(f"{name:>9}: first update {np.asarray(u_chain['w'])}")

# %% [markdown]
# On the first step Adam normalises g + λθ coordinate by coordinate, so the coupled update's
# sizes are all about α; the decoupled update is α·sign(g) plus a separate αλθ shrink.
#
# ## 2. One strength, two λ
#
# The two λ above are not comparable: L2's λ is a gradient term that Adam then divides by √v̂,
# AdamW's is a shrink rate per unit of learning rate. Compare decays at one *strength*: the
# timescale τ over which they shrink the weights, as a fraction of the run T. AdamW's λ for a
# timescale is 1/(α τ); Adam + L2's is the λ that shrinks the weights as fast at the start,
# which depends on the size of the loss gradient there (`wd_jax.matched_weight_decay`).
#
# A two-layer MLP on MNIST-1D, written as a plain function of a parameter dict:

# %%
data = mnist1d(seed=0)


def init_mlp(key, sizes=(40, 256, 256, 10)):
  params = {}
  for i, (a, b) in enumerate(itertools.pairwise(sizes)):
    key, sub = jax.random.split(key)
    params[f"dense{i}"] = {
      "kernel": jax.random.normal(sub, (a, b)) * jnp.sqrt(2.0 / a),
      "bias": jnp.zeros(b),
    }
  return params


def apply_mlp(params, x):
  *hidden, last = params.values()
  for layer in hidden:
    x = jax.nn.relu(x @ layer["kernel"] + layer["bias"])
  return x @ last["kernel"] + last["bias"]


def loss_fn(params, x, y):
  logits = apply_mlp(params, x)
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def batch(key, size=128):
  idx = jax.random.randint(key, (size,), 0, data.x_train.shape[0])
  return data.x_train[idx], data.y_train[idx]


STEPS, TAU_OVER_T = 1000, 1 / 8  # the weights decay eight times over within the run
mask = {f"dense{i}": {"kernel": True, "bias": False} for i in range(3)}  # kernels only
init = init_mlp(jax.random.key(0))

# The loss's mean squared gradient at initialisation, over 16 batches (Adam's v̂ at the start).
sq = [
  jax.tree.map(jnp.square, jax.grad(loss_fn)(init, *batch(k)))
  for k in jax.random.split(jax.random.key(2), 16)
]
grad_sq = jax.tree.map(lambda *x: sum(x) / len(x), *sq)

tau = TAU_OVER_T * STEPS
lam_l2 = wd_jax.matched_weight_decay(
  tau, optimizer="adam_l2", params=init, grad_sq=grad_sq, learning_rate=LR, mask=mask
)
lam_w = wd_jax.timescale_weight_decay(tau, learning_rate=LR)
print(f"τ = {tau:g} steps: Adam + L2 λ = {lam_l2:.3g}, AdamW λ = {lam_w:.3g}")

# %% [markdown]
# ## 3. Two models, trained side by side
#
# One jitted step per optimizer, from the same initial weights and batches. The step also
# returns the measurement this tutorial is about:
#
# * for Adam + L2, `wd_jax.diagnostics.pollution` compares Adam's step m/d with the step the
#   loss's own share of m would give, m_loss/d (same preconditioner d = √v̂ + ε);
# * for AdamW, `wd_jax.diagnostics.step_deviation` compares the step with the step of the same
#   state with λ = 0.
#
# Both give `step_cos` (1: the step is the loss's) and `step_ratio`, the size of the decay's
# part relative to the loss's part.

# %%
opts = {
  "Adam + L2": wd_jax.adam_l2(LR, lam_l2, mask=mask, track_moments=True),
  "AdamW": wd_jax.adamw(LR, weight_decay=lam_w, mask=mask),
}
adamw_no_decay = wd_jax.adamw(LR, weight_decay=0.0, mask=mask)


def make_step(name):
  opt = opts[name]

  @jax.jit
  def step(params, state, key):
    grads = jax.grad(loss_fn)(params, *batch(key))
    updates, new_state = opt.update(grads, state, params)
    if name == "AdamW":  # the loss-only step from the same state
      u0, _ = adamw_no_decay.update(grads, state, params)
      seen = wd_jax.diagnostics.step_deviation(updates, u0)
    else:
      seen = wd_jax.diagnostics.pollution(new_state)
    return optax.apply_updates(params, updates), new_state, seen

  return step


history = {}
for name in opts:
  params = init  # the same initial weights and batches for both
  state, step = opts[name].init(params), make_step(name)
  key = jax.random.key(1)
  cos, ratio = [], []
  for _ in range(STEPS):
    key, sub = jax.random.split(key)
    params, state, seen = step(params, state, sub)
    cos.append(float(seen["step_cos"]))
    ratio.append(float(seen["step_ratio"]))
  pred = jnp.argmax(apply_mlp(params, data.x_test), -1)
  acc = float(jnp.mean(pred == data.y_test))
  history[name] = (np.array(cos), np.array(ratio), acc)
  print(
    f"{name:>9}: test accuracy {acc:.3f}, median step_cos over the last third "
    f"{np.median(cos[-STEPS // 3 :]):.3f}, median step_ratio {np.median(ratio[-STEPS // 3 :]):.3f}"
  )

# %% [markdown]
# ## 4. See it
#
# What the headline study (`l2_pollution`) logs and draws, for these two runs: the cosine
# between each optimizer's step and its loss-only step, and the size of the decay's part, over
# training.

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
for name, (cos, ratio, acc) in history.items():
  axes[0].plot(cos, label=f"{name} (test acc {acc:.2f})", lw=1)
  axes[1].plot(ratio, label=name, lw=1)
axes[0].set(xlabel="step", ylabel="cos(step, loss-only step)", ylim=(-0.05, 1.05))
axes[1].set(xlabel="step", ylabel="‖decay part‖ / ‖loss part‖", yscale="log")
for ax in axes:
  ax.legend(fontsize=8)
fig.tight_layout()
path = os.path.join(OUT, "tutorial_pollution.png")
fig.savefig(path, dpi=100)
print("wrote", path)

# %% [markdown]
# What to read from it: at one strength, compare how far each decay turns the step (the
# medians printed above) and how the turn evolves. Both turn it: τ/T = 1/8 decays the weights
# eight times over, so the decay's part of every step is a sizeable fraction of the loss's. The
# difference is where the decay lives: Adam + L2's λθ is in m (it carries over from step to
# step) and in v (it shrinks the loss's part of the step); AdamW's is a separate shrink with no
# memory. Whether coupled L2 turns the step *more* than decoupled decay at matched strength, and
# whether it costs accuracy, is what the `l2_pollution` study decides over seeds, strengths and
# learning rates, with pre-registered claims and paired statistics (`docs/RESULTS.md`).
