"""Drop-in for optax: every recipe named as an optax optimizer is that optimizer when called the
same way (positional order, defaults, λ included), and the frictions of moving optax code over
are gone: learning rates from 0, a base that already decays, the lr of an injected base, masks
through inject_hyperparams, schedule-free warmup with a schedule, calls shaped for the former
signatures (float64)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from problems import nested_params

import wd_jax

LR = 0.02
WARMUP_FROM_0 = optax.warmup_cosine_decay_schedule(0.0, LR, 3, 12)


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


def _optax_namesake(name):
  return getattr(optax.contrib if name in ("muon", "schedule_free_adamw") else optax, name)


def _updates(opt, steps=6, params=None):
  """Each step's update on a nested float64 tree, fed gradients of its own params."""
  p = nested_params() if params is None else params
  s, out = opt.init(p), []
  for t in range(steps):
    g = jax.tree.map(lambda x, t=t: jnp.sin((t + 1) * x) + 0.1, p)
    u, s = opt.update(g, s, p)
    out.append(u)
    p = optax.apply_updates(p, u)
  return out


def _assert_same(ours, theirs):
  for step, (a, b) in enumerate(zip(ours, theirs)):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      np.testing.assert_allclose(x, y, rtol=1e-11, atol=1e-15, err_msg=f"step {step}")


_matrices = lambda p: jax.tree.map(lambda x: x.ndim == 2, p)
_bias_free = {"w1": True, "b1": False, "head": {"kernel": True, "bias": False}}

# (positional args, keywords) passed unchanged to optax.<name> and wd_jax.<name>.
CALLS = {
  "adamw": [
    ((LR,), {}),
    ((0.0,), {}),
    ((LR, 0.8, 0.99, 1e-7, 1e-9, None, 0.3, _matrices), {}),
    ((LR,), {"b1": 0.5, "weight_decay": 0.1, "mask": _bias_free, "nesterov": True}),
  ],
  "nadamw": [((LR,), {}), ((LR, 0.8, 0.99, 1e-7, 0.0, None, 0.05, _bias_free), {})],
  "lion": [((LR,), {}), ((LR, 0.8, 0.95, None, 0.01, _matrices), {})],
  "lamb": [((LR,), {}), ((LR, 0.8, 0.99, 1e-5, 0.0, 0.02, _bias_free), {})],
  "adan": [((LR,), {}), ((LR, 0.9, 0.9, 0.95, 1e-7, 1e-8, 0.02, _matrices), {})],
  "adafactor": [
    ((), {}),
    ((LR,), {}),
    ((LR, 2, 0.7, 0, True, 1.0, None, jnp.float32, 0.01, 1e-30, True, _matrices), {}),
    ((LR,), {"momentum": 0.9, "weight_decay_rate": 0.05, "clipping_threshold": None}),
  ],
  "muon": [
    ((LR,), {}),
    ((LR, (3.4445, -4.775, 2.0315), 4, 0.9, 1e-8, 0.05), {"adam_weight_decay": 0.02}),
    ((LR,), {"ns_coeffs": "dion", "weight_decay": 0.1, "nesterov": False, "adaptive": True}),
    ((LR,), {"weight_decay": 0.1, "weight_decay_mask": _bias_free, "consistent_rms": 0.2}),
  ],
  "schedule_free_adamw": [((), {}), ((LR, 3), {}), ((LR, None, 0.8, 0.99, 1e-7, 0.01), {})],
}
CASES = [(name, i) for name, calls in CALLS.items() for i in range(len(calls))]


@pytest.mark.parametrize(("name", "case"), CASES)
def test_recipe_called_like_its_optax_namesake_is_that_optimizer(name, case):
  args, kw = CALLS[name][case]
  _assert_same(
    _updates(getattr(wd_jax, name)(*args, **kw)), _updates(_optax_namesake(name)(*args, **kw))
  )


# Integer hyperparameters that set loop counts or shapes stay Python ints (as for optax's own).
STATIC = {"muon": ("ns_steps",), "adafactor": ("min_dim_size_to_factor",)}


@pytest.mark.parametrize("name", list(CALLS))
def test_warmup_from_zero_through_inject_hyperparams(name):
  ours, theirs = (
    optax.inject_hyperparams(f, static_args=STATIC.get(name, ()))(learning_rate=WARMUP_FROM_0)
    for f in (getattr(wd_jax, name), _optax_namesake(name))
  )
  _assert_same(_updates(ours, steps=14), _updates(theirs, steps=14))  # α = 0 first and last


