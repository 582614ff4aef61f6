"""Models: shapes, pure apply (jit/vmap/pmap), BatchNorm modes, scale invariance, causality."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized
from flax import nnx

from wd_jax.engine import models as M

_B = 4
_VOCAB = 17
_T = 12


def _key(seed: int) -> jax.Array:
  # The "rbg" PRNG compiles far faster on CPU than threefry: each new parameter shape otherwise
  # costs a ~1 s compilation of its initialiser, which dominated this file's run time.
  return jax.random.key(seed, impl="rbg")


def _rngs(seed: int) -> nnx.Rngs:
  return nnx.Rngs(_key(seed))


def _small(name: str, seed: int = 0) -> tuple[nnx.Module, jax.Array]:
  """A small model of each kind and a matching input batch."""
  rngs = _rngs(seed)
  key = _key(100 + seed)
  if name == "mlp":
    return M.MLP(64, (32, 16), 10, rngs=rngs), jax.random.normal(key, (_B, 8, 8, 1))
  if name == "cnn1d":
    return M.CNN1D(10, (8, 8, 8), rngs=rngs), jax.random.normal(key, (_B, 40))
  if name == "resnet":
    model = M.ResNet(10, (8, 16), blocks_per_stage=1, in_channels=1, rngs=rngs)
    return model, jax.random.normal(key, (_B, 8, 8, 1))
  if name == "transformer":
    model = M.TransformerLM(_VOCAB, d_model=32, num_heads=4, num_layers=2, max_len=16, rngs=rngs)
    return model, jax.random.randint(key, (_B, _T), 0, _VOCAB)
  raise AssertionError(name)


_NAMES = ("mlp", "cnn1d", "resnet", "transformer")
_OUT_SHAPES = {
  "mlp": (_B, 10),
  "cnn1d": (_B, 10),
  "resnet": (_B, 10),
  "transformer": (_B, _T, _VOCAB),
}


# One jitted apply for the whole file: equal graph definitions hash equal, so models of the same
# configuration share compiled programs across tests.
_apply = jax.jit(M.apply_model, static_argnums=0)


def _logits(model: nnx.Module, x: jax.Array) -> jax.Array:
  """The model's train-mode outputs, through the jitted pure apply."""
  train_gd, _, params, rest = M.split_model(model)
  return _apply(train_gd, params, rest, x)[0]


def _out_shape(model: nnx.Module, x_shape: tuple[int, ...], dtype=jnp.float32) -> tuple[int, ...]:
  """Output shape by abstract evaluation (no compilation)."""
  train_gd, _, params, rest = M.split_model(model)
  x = jax.ShapeDtypeStruct(x_shape, dtype)
  return jax.eval_shape(lambda p, r, x: M.apply_model(train_gd, p, r, x)[0], params, rest, x).shape


def _abstract(build):
  """A model with abstract (shape-only) parameters: for shape checks of default-size models."""
  return nnx.eval_shape(build)


def _loss(graphdef, params, rest, x, labels):
  logits, _ = M.apply_model(graphdef, params, rest, x)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), logits


# ((loss, logits), grads): one compiled program for all the scale-invariance checks.
_loss_and_grad = jax.jit(jax.value_and_grad(_loss, argnums=1, has_aux=True), static_argnums=0)


def _path(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path[:-1])


def _rel_diff(a: jax.Array, b: jax.Array) -> float:
  return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def _scale_leaves(params, mask, factor: float):
  return jax.tree.map(lambda p, m: p * factor if m else p, params, mask)


def _assert_marked_are_invariant(model, x):
  """Scaling the marked parameters by 3.7 leaves the train-mode logits; scaling the head kernel
  (unmarked) does not, so the check can fail."""
  mask = model.scale_invariant_mask()
  train_gd, _, params, rest = M.split_model(model)
  labels = jnp.arange(x.shape[0]) % 10
  logits = _loss_and_grad(train_gd, params, rest, x, labels)[0][1]
  scaled = _loss_and_grad(train_gd, _scale_leaves(params, mask, 3.7), rest, x, labels)[0][1]
  assert _rel_diff(scaled, logits) < 1e-4
  head_only = jax.tree_util.tree_map_with_path(lambda path, _: _path(path) == "head/kernel", params)
  assert sum(jax.tree.leaves(head_only)) == 1
  head_scaled = _loss_and_grad(train_gd, _scale_leaves(params, head_only, 3.7), rest, x, labels)
  assert _rel_diff(head_scaled[0][1], logits) > 1e-1


