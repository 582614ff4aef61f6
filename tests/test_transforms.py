"""Algebra, masks, state readers and bad input of the decay transforms (float64)."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st
from problems import nested_params

import wd_jax

STEPS = 30


_params = nested_params


def _loss(p, x):
  h = jnp.tanh(x @ p["w1"] + p["b1"])
  return jnp.mean((h @ p["head"]["kernel"] + p["head"]["bias"]) ** 2)


def _run(opt, steps=STEPS, seed=0, return_state=False):
  """Trains `_params` on a fixed input stream; returns final params (and state)."""
  params = _params(seed)
  state = opt.init(params)
  xs = jax.random.normal(jax.random.key(100 + seed), (steps, 8, 5), jnp.float64)

  @jax.jit
  def step(params, state, x):
    g = jax.grad(_loss)(params, x)
    u, state = opt.update(g, state, params)
    return optax.apply_updates(params, u), state

  for x in xs:
    params, state = step(params, state, x)
  return (params, state) if return_state else params


def _max_diff(a, b):
  return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


class AlgebraTest(parameterized.TestCase):
  def setUp(self):
    super().setUp()
    self.enter_context(jax.enable_x64(True))

  def test_plain_sgd_l2_equals_sgdw_lr(self):
    # Loshchilov & Hutter, Prop. 1: without momentum coupled L2 and decoupled "lr" decay agree.
    a = _run(wd_jax.sgd_l2(0.1, 0.05))
    b = _run(wd_jax.sgdw(0.1, 0.05, coupling="lr"))
    chex.assert_trees_all_close(a, b, atol=1e-13, rtol=0)

  @parameterized.named_parameters(
    (
      "sgd_momentum",
      lambda: wd_jax.sgd_l2(0.1, 0.05, momentum=0.9),
      lambda: wd_jax.sgdw(0.1, 0.05, momentum=0.9),
    ),
    ("adam", lambda: wd_jax.adam_l2(0.01, 0.05), lambda: wd_jax.adamw(0.01, weight_decay=0.05)),
  )
  def test_coupled_and_decoupled_differ(self, coupled, decoupled):
    self.assertGreater(_max_diff(_run(coupled()), _run(decoupled())), 1e-3)

  @parameterized.named_parameters(
    ("adam_l2", lambda wd: wd_jax.adam_l2(0.01, wd), lambda: optax.adam(0.01)),
    (
      "adam_l2_tracked",
      lambda wd: wd_jax.adam_l2(0.01, wd, track_moments=True),
      lambda: optax.adam(0.01),
    ),
    (
      "adam_l2_ablation",
      lambda wd: wd_jax.adam_l2(0.01, wd, l2_in_first_moment=False, l2_in_second_moment=False),
      lambda: optax.adam(0.01),
    ),
    *[
      (
        f"adamw_{c}",
        lambda wd, c=c: wd_jax.adamw(0.01, weight_decay=wd, coupling=c),
        lambda: optax.adam(0.01),
      )
      for c in wd_jax.COUPLINGS
    ],
    ("adams", lambda wd: wd_jax.adams(0.01, wd), lambda: optax.adam(0.01)),
    (
      "sgd_l2",
      lambda wd: wd_jax.sgd_l2(0.1, wd, momentum=0.9),
      lambda: optax.sgd(0.1, momentum=0.9),
    ),
    (
      "sgdw",
      lambda wd: wd_jax.sgdw(0.1, wd, momentum=0.9, nesterov=True),
      lambda: optax.sgd(0.1, momentum=0.9, nesterov=True),
    ),
  )
  def test_zero_decay_is_the_base_optimizer(self, make, base):
    chex.assert_trees_all_close(_run(make(0.0)), _run(base()), atol=1e-12, rtol=0)
    self.assertGreater(_max_diff(_run(make(0.1)), _run(base())), 1e-4)  # decay does act

  def test_first_moment_split_sums_to_coupled_first_moment(self):
    lr, wd = 0.01, 0.3
    _, tracked = _run(wd_jax.adam_l2(lr, wd, track_moments=True), return_state=True)
    _, plain = _run(
      optax.chain(
        optax.add_decayed_weights(wd), optax.scale_by_adam(), optax.scale_by_learning_rate(lr)
      ),
      return_state=True,
    )
    m_loss, m_l2 = wd_jax.first_moment_split(tracked)
    chex.assert_trees_all_close(
      jax.tree.map(jnp.add, m_loss, m_l2), plain[1].mu, atol=1e-10, rtol=0
    )
    share = float(wd_jax.l2_share(tracked))
    self.assertTrue(0.0 < share < 1.0)
    expected = float(optax.tree.norm(m_l2) / (optax.tree.norm(m_loss) + optax.tree.norm(m_l2)))
    self.assertAlmostEqual(share, expected, places=12)

  def test_m_l2_is_the_ema_of_the_l2_gradient(self):
    # Hand computation over 3 steps with a fixed gradient stream on a single leaf.
    wd, b1 = 0.5, 0.9
    opt = wd_jax.adam_l2(0.1, wd, b1=b1, track_moments=True)
    params = {"w": jnp.array([1.0, -2.0])}
    state = opt.init(params)
    m_l2 = np.zeros(2)
    m_loss = np.zeros(2)
    for g in ([0.3, 0.1], [-0.2, 0.4], [0.0, 1.0]):
      m_l2 = b1 * m_l2 + (1 - b1) * wd * np.asarray(params["w"])
      m_loss = b1 * m_loss + (1 - b1) * np.asarray(g)
      u, state = opt.update({"w": jnp.array(g)}, state, params)
      params = optax.apply_updates(params, u)
    got_loss, got_l2 = wd_jax.first_moment_split(state)
    np.testing.assert_allclose(got_l2["w"], m_l2, rtol=1e-13)
    np.testing.assert_allclose(got_loss["w"], m_loss, rtol=1e-13)

  def test_l2_outside_first_moment_adds_current_l2_to_debiased_m(self):
    # In neither moment, t = 1 (m̂ = g, v̂ = g²): u_1 = (g + r) / (max(|g|, |r|) + ε), r = λθ.
    # Coordinate 0: the loss's √v̂ = 0.3 > |r| = 0.1 is the preconditioner (the arm's meaning);
    # coordinate 1: |r| = 0.2 > √v̂ = 0.1, so λθ is divided by its own size (at most α a step).
    wd, eps = 0.1, 1e-8
    opt = wd_jax.scale_by_adam_l2(wd, eps=eps, l2_in_first_moment=False, l2_in_second_moment=False)
    p, g = jnp.array([1.0, -2.0]), jnp.array([0.3, -0.1])
    u, _ = opt.update(g, opt.init(p), p)
    np.testing.assert_allclose(u, (g + wd * p) / (jnp.array([0.3, 0.2]) + eps), rtol=1e-13)

  @parameterized.parameters("adamw", "sgdw", "adams")
  def test_l2_share_is_zero_for_decoupled(self, name):
    _, state = _run(
      wd_jax.get_optimizer(name, learning_rate=0.01, weight_decay=0.1), return_state=True
    )
    self.assertEqual(float(wd_jax.l2_share(state)), 0.0)

  def test_untracked_state_raises(self):
    _, state = _run(wd_jax.adam_l2(0.01, 0.1), return_state=True)
    with self.assertRaisesRegex(ValueError, "track_moments=True"):
      wd_jax.first_moment_split(state)
    with self.assertRaisesRegex(ValueError, "track_moments=True"):
      wd_jax.l2_share(state)

  def test_split_inside_inject_hyperparams(self):
    opt = optax.inject_hyperparams(wd_jax.adam_l2)(
      learning_rate=0.01, weight_decay=0.1, track_moments=True
    )
    _, state = _run(opt, return_state=True)
    self.assertGreater(float(wd_jax.l2_share(state)), 0.0)

  def test_prox_l1_gives_exact_zeros_and_add_l1_does_not(self):
    lr, wd = 0.1, 0.5
    prox = _run(optax.chain(optax.sgd(lr), wd_jax.prox_l1(wd, learning_rate=lr)), steps=60)
    sub = _run(optax.chain(wd_jax.add_l1(wd), optax.sgd(lr)), steps=60)
    n_zero = lambda t: sum(int(jnp.sum(x == 0.0)) for x in jax.tree.leaves(t))
    self.assertGreater(n_zero(prox), 5)
    self.assertEqual(n_zero(sub), 0)

  def test_prox_l1_soft_threshold_by_hand(self):
    opt = wd_jax.prox_l1(0.5, learning_rate=0.2)  # threshold 0.1
    p = jnp.array([0.05, -0.3, 0.2, -0.08])
    u = jnp.array([0.0, 0.0, -0.05, 0.1])
    new = optax.apply_updates(p, opt.update(u, opt.init(p), p)[0])
    np.testing.assert_allclose(new, [0.0, -0.2, 0.05, 0.0], atol=1e-15)
    self.assertEqual(float(new[0]), 0.0)

  @parameterized.parameters(
    ("early", lambda: wd_jax.early_weight_decay(0.3, 10), [0.3] * 10 + [0.0] * 5),
    ("late", lambda: wd_jax.late_weight_decay(0.3, 10), [0.0] * 10 + [0.3] * 5),
    ("switch", lambda: wd_jax.switch_weight_decay(0.3, 0.1, 2), [0.3, 0.3, 0.1]),
  )
  def test_weight_decay_schedules(self, _, make, expected):
    sched = make()
    np.testing.assert_allclose(
      [float(sched(jnp.asarray(t))) for t in range(len(expected))], expected
    )

  def test_schedule_drives_the_decay_step(self):
    # With a zero update, "constant" coupling decays θ by λ_t each step: θ_T = θ_0 Π(1 − λ_t).
    opt = wd_jax.decoupled_weight_decay(wd_jax.early_weight_decay(0.1, 3), coupling="constant")(
      optax.identity()
    )
    p = jnp.array([2.0])
    s = opt.init(p)
    for _ in range(6):
      u, s = opt.update(jnp.zeros(1), s, p)
      p = p + u
    np.testing.assert_allclose(p, 2.0 * 0.9**3, rtol=1e-14)

  def test_normalized_weight_decay(self):
    lam = wd_jax.normalized_weight_decay(0.05, batch_size=128, train_size=50_000, epochs=100)
    self.assertAlmostEqual(lam, 0.05 * math.sqrt(128 / (50_000 * 100)), places=15)


class MaskTest(parameterized.TestCase):
  def setUp(self):
    super().setUp()
    self.enter_context(jax.enable_x64(True))

  @parameterized.parameters(
    lambda m: wd_jax.adamw(0.01, weight_decay=0.5, mask=m),
    lambda m: wd_jax.adam_l2(0.01, 0.5, mask=m),
    lambda m: wd_jax.adam_l2(0.01, 0.5, mask=m, track_moments=True),
    lambda m: wd_jax.sgdw(0.1, 0.5, momentum=0.9, mask=m),
    lambda m: wd_jax.sgd_l2(0.1, 0.5, momentum=0.9, mask=m),
    lambda m: wd_jax.adams(0.01, 0.5, mask=m),
    lambda m: optax.chain(wd_jax.add_l1(0.5, mask=m), optax.sgd(0.1)),
    lambda m: optax.chain(optax.sgd(0.1), wd_jax.prox_l1(0.5, learning_rate=0.1, mask=m)),
  )
  def test_masked_leaves_untouched_bit_for_bit(self, make):
    def run(mask):
      # A gradient stream independent of the params, so leaves cannot talk through the loss.
      opt, params = make(mask), _params()
      state = opt.init(params)
      for t in range(10):
        g = _params(seed=50 + t)
        u, state = opt.update(g, state, params)
        params = optax.apply_updates(params, u)
      return params

    got = run({"w1": True, "b1": False, "head": {"kernel": True, "bias": False}})
    # The same optimizer with decay 0 everywhere is the reference for the masked leaves.
    ref = run({"w1": False, "b1": False, "head": {"kernel": False, "bias": False}})
    np.testing.assert_array_equal(got["b1"], ref["b1"])
    np.testing.assert_array_equal(got["head"]["bias"], ref["head"]["bias"])
    self.assertGreater(float(jnp.max(jnp.abs(got["w1"] - ref["w1"]))), 1e-4)

  def test_multiplier_scales_lambda(self):
    half = _run(wd_jax.sgdw(0.1, 0.4, mask=lambda p: jax.tree.map(lambda _: 0.5, p)))
    chex.assert_trees_all_close(half, _run(wd_jax.sgdw(0.1, 0.2)), atol=1e-13, rtol=0)

  def test_regex_mask_first_rule_wins_and_default(self):
    mask = wd_jax.regex_mask({".*bias": 0.0, "head/.*": 0.1}, default=wd_jax.default_mask)
    table = wd_jax.describe_mask(_params(), mask)
    mults = {r.path: r.multiplier for r in table.rows}
    self.assertEqual(mults, {"b1": 0.0, "head/bias": 0.0, "head/kernel": 0.1, "w1": 1.0})

  def test_describe_mask_table(self):
    table = wd_jax.describe_mask(_params(), wd_jax.default_mask)
    text = str(table)
    self.assertIn("head/kernel", text)
    self.assertIn("(7, 3)", text)
    self.assertEqual(table.decayed_size, 35 + 21)
    self.assertEqual(table.total_size, 35 + 7 + 21 + 3)
    self.assertIn("decayed: 56 of 66 parameters", text)

  def test_mismatched_mask_raises_at_init(self):
    opt = wd_jax.adamw(0.01, weight_decay=0.1, mask={"w1": True, "b1": False})
    with self.assertRaisesRegex(ValueError, r"mask does not match.*head/kernel"):
      opt.init(_params())

  def test_negative_multiplier_raises(self):
    with self.assertRaisesRegex(ValueError, "multiplier >= 0"):
      wd_jax.describe_mask({"w": jnp.ones(2)}, {"w": -1.0})


class _Net(nnx.Module):
  def __init__(self, rngs):
    self.body = nnx.Linear(4, 8, rngs=rngs)
    self.norm = nnx.LayerNorm(8, rngs=rngs)
    self.head = nnx.Linear(8, 2, rngs=rngs)

  def __call__(self, x):
    return self.head(self.norm(self.body(x)))


class NNXMaskTest(parameterized.TestCase):
  """Masks built from NNX state must apply inside nnx.Optimizer (cf. JAX issue #31256)."""

  def _train(self, mask_of_model, steps=1):
    # One step from the same init: later steps would couple leaves through the loss.
    model = _Net(nnx.Rngs(0))
    before = nnx.state(model, nnx.Param)
    before = jax.tree.map(jnp.copy, before)
    opt = nnx.Optimizer(
      model, wd_jax.adamw(0.1, weight_decay=0.5, mask=mask_of_model(model)), wrt=nnx.Param
    )
    x = jnp.ones((3, 4))

    @nnx.jit
    def step(model, opt):
      grads = nnx.grad(lambda m: jnp.mean(m(x) ** 2))(model)
      opt.update(model, grads)

    for _ in range(steps):
      step(model, opt)
    return before, nnx.state(model, nnx.Param)

  @parameterized.named_parameters(
    ("tree_from_state", lambda m: jax.tree.map(lambda x: x.ndim > 1, nnx.state(m, nnx.Param))),
    ("callable", lambda m: wd_jax.default_mask),
    ("regex", lambda m: wd_jax.regex_mask({".*bias": 0.0, "norm/.*": 0.0})),
  )
  def test_nnx_optimizer_with_mask(self, make_mask):
    _, with_mask = self._train(make_mask)
    _, no_decay = self._train(lambda m: jax.tree.map(lambda x: False, nnx.state(m, nnx.Param)))
    for path in (("body", "bias"), ("norm", "scale"), ("head", "bias")):
      a, b = with_mask, no_decay
      for k in path:
        a, b = a[k], b[k]
      np.testing.assert_array_equal(a[...], b[...])
    self.assertGreater(
      float(jnp.max(jnp.abs(with_mask["body"]["kernel"][...] - no_decay["body"]["kernel"][...]))),
      1e-4,
    )

  def test_describe_mask_on_nnx_state(self):
    model = _Net(nnx.Rngs(0))
    text = str(wd_jax.describe_mask(nnx.state(model, nnx.Param), wd_jax.default_mask))
    self.assertIn("body/kernel", text)
    self.assertIn("norm/scale", text)


class VariantsTest(chex.TestCase):
  """The split and the recipes behave the same jitted, eager and pmapped (4 CPU devices)."""

  def test_four_devices(self):
    self.assertEqual(jax.local_device_count(), 4)

  @chex.variants(with_jit=True, without_jit=True, with_pmap=True)
  def test_tracked_step_and_share(self):
    opt = wd_jax.adam_l2(0.01, 0.2, track_moments=True, mask=wd_jax.default_mask)
    params = _params(dtype=jnp.float32)
    grads = jax.tree.map(lambda x: 0.1 * jnp.ones_like(x), params)
    state = opt.init(params)

    def step(params, state, grads):
      u, state = opt.update(grads, state, params)
      _, m_l2 = wd_jax.first_moment_split(state)
      return optax.apply_updates(params, u), wd_jax.l2_share(state), m_l2

    # chex's pmap variant broadcasts the arguments to all 4 devices and returns device 0's output.
    new, share, m_l2 = self.variant(step)(params, state, grads)
    ref_new, ref_share, ref_m_l2 = step(params, state, grads)
    chex.assert_trees_all_close(new, ref_new, rtol=1e-6)
    chex.assert_trees_all_close(m_l2, ref_m_l2, rtol=1e-6)
    np.testing.assert_allclose(share, ref_share, rtol=1e-6)
    self.assertGreater(float(share), 0.0)
    np.testing.assert_array_equal(m_l2["b1"], 0.0)  # masked: no L2 in the buffer

  @chex.variants(with_jit=True, without_jit=True, with_pmap=True)
  def test_every_recipe(self):
    params = _params(dtype=jnp.float32)
    grads = jax.tree.map(lambda x: 0.1 * jnp.ones_like(x), params)
    for name in wd_jax.OPTIMIZERS:
      opt = wd_jax.get_optimizer(
        name,
        learning_rate=optax.linear_schedule(0.1, 0.01, 10),
        weight_decay=0.1,
        **({"peak_learning_rate": 0.1} if "w" in name else {}),
      )
      state = opt.init(params)
      fn = lambda p, s, g, opt=opt: opt.update(g, s, p)[0]
      got = self.variant(fn)(params, state, grads)
      chex.assert_trees_all_close(got, fn(params, state, grads), rtol=1e-6, atol=1e-7)
      chex.assert_tree_all_finite(got)


class BadInputTest(parameterized.TestCase):
  bad_numbers = st.one_of(
    st.floats(max_value=-1e-12, allow_nan=False, allow_infinity=False),
    st.just(math.nan),
    st.just(math.inf),
    st.just(-math.inf),
  )

  @settings(max_examples=25, deadline=None)
  @given(wd=bad_numbers, name=st.sampled_from(sorted(wd_jax.OPTIMIZERS)))
  def test_bad_weight_decay(self, wd, name):
    with pytest.raises(ValueError, match=r"weight_decay.*" + ("nan" if math.isnan(wd) else "")):
      wd_jax.get_optimizer(name, learning_rate=0.1, weight_decay=wd)

  @settings(max_examples=25, deadline=None)
  @given(
    lr=st.one_of(
      st.floats(max_value=-1e-12, allow_nan=False), st.just(math.nan), st.just(math.inf)
    ),
    name=st.sampled_from(sorted(wd_jax.OPTIMIZERS)),
  )
  def test_bad_learning_rate(self, lr, name):  # 0 is a learning rate (a warmup's first)
    with pytest.raises(ValueError, match=r"learning_rate"):
      wd_jax.get_optimizer(name, learning_rate=lr, weight_decay=0.1)

  @settings(max_examples=25, deadline=None)
  @given(
    b=st.one_of(
      st.floats(max_value=-1e-9, allow_nan=False), st.floats(min_value=1.0), st.just(math.nan)
    ),
    which=st.sampled_from(["b1", "b2"]),
    name=st.sampled_from(["adam_l2", "adamw", "adams"]),
  )
  def test_bad_betas(self, b, which, name):
    with pytest.raises(ValueError, match=which):
      wd_jax.get_optimizer(name, learning_rate=0.1, weight_decay=0.1, **{which: b})

  @settings(max_examples=10, deadline=None)
  @given(eps=st.floats(max_value=-1e-12, allow_nan=False))
  def test_bad_eps(self, eps):
    with pytest.raises(ValueError, match=r"eps.*" + repr(eps)[:6]):
      wd_jax.adamw(0.1, weight_decay=0.1, eps=eps)

  @settings(max_examples=10, deadline=None)
  @given(m=st.one_of(st.floats(max_value=-1e-9, allow_nan=False), st.floats(min_value=1.0)))
  def test_bad_momentum(self, m):
    with pytest.raises(ValueError, match="momentum"):
      wd_jax.sgd_l2(0.1, 0.1, momentum=m)

  def test_bad_names(self):
    with pytest.raises(ValueError, match=r"coupling.*'lr-ish'"):
      wd_jax.adamw(0.1, weight_decay=0.1, coupling="lr-ish")
    with pytest.raises(ValueError, match=r"name.*'adamx'"):
      wd_jax.get_optimizer("adamx", learning_rate=0.1, weight_decay=0.1)

  def test_schedule_coupling_needs_peak(self):
    with pytest.raises(ValueError, match="peak_learning_rate"):
      wd_jax.adamw(optax.cosine_decay_schedule(0.1, 10), weight_decay=0.1, coupling="schedule")
    with pytest.raises(ValueError, match=r"learning_rate is required for coupling='lr'"):
      wd_jax.decoupled_weight_decay(0.1)(optax.sgd(0.1))

  def test_bad_schedule_steps(self):
    with pytest.raises(ValueError, match="until_step"):
      wd_jax.early_weight_decay(0.1, -3)


@pytest.mark.parametrize("in_first", [True, False])
def test_a_not_in_v_arm_is_bounded_where_the_loss_never_fed_v(in_first):
  """λθ kept out of v: a coordinate with no loss gradient has v̂ = 0; its step must not be λθ/ε."""
  opt = wd_jax.adam_l2(
    0.01, 0.1, l2_in_first_moment=in_first, l2_in_second_moment=False, track_moments=True
  )
  p = {"w": jnp.array([1.0, 2.0])}
  g = {"w": jnp.array([0.5, 0.0])}  # the second coordinate never gets a loss gradient
  state = opt.init(p)
  for _ in range(50):
    u, state = opt.update(g, state, p)
    p = optax.apply_updates(p, u)
    assert abs(float(u["w"][1])) <= 0.01 * 1.1  # ~α where the loss never fed v (λθ/ε: 2e7·α)
  assert 0.0 < float(p["w"][1]) < 2.0  # decayed, not blown up
  # Where the loss did feed v, the step is the arm's own: the loss's √v̂, not |λθ|.
  ref = wd_jax.adam_l2(0.01, 0.1, l2_in_first_moment=in_first, l2_in_second_moment=False)
  q, s = {"w": jnp.array([1.0])}, None
  s = ref.init(q)
  u_ref, _ = ref.update({"w": jnp.array([0.5])}, s, q)
  u_one, _ = opt.update(
    {"w": jnp.array([0.5, 0.0])},
    opt.init({"w": jnp.array([1.0, 2.0])}),
    {"w": jnp.array([1.0, 2.0])},
  )
  np.testing.assert_allclose(u_one["w"][0], u_ref["w"][0], rtol=1e-6)