class _Net(nnx.Module):
  def __init__(self, rngs):
    self.hidden = nnx.Linear(4, 8, rngs=rngs, param_dtype=jnp.float64)
    self.out = nnx.Linear(8, 2, rngs=rngs, param_dtype=jnp.float64)

  def __call__(self, x):
    return self.out(jnp.tanh(self.hidden(x)))


def _train_nnx(tx, steps=5):
  model = _Net(nnx.Rngs(0))
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
  x = jnp.linspace(-1.0, 1.0, 12, dtype=jnp.float64).reshape(3, 4)

  @nnx.jit
  def step(model, opt):
    opt.update(model, nnx.grad(lambda m: jnp.mean(m(x) ** 2))(model))

  for _ in range(steps):
    step(model, opt)
  return nnx.state(model, nnx.Param)


@pytest.mark.parametrize("name", list(CALLS))
def test_warmup_from_zero_inside_nnx_optimizer(name):
  ours, theirs = (
    _train_nnx(
      optax.inject_hyperparams(f, static_args=STATIC.get(name, ()))(learning_rate=WARMUP_FROM_0)
    )
    for f in (getattr(wd_jax, name), _optax_namesake(name))
  )
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
    np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-15)
  assert (
    max(
      float(jnp.max(jnp.abs(a - b)))
      for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(_train_nnx(optax.identity())))
    )
    > 1e-4
  )  # it trained


# ---------------------------------------------------------------------------------------------
# Learning rates of 0.


@pytest.mark.parametrize("name", sorted(wd_jax.OPTIMIZERS))
def test_a_learning_rate_of_zero_is_a_learning_rate(name):
  opt = wd_jax.get_optimizer(name, learning_rate=0.0, weight_decay=0.1)
  for u in _updates(opt, steps=2):
    chex_finite = [bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(u)]
    assert all(chex_finite)
  lam = {"weight_decay_rate": 0.1} if name == "adafactor" else {"weight_decay": 0.1}
  injected = optax.inject_hyperparams(wd_jax.OPTIMIZERS[name], static_args=STATIC.get(name, ()))
  injected(learning_rate=WARMUP_FROM_0, **lam).init(nested_params())


def test_a_peak_learning_rate_of_zero_is_refused_where_a_coupling_divides_by_it():
  with pytest.raises(ValueError, match=r"coupling='schedule' divides by the peak.*0\.0"):
    wd_jax.adamw(0.0, coupling="schedule")
  with pytest.raises(ValueError, match=r"peak_learning_rate must be > 0"):
    wd_jax.adamw(WARMUP_FROM_0, coupling="corrected", peak_learning_rate=0.0)
  with pytest.raises(ValueError, match=r"divides by the peak"):
    wd_jax.decay_factor("schedule", 0.0, None, 0)
  with pytest.raises(ValueError, match=r"multiplies λ by 0"):
    wd_jax.timescale_weight_decay(100, learning_rate=0.0)
  assert float(wd_jax.decay_factor("lr", 0.0, None, 0)) == 0.0  # "lr" does not divide


# ---------------------------------------------------------------------------------------------
# Calls shaped for the former signatures.

FORMER_CALLS = {
  "adamw_lambda_one": (
    lambda: wd_jax.adamw(1e-3, 1.0),
    r"b1 must be.*wd_jax\.adamw\(learning_rate, weight_decay=λ\)",
  ),
  "adamw_lambda_schedule": (
    lambda: wd_jax.adamw(1e-3, optax.linear_schedule(0.1, 0.0, 10)),
    r"b1 must be a number.*weight_decay=λ",
  ),
  "lion_lambda_one": (lambda: wd_jax.lion(1e-3, 1.0), r"b1 must be.*wd_jax\.lion"),
  "lamb_lambda_above_one": (lambda: wd_jax.lamb(1e-3, 2.0), r"b1 must be.*weight_decay=λ"),
  "nadamw_lambda_one": (lambda: wd_jax.nadamw(1e-3, 1.0), r"b1 must be.*wd_jax\.nadamw"),
  "adan_lambda_above_one": (lambda: wd_jax.adan(1e-3, 2.0), r"b1 must be.*wd_jax\.adan"),
  "muon_lambda": (lambda: wd_jax.muon(1e-3, 0.1), r"ns_coeffs must be.*weight_decay=λ"),
  "adafactor_lambda": (
    lambda: wd_jax.adafactor(1e-3, 0.01),
    r"min_dim_size_to_factor must be an int.*weight_decay_rate=λ",
  ),
  "schedule_free_lambda": (
    lambda: wd_jax.schedule_free_adamw(1e-3, 1e-4),
    r"warmup_steps must be an int.*weight_decay=λ",
  ),
  "adafactor_weight_decay": (
    lambda: wd_jax.adafactor(1e-3, weight_decay=0.01),
    r"no weight_decay=.*wd_jax\.adafactor\(\.\.\., weight_decay_rate=0\.01\)",
  ),
  "adafactor_mask": (
    lambda: wd_jax.adafactor(1e-3, mask=wd_jax.default_mask),
    r"no mask=.*weight_decay_mask=",
  ),
  "adafactor_relative_step": (
    lambda: wd_jax.adafactor(1e-3, relative_step=True),
    r"no relative_step=.*convention='torch'",
  ),
  "muon_mask": (lambda: wd_jax.muon(1e-3, mask=_matrices), r"no mask=.*weight_decay_mask="),
}