class ShapeTest(parameterized.TestCase):
  @parameterized.parameters(*_NAMES)
  def test_output_shape_and_finite(self, name):
    model, x = _small(name)
    logits = _logits(model, x)
    chex.assert_shape(logits, _OUT_SHAPES[name])
    chex.assert_tree_all_finite(logits)

  def test_default_sizes(self):
    rngs = lambda: nnx.Rngs(0)
    mlp = _abstract(lambda: M.MLP(40, (128, 128), 10, rngs=rngs()))
    assert _out_shape(mlp, (2, 40)) == (2, 10)
    cnn = _abstract(lambda: M.CNN1D(rngs=rngs()))
    assert _out_shape(cnn, (2, 40)) == (2, 10)
    assert _out_shape(cnn, (2, 40, 1)) == (2, 10)
    resnet = _abstract(lambda: M.ResNet(rngs=rngs()))
    assert _out_shape(resnet, (2, 32, 32, 3)) == (2, 10)
    lm = _abstract(lambda: M.TransformerLM(50, rngs=rngs()))
    assert _out_shape(lm, (2, 128), jnp.int32) == (2, 128, 50)
    assert _out_shape(lm, (2, 5), jnp.int32) == (2, 5, 50)

  def test_transformer_rejects_too_long_input(self):
    lm = _abstract(
      lambda: M.TransformerLM(
        10, d_model=16, num_heads=2, num_layers=1, max_len=4, rngs=nnx.Rngs(0)
      )
    )
    with pytest.raises(ValueError, match="max_len=4"):
      _out_shape(lm, (1, 5), jnp.int32)


