"""Every recipe survives what `optax.adamw` survives: random pytrees (empty, scalar, complex,
bfloat16/float16, nested containers) through init, update, jit, vmap and inject_hyperparams.

For each tree `optax.adamw` is run through the same stages (eager init and update, then
jit∘vmap∘inject_hyperparams, which injects every numeric default, as it does for optax's
own); wherever adamw works, every recipe must work too, give updates shaped like the params
(and of the dtype adamw gives), keep its state's dtypes through an update, and stay finite
wherever adamw stays finite."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import wd_jax

LR, WD = 1e-2, 1e-2

RECIPES = {
  **{name: wd_jax.OPTIMIZERS[name] for name in sorted(wd_jax.OPTIMIZERS)},
  "adam_l2_tracked": functools.partial(wd_jax.adam_l2, track_moments=True),
  "adamw_cautious_l2sp": functools.partial(wd_jax.adamw, cautious=True, reference="init"),
  "muon_torch": functools.partial(wd_jax.muon, convention="torch"),
  "lamb_after_trust_ratio": functools.partial(wd_jax.lamb, decay_in_trust_ratio=False),
}


DTYPES = ("float32", "float64", "bfloat16", "float16", "complex64")
SHAPES = ((), (3,), (2, 3), (4, 2), (2, 2, 3))
_leaf = st.tuples(st.sampled_from(DTYPES), st.sampled_from(SHAPES), st.integers(0, 2**16))
_keys = st.text("abcxyz", min_size=1, max_size=3)
TREES = st.recursive(
  _leaf,
  lambda children: st.one_of(
    st.dictionaries(_keys, children, max_size=3),
    st.lists(children, max_size=3),
    st.lists(children, max_size=2).map(tuple),
  ),
  max_leaves=5,
)


def _is_spec(x):
  return isinstance(x, tuple) and len(x) == 3 and isinstance(x[0], str) and x[0] in DTYPES


def _materialize(spec, scale=1.0):
  """Arrays from (dtype, shape, seed) specs: params (scale 1) or gradients (scale 0.1)."""

  def leaf(s):
    dtype, shape, seed = s
    rng = np.random.default_rng(seed + (0 if scale == 1.0 else 7919))
    x = rng.normal(size=shape) + (1j * rng.normal(size=shape) if dtype == "complex64" else 0)
    return jnp.asarray(scale * x, dtype)

  return jax.tree.map(leaf, spec, is_leaf=_is_spec)


KITCHEN_SINK = {
  "scalar": ("float32", (), 1),
  "complex": [("complex64", (2, 3), 2), ("complex64", (3,), 3)],
  "half": (("bfloat16", (4, 2), 4), ("float16", (2, 2, 3), 5)),
  "nested": {"x": {"y": ("float64", (2, 3), 6)}, "empty": [], "none": {}},
}


def _stages(make, params, grads, lam="weight_decay", static=()):
  """What each stage gives, or the exception it raised: eager, and jit∘vmap∘inject_hyperparams.
  `lam` is the recipe's name for λ (optax's: ``weight_decay_rate`` for Adafactor); `static`
  the integers that set shapes (Adafactor's factoring, as for optax.adafactor)."""
  out = {}
  try:
    opt = make(learning_rate=LR, **{lam: WD})
    s0 = opt.init(params)
    u, s1 = opt.update(grads, s0, params)
    out["eager"] = (u, s0, s1)
  except Exception as e:
    out["eager"] = e
  try:
    inj = optax.inject_hyperparams(make, static)(learning_rate=LR, **{lam: WD})
    stack = lambda t: jax.tree.map(lambda x: jnp.stack([x, 0.5 * x]), t)
    ps, gs = stack(params), stack(grads)
    sv = jax.vmap(inj.init)(ps)
    uv, _ = jax.jit(jax.vmap(inj.update))(gs, sv, ps)
    out["jit_vmap_inject"] = uv
  except Exception as e:
    out["jit_vmap_inject"] = e
  return out


def _finite(tree):
  return [bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree)]


def _check_like_adamw(name, spec):
  params, grads = _materialize(spec), _materialize(spec, 0.1)
  ref = _stages(optax.adamw, params, grads)  # inject_hyperparams injects all its defaults
  assert not isinstance(ref["eager"], Exception), ref["eager"]  # every drawn tree suits adamw
  if name == "adafactor":
    ours = _stages(RECIPES[name], params, grads, "weight_decay_rate", ("min_dim_size_to_factor",))
  else:
    ours = _stages(RECIPES[name], params, grads)
  for stage, got in ours.items():
    if isinstance(ref[stage], Exception):
      continue  # adamw cannot do this stage on this tree either (vmap of an empty tree)
    if isinstance(got, Exception):
      raise AssertionError(f"{name} failed at {stage} where optax.adamw works") from got
    updates = got[0] if stage == "eager" else got
    ref_updates = ref[stage][0] if stage == "eager" else ref[stage]
    assert jax.tree.structure(updates) == jax.tree.structure(ref_updates)
    for ok_ref, ok in zip(_finite(ref_updates), _finite(updates)):
      assert ok or not ok_ref, f"{name}: non-finite update at {stage} where adamw is finite"
    if stage == "eager":
      chex.assert_trees_all_equal_dtypes(updates, ref_updates)
      _, s0, s1 = got
      assert jax.tree.map(lambda x: x.dtype, s0) == jax.tree.map(lambda x: x.dtype, s1)


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


@pytest.mark.parametrize("tree", ["empty", "kitchen_sink"])
@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_survives_what_adamw_survives(name, tree):
  _check_like_adamw(name, {} if tree == "empty" else KITCHEN_SINK)


@settings(
  max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(
  spec=TREES.filter(lambda t: jax.tree.leaves(t, is_leaf=_is_spec)),  # empty: the test above
  name=st.sampled_from(sorted(RECIPES)),
)
@example(spec=("bfloat16", (), 0), name="muon")
@example(spec=[("complex64", (2, 3), 1)], name="adafactor")
def test_random_trees(spec, name):
  specs = jax.tree.leaves(spec, is_leaf=_is_spec)
  for dtype in sorted({s[0] for s in specs}):
    event(f"dtype {dtype}")
  event("a bare leaf" if _is_spec(spec) else "containers")
  _check_like_adamw(name, spec)