@pytest.mark.parametrize("case", list(FORMER_CALLS))
def test_a_former_call_that_can_be_seen_fails_showing_the_new_call(case):
  call, message = FORMER_CALLS[case]
  with pytest.raises(ValueError, match=message):
    call()


@pytest.mark.parametrize("name", sorted(wd_jax.OPTIMIZERS))
def test_at_most_one_count_by_default_as_optax(name):
  """optax.tree.get(state, "count") works where the state counts steps (Adan's count is its
  own `t`; SGD keeps none), and a namesake holds as many counts as optax's (Muon: its Muon
  and Adam branches count each, as optax.contrib.muon's)."""
  params = nested_params()
  counts = len(
    optax.tree.get_all_with_path(wd_jax.get_optimizer(name, learning_rate=LR).init(params), "count")
  )
  if name in CALLS:
    assert counts == len(
      optax.tree.get_all_with_path(_optax_namesake(name)(LR).init(params), "count")
    )
  assert counts <= (2 if name == "muon" else 1)


def test_adafactor_keeps_torchs_rule_behind_convention():
  p = {"w": jnp.full((3, 2), 2.0)}
  zero = {"w": jnp.zeros((3, 2))}
  optax_rule = wd_jax.adafactor(0.1, weight_decay_rate=0.5)
  torch_rule = wd_jax.adafactor(0.1, weight_decay_rate=0.5, convention="torch")
  np.testing.assert_allclose((p["w"] + optax_rule.update(zero, optax_rule.init(p), p)[0]["w"]), 1.0)
  np.testing.assert_allclose((p["w"] + torch_rule.update(zero, torch_rule.init(p), p)[0]["w"]), 1.9)
  with pytest.raises(ValueError, match="learning_rate is required with convention='torch'"):
    wd_jax.adafactor(convention="torch")
  with pytest.raises(ValueError, match="convention='torch' factors every matrix"):
    wd_jax.adafactor(0.1, 4, convention="torch")


# ---------------------------------------------------------------------------------------------
# with_weight_decay around a base that already decays, or keeps its lr in inject_hyperparams.

DECAYING_BASES = {
  "adamw_default": (lambda: optax.adamw(1e-3), r"-1e-07·θ.*weight_decay=0\.0001"),
  "lion_default": (lambda: optax.lion(1e-3), r"-1e-06·θ.*weight_decay=0\.001"),
  "adamw_warmup_from_0": (lambda: optax.adamw(WARMUP_FROM_0, weight_decay=0.1), r"step 1"),
  "adamw_mask_tree": (lambda: optax.adamw(1e-3, mask=_bias_free), r"decays the weights"),
  "muon_matrices": (lambda: optax.contrib.muon(1e-3, weight_decay=0.1), r"decays the weights"),
  "muon_adam_leaves": (
    lambda: optax.contrib.muon(1e-3, adam_weight_decay=0.1),
    r"decays the weights",
  ),
  "injected_adamw": (
    lambda: optax.inject_hyperparams(optax.adamw)(learning_rate=1e-3),
    r"decays the weights",
  ),
}


@pytest.mark.parametrize("base", list(DECAYING_BASES))
@pytest.mark.parametrize("init", ["eager", "jit", "vmap"])
def test_with_weight_decay_refuses_a_base_that_already_decays(base, init):
  make, message = DECAYING_BASES[base]
  p = nested_params()
  with pytest.raises(ValueError, match=message + r".*allow_base_decay=True"):
    opt = wd_jax.with_weight_decay(make(), 0.1, learning_rate=1e-3)
    if init == "eager":
      opt.init(p)
    elif init == "jit":
      jax.jit(opt.init)(p)
    else:
      jax.vmap(opt.init)(jax.tree.map(lambda x: jnp.stack([x, x]), p))


def test_allow_base_decay_adds_the_decay_to_the_bases():
  p = nested_params()
  twice = wd_jax.with_weight_decay(
    optax.adamw(LR, weight_decay=0.3), 0.2, learning_rate=LR, allow_base_decay=True
  )
  _assert_same(_updates(twice), _updates(optax.adamw(LR, weight_decay=0.5)))
  plain = wd_jax.with_weight_decay(optax.adam(LR), 0.2, learning_rate=LR)  # no decay: accepted
  assert plain.init(p) is not None