class ApplyTest(chex.TestCase):
  """`apply_model` is a pure function: the same result jitted, vmapped, pmapped and eager."""

  @parameterized.parameters(*_NAMES)
  def test_jitted_apply_equals_calling_the_module(self, name):
    model, x = _small(name)
    train_gd, eval_gd, params, rest = M.split_model(model)
    logits, new_rest = _apply(train_gd, params, rest, x)
    expected = nnx.jit(lambda m, x: m(x))(model, x)  # train mode: updates the model's statistics
    chex.assert_trees_all_close(logits, expected, rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_equal_structs(new_rest, rest)
    chex.assert_trees_all_close(new_rest, nnx.state(model, nnx.Not(nnx.Param)), rtol=1e-6)
    eval_logits, _ = _apply(eval_gd, params, rest, x)
    chex.assert_shape(eval_logits, _OUT_SHAPES[name])
    chex.assert_tree_all_finite(eval_logits)

  # The ResNet under pmap: test_pmap_with_synced_batchnorm_matches_one_device.
  @chex.variants(with_pmap=True)
  @parameterized.parameters("mlp", "transformer")
  def test_pmapped_apply(self, name):
    model, x = _small(name)
    train_gd, _, params, rest = M.split_model(model)
    expected = _apply(train_gd, params, rest, x)[0]
    # chex's pmap variant broadcasts the arguments to every device and returns device 0's output.
    logits, _ = self.variant(M.apply_model, static_argnums=0)(train_gd, params, rest, x)
    chex.assert_trees_all_close(logits, expected, rtol=1e-5, atol=1e-5)

  def test_split_does_not_touch_model_or_alias_it(self):
    model, x = _small("resnet")
    model.eval()
    _, _, params, rest = M.split_model(model)
    assert model.stem.bn.use_running_average  # mode left as it was
    before = jax.tree.map(np.asarray, rest)
    model.train()
    model(x)  # updates the model's own statistics
    chex.assert_trees_all_equal(jax.tree.map(np.asarray, rest), before)
    M.apply_model(M.split_model(model)[0], params, rest, x)  # eager: must not write into `rest`
    chex.assert_trees_all_equal(jax.tree.map(np.asarray, rest), before)

  def test_vmap_over_stacked_params(self):
    x = jax.random.normal(_key(0), (_B, 64))
    splits = [M.split_model(_small("mlp", seed)[0]) for seed in (1, 2, 3)]
    graphdef, _, _, rest = splits[0]
    stacked = jax.tree.map(lambda *ps: jnp.stack(ps), *[s[2] for s in splits])
    vmapped = jax.jit(jax.vmap(lambda p: M.apply_model(graphdef, p, rest, x)[0]))(stacked)
    chex.assert_shape(vmapped, (3, _B, 10))
    for i, s in enumerate(splits):
      chex.assert_trees_all_close(vmapped[i], _apply(graphdef, s[2], rest, x)[0], atol=1e-6)
    assert _rel_diff(vmapped[0], vmapped[1]) > 1e-2  # different seeds, different models

  def test_pmap_with_synced_batchnorm_matches_one_device(self):
    n = jax.local_device_count()
    assert n >= 2, "conftest.py forces several CPU devices"
    model = M.ResNet(10, (8, 16), in_channels=1, axis_name="batch", rngs=_rngs(0))
    train_gd, _, params, rest = M.split_model(model)
    x = jax.random.normal(_key(1), (2 * n, 8, 8, 1))
    reference = M.ResNet(10, (8, 16), in_channels=1, rngs=_rngs(0))
    ref_gd, _, ref_params, ref_rest = M.split_model(reference)
    ref_logits, ref_new_rest = _apply(ref_gd, ref_params, ref_rest, x)

    replicate = lambda tree: jax.tree.map(lambda a: jnp.broadcast_to(a, (n, *a.shape)), tree)
    logits, new_rest = jax.pmap(
      lambda p, r, xs: M.apply_model(train_gd, p, r, xs), axis_name="batch"
    )(replicate(params), replicate(rest), x.reshape(n, 2, 8, 8, 1))
    chex.assert_trees_all_close(logits.reshape(2 * n, 10), ref_logits, rtol=1e-4, atol=1e-5)
    chex.assert_trees_all_close(
      jax.tree.map(lambda a: a[0], new_rest), ref_new_rest, rtol=1e-4, atol=1e-6
    )


class BatchNormTest(parameterized.TestCase):
  def test_train_updates_eval_keeps_statistics(self):
    model, x = _small("resnet")
    train_gd, eval_gd, params, rest = M.split_model(model)
    assert jax.tree.leaves(rest), "the ResNet must carry BatchNorm statistics"
    apply = _apply

    _, trained_rest = apply(train_gd, params, rest, x)
    for old, new in zip(jax.tree.leaves(rest), jax.tree.leaves(trained_rest)):
      assert not np.allclose(old, new), "train mode must update every running statistic"

    logits1, eval_rest = apply(eval_gd, params, trained_rest, x)
    logits2, _ = apply(eval_gd, params, eval_rest, x)
    chex.assert_trees_all_equal(eval_rest, trained_rest)
    chex.assert_trees_all_equal(logits1, logits2)
    # Running statistics, not batch statistics: an example's logits do not depend on its batch.
    logits_half, _ = apply(eval_gd, params, trained_rest, x[:2])
    chex.assert_trees_all_close(logits_half, logits1[:2], rtol=1e-5, atol=1e-6)
    train_half, _ = apply(train_gd, params, trained_rest, x[:2])
    assert _rel_diff(train_half, logits1[:2]) > 1e-3

  @parameterized.parameters("mlp", "cnn1d", "transformer")
  def test_models_without_batchnorm_have_no_other_state(self, name):
    _, _, _, rest = M.split_model(_small(name)[0])
    assert jax.tree.leaves(rest) == []


class ScaleInvarianceTest(parameterized.TestCase):
  def _resnet(self):
    model = M.ResNet(10, (8, 16), blocks_per_stage=2, in_channels=1, rngs=_rngs(0))
    x = jax.random.normal(_key(1), (_B, 8, 8, 1))
    return model, x

  def test_mask_marks_exactly_the_conv_kernels(self):
    model, _ = self._resnet()
    mask = model.scale_invariant_mask()
    params = nnx.state(model, nnx.Param)
    chex.assert_trees_all_equal_structs(mask, params)
    marked = {path for path, v in nnx.to_flat_state(mask) if v.get_value()}
    # stem + 2 stages x 2 blocks x 2 convs + one 1x1 shortcut into the second stage
    assert len(marked) == 1 + 8 + 1
    assert all(path[-2:] == ("conv", "kernel") for path in marked)
    assert ("head", "kernel") not in marked

  @parameterized.parameters("mlp", "cnn1d", "transformer")
  def test_other_models_have_no_scale_invariant_params(self, name):
    model, _ = _small(name)
    mask = model.scale_invariant_mask()
    chex.assert_trees_all_equal_structs(mask, nnx.state(model, nnx.Param))
    assert not any(jax.tree.leaves(mask))

  def test_marked_kernels_are_scale_invariant_in_train_mode(self):
    _assert_marked_are_invariant(*self._resnet())

  def test_gradient_is_orthogonal_to_marked_kernels(self):
    model, x = self._resnet()
    mask = model.scale_invariant_mask()
    train_gd, _, params, rest = M.split_model(model)
    labels = jnp.arange(x.shape[0]) % 10
    _, grads = _loss_and_grad(train_gd, params, rest, x, labels)
    cosines = jax.tree.map(
      lambda g, w: float(jnp.abs(jnp.vdot(g, w)) / (jnp.linalg.norm(g) * jnp.linalg.norm(w))),
      grads,
      params,
    )
    marked = [c for c, m in zip(jax.tree.leaves(cosines), jax.tree.leaves(mask)) if m]
    assert len(marked) == 10
    assert all(float(jnp.linalg.norm(g)) > 0 for g in jax.tree.leaves(grads))
    assert max(marked) < 1e-4, marked
    # An unmarked weight's gradient is not orthogonal to it (so the check above can fail).
    assert cosines["head"]["kernel"].get_value() > 1e-3

  def test_layer_norm_mlp_marks_exactly_its_hidden_kernels_and_they_are_invariant(self):
    model = M.MLP(12, (16, 8), 10, norm="layer", rngs=_rngs(0))
    x = jax.random.normal(_key(1), (_B, 12))
    mask = model.scale_invariant_mask()
    marked = {path for path, v in nnx.to_flat_state(mask) if v.get_value()}
    assert marked == {("hidden", 0, "kernel"), ("hidden", 1, "kernel")}
    assert all(
      "bias" not in nnx.state(layer, nnx.Param) for layer in model.hidden
    )  # bias-free: a bias after the scale would break the invariance's meaning for LayerNorm
    _assert_marked_are_invariant(model, x)

  def test_mlp_norm_must_be_known(self):
    with pytest.raises(ValueError, match="norm must be None or 'layer', got 'batch'"):
      M.MLP(12, (16,), 10, norm="batch", rngs=_rngs(0))


class CausalityTest(parameterized.TestCase):
  @parameterized.parameters(0, 5, _T - 1)
  def test_changing_token_t_changes_only_positions_from_t(self, t):
    model, tokens = _small("transformer")
    _, eval_gd, params, rest = M.split_model(model)
    logits = _apply(eval_gd, params, rest, tokens)[0]
    changed = tokens.at[:, t].set((tokens[:, t] + 1) % _VOCAB)
    new_logits = _apply(eval_gd, params, rest, changed)[0]
    chex.assert_trees_all_close(new_logits[:, :t], logits[:, :t], atol=1e-6)
    per_position = jnp.max(jnp.abs(new_logits - logits), axis=(0, 2))
    assert bool(jnp.all(per_position[t:] > 1e-5)), per_position


class BuildModelTest(parameterized.TestCase):
  @parameterized.parameters(
    ("mlp", (40,), 10, {}, M.MLP, (3, 10)),
    ("mlp", (8, 8, 1), 10, {"widths": (7,)}, M.MLP, (3, 10)),
    ("cnn1d", (40,), 10, {"channels": (4, 4)}, M.CNN1D, (3, 10)),
    ("resnet", (8, 8, 1), 10, {"widths": (4, 8)}, M.ResNet, (3, 10)),
    ("transformer", (9,), 13, {"d_model": 16, "num_layers": 1}, M.TransformerLM, (3, 9, 13)),
  )
  def test_dispatch(self, name, input_shape, num_classes, kwargs, cls, out_shape):
    model = _abstract(
      lambda: M.build_model(
        name, num_classes=num_classes, input_shape=input_shape, rngs=nnx.Rngs(0), **kwargs
      )
    )
    assert type(model) is cls
    dtype = jnp.int32 if cls is M.TransformerLM else jnp.float32
    assert _out_shape(model, (3, *input_shape), dtype) == out_shape
    if cls is M.TransformerLM:
      assert model.max_len == input_shape[0]

  def test_kwargs_pass_through(self):
    model = _abstract(
      lambda: M.build_model("mlp", num_classes=3, input_shape=(5,), rngs=nnx.Rngs(0), widths=(7, 6))
    )
    assert [layer.out_features for layer in model.hidden] == [7, 6]
    lm = _abstract(
      lambda: M.build_model(
        "transformer", num_classes=11, input_shape=(8,), rngs=nnx.Rngs(0), max_len=20, d_model=16
      )
    )
    assert lm.max_len == 20

  def test_unknown_name(self):
    with pytest.raises(ValueError, match=r"'vgg'.*cnn1d.*mlp.*resnet.*transformer"):
      M.build_model("vgg", num_classes=10, input_shape=(8, 8, 1), rngs=nnx.Rngs(0))

  def test_bad_input_shapes(self):
    with pytest.raises(ValueError, match="input_shape"):
      M.build_model("resnet", num_classes=10, input_shape=(40,), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="max_len"):
      M.build_model("transformer", num_classes=10, input_shape=(), rngs=nnx.Rngs(0))