def test_with_weight_decay_reads_the_learning_rate_of_an_injected_base():
  base = optax.inject_hyperparams(optax.adam)(learning_rate=WARMUP_FROM_0)
  ours = wd_jax.with_weight_decay(base, 0.3)  # no learning_rate: the base's is read
  _assert_same(_updates(ours), _updates(optax.adamw(WARMUP_FROM_0, weight_decay=0.3)))
  agreeing = wd_jax.with_weight_decay(base, 0.3, learning_rate=WARMUP_FROM_0)
  _assert_same(_updates(agreeing), _updates(ours))
  # A learning rate set in the base's state (a sweep does this) is the one that multiplies λ.
  const = optax.inject_hyperparams(optax.adam)(learning_rate=LR)
  opt, p = wd_jax.with_weight_decay(const, 0.3), nested_params()
  s = opt.init(p)
  s.base_state.hyperparams["learning_rate"] = jnp.asarray(2 * LR)
  u, _ = opt.update(jax.tree.map(jnp.zeros_like, p), s, p)
  np.testing.assert_allclose(u["w1"], -2 * LR * 0.3 * p["w1"], rtol=1e-12)


def test_with_weight_decay_says_when_two_learning_rates_disagree():
  base = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
  with pytest.raises(ValueError, match=r"learning_rate=0\.002.*disagrees.*\(0\.001\)"):
    wd_jax.with_weight_decay(base, 0.1, learning_rate=2e-3)
  with pytest.raises(ValueError, match=r"learning_rate is required for coupling='lr'"):
    wd_jax.with_weight_decay(optax.adam(1e-3), 0.1)
  with pytest.raises(ValueError, match=r"peak_learning_rate is required.*base optimizer's state"):
    wd_jax.with_weight_decay(base, 0.1, coupling="schedule")


# ---------------------------------------------------------------------------------------------
# Masks through inject_hyperparams; schedule-free warmup with a schedule.

INJECTED_MASKS = {
  "default_mask": wd_jax.default_mask,
  "regex_mask": wd_jax.regex_mask({".*bias": 0.0, "b1": 0.0}),
  "fan_in_mask": wd_jax.fan_in_mask(5),
  "lambda": _matrices,
}


@pytest.mark.parametrize("mask", list(INJECTED_MASKS))
def test_a_mask_through_inject_hyperparams_names_static_args(mask):
  make = optax.inject_hyperparams(wd_jax.adamw)
  with pytest.raises(ValueError, match=r"static_args=\('mask',\)"):
    make(learning_rate=LR, mask=INJECTED_MASKS[mask]).init(nested_params())
  static = optax.inject_hyperparams(wd_jax.adamw, static_args=("mask",))
  plain = wd_jax.adamw(LR, mask=INJECTED_MASKS[mask])
  _assert_same(_updates(static(learning_rate=LR, mask=INJECTED_MASKS[mask])), _updates(plain))


def test_schedule_free_warmup_composes_with_a_schedule():
  cosine = optax.cosine_decay_schedule(LR, 12)
  ours = wd_jax.schedule_free_adamw(cosine, 4, weight_decay=0.1)
  ramp = optax.warmup_constant_schedule(0.0, 1.0, 4)
  lr = lambda count: ramp(count) * cosine(count)
  theirs = optax.contrib.schedule_free_adamw(lr, weight_decay=0.1)  # the composed schedule
  _assert_same(_updates(ours), _updates(theirs))


# ---------------------------------------------------------------------------------------------
# One coupling table: what the code computes is what the docs say.


def test_coupling_table_is_what_the_docs_say():
  from wd_jax import _decay

  with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "README.md")) as f:
    readme = f.read()
  doc = wd_jax.with_weight_decay.__doc__
  for name, entry in _decay.COUPLING_TABLE.items():
    assert f'``"{name}"``' in doc and entry.matches in doc and entry.multiplied_by in doc, name
    assert f'coupling="{name}"' in readme and entry.multiplied_by in readme, name
    alpha, peak = 0.3, 0.6
    expected = {
      "lr": alpha,
      "schedule": alpha / peak,
      "constant": 1.0,
      "corrected": alpha**2 / peak,
    }
    assert float(wd_jax.decay_factor(name, alpha, peak, 0)) == pytest.approx(expected[name])
    report = wd_jax.describe_timescale(0.1, total_steps=4, coupling=name, learning_rate=peak)
    assert f"λ multiplied by {entry.multiplied_by}" in str(report)
