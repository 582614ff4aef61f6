"""wd_jax.engine.data: loaders (shapes, determinism, file formats, bad input) and device
batching."""

import os
import random
import re
import tempfile

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from hypothesis import given, settings
from hypothesis import strategies as st

from wd_jax.engine import data

# ----------------------------------------------------------------------------------------------
# Fixtures and builders.


@pytest.fixture(scope="module")
def mnist():
  return data.mnist1d(seed=0)


@pytest.fixture(scope="module")
def digits():
  return data.digits()


def _cifar_planes(n: int, offset: int = 0) -> np.ndarray:
  """(n, 3, 32, 32) uint8 channel-major images with a known value at every (row, col, channel)."""
  rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
  images = np.empty((n, 3, 32, 32), np.uint8)
  for i in range(n):
    images[i, 0] = (rows * 32 + cols + i + offset) % 256  # R
    images[i, 1] = (255 - rows * 7 - cols - i) % 256  # G
    images[i, 2] = (rows + 2 * cols + 3 * i) % 256  # B
  return images


def _write_cifar(path, labels, images_chw) -> None:
  """Writes records in the CIFAR-10 binary format: label byte, then R, G, B planes row-major."""
  records = np.concatenate(
    [np.asarray(labels, np.uint8)[:, None], images_chw.reshape(len(labels), -1)], axis=1
  )
  records.tofile(path)


def _write_text(path, text: str) -> str:
  with open(path, "w", encoding="utf-8", newline="") as f:
    f.write(text)
  return os.fspath(path)


_TEXT = "The quick brown fox jumps over the lazy dog; é ∑ 0123456789!\n" * 40


@pytest.fixture
def corpus(tmp_path):
  path = _write_text(tmp_path / "corpus.txt", _TEXT)
  return path, data.char_corpus([path], seq_len=16, test_fraction=0.25)


# ----------------------------------------------------------------------------------------------
# MNIST-1D.


def test_mnist1d_shapes_dtypes_and_standardisation(mnist):
  assert (mnist.name, mnist.task, mnist.num_classes) == ("mnist1d", "classification", 10)
  chex.assert_shape(mnist.x_train, (4000, 40))
  chex.assert_shape(mnist.x_test, (1000, 40))
  chex.assert_shape([mnist.y_train], (4000,))
  chex.assert_shape([mnist.y_test], (1000,))
  chex.assert_type([mnist.x_train, mnist.x_test], jnp.float32)
  chex.assert_type([mnist.y_train, mnist.y_test], jnp.int32)
  assert (mnist.num_train, mnist.num_test, mnist.input_shape) == (4000, 1000, (40,))
  assert set(np.unique(mnist.y_train).tolist()) == set(range(10))
  x = np.asarray(mnist.x_train, np.float64)
  np.testing.assert_allclose([x.mean(), x.std()], [0.0, 1.0], atol=1e-5)
  chex.assert_tree_all_finite([mnist.x_train, mnist.x_test])


def test_mnist1d_deterministic_seeded_and_leaves_global_rngs_alone(mnist):
  np_state, py_state = np.random.get_state(), random.getstate()
  fresh = data._mnist1d._mnist1d_arrays.__wrapped__(0)  # generate again, bypassing the cache
  after = np.random.get_state()
  np.testing.assert_array_equal(np_state[1], after[1])
  assert py_state == random.getstate()
  for a, b in zip(fresh, data._mnist1d._mnist1d_arrays(0)):
    np.testing.assert_array_equal(a, b)
  chex.assert_trees_all_equal(data.mnist1d(seed=0).x_train, mnist.x_train)
  other = data.mnist1d(seed=1)
  assert not np.array_equal(np.asarray(other.x_train), np.asarray(mnist.x_train))


# ----------------------------------------------------------------------------------------------
# sklearn digits.


def test_digits_shapes_range_and_stratified_split(digits):
  assert digits.num_train + digits.num_test == 1797
  assert (digits.num_train, digits.num_test) == (1437, 360)
  chex.assert_shape(digits.x_train, (1437, 8, 8, 1))
  chex.assert_shape(digits.x_test, (360, 8, 8, 1))
  chex.assert_type([digits.x_train, digits.y_train], [jnp.float32, jnp.int32])
  assert digits.input_shape == (8, 8, 1) and digits.num_classes == 10
  x = np.asarray(digits.x_train)
  assert x.min() == 0.0 and x.max() == 1.0
  counts = np.bincount(np.asarray(digits.y_test), minlength=10)
  assert counts.min() >= 35  # stratified: ~36 per class


def test_digits_split_is_seeded(digits):
  chex.assert_trees_all_equal(data.digits().x_test, digits.x_test)
  other = data.digits(seed=1)
  assert not np.array_equal(np.asarray(other.y_test), np.asarray(digits.y_test))
  assert data.digits(test_fraction=0.5).num_test == 899


# ----------------------------------------------------------------------------------------------
# Synthetic tasks.


def test_linear_regression_shapes_meta_and_determinism():
  ds = data.linear_regression(num_examples=64, dim=5, noise=0.0, seed=3)
  assert (ds.task, ds.num_classes, ds.input_shape) == ("regression", 0, (5,))
  chex.assert_shape([ds.x_train, ds.x_test], (64, 5))
  chex.assert_shape([ds.y_train, ds.y_test], (64,))
  chex.assert_type([ds.x_train, ds.y_train], jnp.float32)
  w = ds.meta["w_true"]
  assert isinstance(w, np.ndarray) and w.shape == (5,)
  # Noise-free labels: y = X w* up to the float32 cast.
  np.testing.assert_allclose(np.asarray(ds.x_train) @ w, np.asarray(ds.y_train), atol=1e-5)
  again = data.linear_regression(num_examples=64, dim=5, noise=0.0, seed=3)
  chex.assert_trees_all_equal((again.x_train, again.y_test), (ds.x_train, ds.y_test))
  other = data.linear_regression(num_examples=64, dim=5, noise=0.0, seed=4)
  assert not np.array_equal(np.asarray(other.x_train), np.asarray(ds.x_train))
  assert data.linear_regression(num_examples=8, num_test=3).num_test == 3


@pytest.mark.parametrize("weight_decay", [0.0, 1e-3, 0.1, 10.0])
@pytest.mark.parametrize("targets", [(), (3,)])
def test_ridge_solution_matches_augmented_least_squares(weight_decay, targets):
  rng = np.random.default_rng(0)
  n, d = 50, 7
  x = rng.normal(size=(n, d))
  y = rng.normal(size=(n, *targets))
  theta = data.ridge_solution(x, y, weight_decay)
  assert theta.dtype == np.float64 and theta.shape == (d, *targets)
  a = np.concatenate([x / np.sqrt(n), np.sqrt(weight_decay) * np.eye(d)])
  b = np.concatenate([y / np.sqrt(n), np.zeros((d, *targets))])
  expected = np.linalg.lstsq(a, b, rcond=None)[0]
  np.testing.assert_allclose(theta, expected, rtol=0, atol=1e-10)
  # Stationarity of ½‖Xθ−y‖²/n + ½λ‖θ‖².
  grad = x.T @ (x @ theta - y) / n + weight_decay * theta
  np.testing.assert_allclose(grad, 0.0, atol=1e-10)


def test_ridge_solution_on_a_dataset_recovers_the_true_weights():
  ds = data.linear_regression(num_examples=2048, dim=8, noise=0.01)
  theta = data.ridge_solution(ds.x_train, ds.y_train, 0.0)
  np.testing.assert_allclose(theta, ds.meta["w_true"], atol=2e-3)
  with pytest.raises(ValueError, match="weight_decay"):
    data.ridge_solution(ds.x_train, ds.y_train, -1.0)
  with pytest.raises(ValueError, match="shape"):
    data.ridge_solution(ds.x_train, ds.y_train[:5], 0.1)


def test_teacher_student_labels_come_from_the_teacher():
  ds = data.teacher_student(num_examples=512, dim=6, hidden=4, num_classes=5, seed=2)
  assert (ds.task, ds.num_classes, ds.input_shape) == ("classification", 5, (6,))
  chex.assert_shape([ds.x_train, ds.x_test], (512, 6))
  chex.assert_type([ds.x_train, ds.y_train], [jnp.float32, jnp.int32])
  t = ds.meta["teacher"]
  for split_x, split_y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
    logits = np.tanh(np.asarray(split_x, np.float64) @ t["w1"]) @ t["w2"] + t["b2"]
    np.testing.assert_array_equal(logits.argmax(1), np.asarray(split_y))
  counts = np.bincount(np.asarray(ds.y_train), minlength=5)
  assert counts.min() > 0.5 * 512 / 5, counts  # the calibrated bias keeps classes balanced
  again = data.teacher_student(num_examples=512, dim=6, hidden=4, num_classes=5, seed=2)
  chex.assert_trees_all_equal(again.y_train, ds.y_train)
  other = data.teacher_student(num_examples=512, dim=6, hidden=4, num_classes=5, seed=3)
  assert not np.array_equal(np.asarray(other.y_train), np.asarray(ds.y_train))


# ----------------------------------------------------------------------------------------------
# CIFAR-10 binary files.


def test_read_cifar_bin_decodes_pixels_exactly(tmp_path):
  images = _cifar_planes(4)
  labels = np.array([0, 9, 3, 7])
  path = tmp_path / "batch.bin"
  _write_cifar(path, labels, images)
  assert os.path.getsize(path) == 4 * 3073
  got, got_labels = data._cifar10._read_cifar_bin(path)
  assert got.dtype == np.uint8 and got.shape == (4, 32, 32, 3)
  np.testing.assert_array_equal(got_labels, labels)
  for n, row, col in [(0, 0, 0), (1, 0, 31), (2, 31, 0), (3, 17, 5)]:
    expected = [
      (row * 32 + col + n) % 256,
      (255 - row * 7 - col - n) % 256,
      (row + 2 * col + 3 * n) % 256,
    ]
    np.testing.assert_array_equal(got[n, row, col], expected)
  np.testing.assert_array_equal(got, images.transpose(0, 2, 3, 1))


def test_cifar10_with_small_files_normalises_per_channel(tmp_path):
  train_images, test_images = _cifar_planes(20), _cifar_planes(10, offset=5)
  train_labels, test_labels = np.arange(20) % 10, (np.arange(10) * 3) % 10
  _write_cifar(tmp_path / "train.bin", train_labels, train_images)
  _write_cifar(tmp_path / "test.bin", test_labels, test_images)
  ds = data.cifar10(tmp_path, train_files=["train.bin"], test_files=["test.bin"])
  assert (ds.task, ds.num_classes, ds.input_shape) == ("classification", 10, (32, 32, 3))
  chex.assert_shape(ds.x_train, (20, 32, 32, 3))
  chex.assert_shape(ds.x_test, (10, 32, 32, 3))
  chex.assert_type([ds.x_train, ds.y_train], [jnp.float32, jnp.int32])
  np.testing.assert_array_equal(np.asarray(ds.y_train), train_labels)
  np.testing.assert_array_equal(np.asarray(ds.y_test), test_labels)
  raw = train_images.transpose(0, 2, 3, 1).astype(np.float64)
  np.testing.assert_allclose(ds.meta["mean"], raw.mean(axis=(0, 1, 2)), rtol=1e-12)
  np.testing.assert_allclose(ds.meta["std"], raw.std(axis=(0, 1, 2)), rtol=1e-12)
  x = np.asarray(ds.x_train, np.float64)
  np.testing.assert_allclose(x.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(x.std(axis=(0, 1, 2)), 1.0, atol=1e-5)
  # Undo the normalisation: the test pixels come back, in NHWC order.
  back = np.asarray(ds.x_test, np.float64) * ds.meta["std"] + ds.meta["mean"]
  np.testing.assert_allclose(back, test_images.transpose(0, 2, 3, 1), atol=1e-3)


def test_cifar10_missing_directory_and_files(tmp_path):
  missing_dir = tmp_path / "nowhere"
  with pytest.raises(FileNotFoundError, match=re.escape(str(missing_dir))):
    data.cifar10(missing_dir)
  _write_cifar(tmp_path / "data_batch_1.bin", [1], _cifar_planes(1))
  with pytest.raises(FileNotFoundError) as err:
    data.cifar10(tmp_path)
  message = str(err.value)
  for name in ["data_batch_2.bin", "data_batch_5.bin", "test_batch.bin"]:
    assert os.path.join(str(tmp_path), name) in message
  assert "data_batch_1.bin'" not in message  # present, so not listed
  with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "t.bin"))):
    data.cifar10(tmp_path, train_files=["data_batch_1.bin"], test_files=["t.bin"])
  with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "x.bin"))):
    data._cifar10._read_cifar_bin(tmp_path / "x.bin")


def test_cifar10_corrupt_files(tmp_path):
  truncated = tmp_path / "truncated.bin"
  _write_cifar(truncated, [1, 2], _cifar_planes(2))
  with open(truncated, "ab") as f:
    f.write(b"\x00" * 100)
  with pytest.raises(ValueError, match=re.escape(str(truncated)) + ".*6246 bytes.*3073"):
    data._cifar10._read_cifar_bin(truncated)
  bad_label = tmp_path / "bad_label.bin"
  _write_cifar(bad_label, [1, 10, 2], _cifar_planes(3))
  with pytest.raises(ValueError, match=re.escape(str(bad_label)) + ".*record 1 has label 10"):
    data._cifar10._read_cifar_bin(bad_label)
  empty = tmp_path / "empty.bin"
  empty.write_bytes(b"")
  with pytest.raises(ValueError, match=re.escape(str(empty))):
    data._cifar10._read_cifar_bin(empty)
  _write_cifar(tmp_path / "ok.bin", [1], _cifar_planes(1))
  with pytest.raises(ValueError, match=re.escape(str(bad_label))):
    data.cifar10(tmp_path, train_files=["ok.bin"], test_files=["bad_label.bin"])


# ----------------------------------------------------------------------------------------------
# Character corpus.


def test_char_corpus_vocab_splits_and_round_trip(corpus):
  _, ds = corpus
  n = len(_TEXT)
  assert (ds.task, ds.seq_len, ds.input_shape) == ("language_model", 16, (16,))
  assert ds.meta["vocab"] == "".join(sorted(set(_TEXT)))
  assert ds.num_classes == len(ds.meta["vocab"])
  assert ds.x_train is ds.y_train and ds.x_test is ds.y_test
  chex.assert_type([ds.x_train, ds.x_test], jnp.int32)
  n_test = int(n * 0.25)
  chex.assert_shape(ds.x_train, (n - n_test,))
  chex.assert_shape(ds.x_test, (n_test,))
  assert (ds.num_train, ds.num_test) == (n - n_test - 16, n_test - 16)
  stream = np.concatenate([np.asarray(ds.x_train), np.asarray(ds.x_test)])
  assert data.decode(stream, ds.meta["vocab"]) == _TEXT
  ids = data.encode("lazy é∑", ds.meta["vocab"])
  assert ids.dtype == np.int32 and data.decode(ids, ds.meta["vocab"]) == "lazy é∑"
  with pytest.raises(ValueError, match="not in the vocab"):
    data.encode("lazy Z", ds.meta["vocab"])
  with pytest.raises(ValueError, match="ids must be in"):
    data.decode([len(ds.meta["vocab"])], ds.meta["vocab"])


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=200))
def test_encode_decode_round_trip_property(text):
  vocab = "".join(sorted(set(text)))
  ids = data.encode(text, vocab)
  assert ids.shape == (len(text),) and ids.min() >= 0 and ids.max() < len(vocab)
  assert data.decode(ids, vocab) == text


def test_char_corpus_files_in_order_truncation_and_replacement(tmp_path):
  a = _write_text(tmp_path / "a.txt", "a" * 100)
  b = tmp_path / "b.txt"
  b.write_bytes(b"b" * 100 + b"\xff\xfe" + b"c" * 98)  # invalid UTF-8
  ds = data.char_corpus([a, b], seq_len=4, test_fraction=0.5)
  text = data.decode(
    np.concatenate([np.asarray(ds.x_train), np.asarray(ds.x_test)]), ds.meta["vocab"]
  )
  assert text.startswith("a" * 100 + "b" * 100) and "\ufffd" in text and text.endswith("c" * 98)
  short = data.char_corpus([a, b], seq_len=4, max_chars=150)
  assert short.meta["num_chars"] == 150 and short.num_classes == 2  # "a" and "b" only
  one = data.char_corpus(a, seq_len=4)  # a single path, not a sequence of characters
  assert one.meta["paths"] == (a,)


def test_char_corpus_bad_input(tmp_path):
  missing = tmp_path / "missing.txt"
  with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
    data.char_corpus([missing])
  empty = _write_text(tmp_path / "empty.txt", "")
  with pytest.raises(ValueError, match="empty"):
    data.char_corpus([empty])
  small = _write_text(tmp_path / "small.txt", "x" * 100)
  with pytest.raises(ValueError, match=r"test split has 10 characters.*seq_len \+ 1 = 17"):
    data.char_corpus([small], seq_len=16, test_fraction=0.1)
  with pytest.raises(ValueError, match="test_fraction"):
    data.char_corpus([small], test_fraction=0.0)
  with pytest.raises(ValueError, match="seq_len"):
    data.char_corpus([small], seq_len=0)


def test_char_corpus_default_is_the_standard_library():
  ds = data.char_corpus()
  assert ds.meta["num_chars"] > 100_000 and ds.num_classes > 50
  assert all(p.endswith(".py") for p in ds.meta["paths"])
  assert list(ds.meta["paths"]) == sorted(ds.meta["paths"])
  assert ds.num_train > 0 and ds.num_test > 0
  assert int(jnp.max(ds.x_train)) < ds.num_classes


# ----------------------------------------------------------------------------------------------
# Dispatch and the Dataset record.


def test_load_dataset_dispatches_by_name():
  ds = data.load_dataset("linear_regression", num_examples=16, dim=3, seed=5)
  direct = data.linear_regression(num_examples=16, dim=3, seed=5)
  assert ds.name == "linear_regression"
  chex.assert_trees_all_equal(ds.x_train, direct.x_train)
  assert set(data.DATASETS) == {
    "mnist1d",
    "digits",
    "linear_regression",
    "teacher_student",
    "cifar10",
    "char_corpus",
  }
  with pytest.raises(ValueError, match=r"'imagenet'.*mnist1d.*char_corpus"):
    data.load_dataset("imagenet")


def test_dataset_record():
  ds = data.linear_regression(num_examples=4, dim=2)
  assert hash(ds) == hash(ds) and ds == ds  # identity semantics: no elementwise array compare
  with pytest.raises(ValueError, match="task"):
    data.Dataset("x", "ranking", ds.x_train, ds.y_train, ds.x_test, ds.y_test, 0)


# ----------------------------------------------------------------------------------------------
# Batching.


class BatchFnTest(parameterized.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_classification_batches_are_rows_of_the_split(self):
    ds = data.linear_regression(num_examples=32, dim=3)
    sampler = data.make_batch_fn(ds, 10)
    x, y = self.variant(lambda s, key: s(key))(sampler, jax.random.key(0))
    chex.assert_shape(x, (10, 3))
    chex.assert_shape(y, (10,))
    chex.assert_type([x, y], jnp.float32)
    xs, ys = np.asarray(ds.x_train), np.asarray(ds.y_train)
    for xi, yi in zip(np.asarray(x), np.asarray(y)):
      (rows,) = np.nonzero((xs == xi).all(axis=1))
      assert rows.size == 1 and ys[rows[0]] == yi

  @chex.variants(with_jit=True, without_jit=True)
  def test_language_model_targets_are_inputs_shifted_by_one(self):
    text = "".join(chr(ord("a") + i % 26) + str(i % 7) for i in range(400))
    with tempfile.TemporaryDirectory() as tmp:
      ds = data.char_corpus([_write_text(os.path.join(tmp, "t.txt"), text)], seq_len=12)
    sampler = data.make_batch_fn(ds, 6)
    x, y = self.variant(lambda s, key: s(key))(sampler, jax.random.key(1))
    chex.assert_shape([x, y], (6, 12))
    chex.assert_type([x, y], jnp.int32)
    x, y = np.asarray(x), np.asarray(y)
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])
    stream = np.asarray(ds.x_train)
    windows = np.lib.stride_tricks.sliding_window_view(stream, 13)
    for xi, yi in zip(x, y):
      (starts,) = np.nonzero((windows[:, :12] == xi).all(axis=1))
      assert starts.size >= 1 and any(stream[s + 12] == yi[-1] for s in starts)

  def test_closure_and_argument_forms_agree_and_keys_matter(self):
    sampler = data.make_batch_fn(data.teacher_student(num_examples=64, dim=4), 16, split="test")
    key = jax.random.key(7)
    closed = jax.jit(lambda key: sampler(key))(key)
    passed = jax.jit(lambda s, key: s(key))(sampler, key)
    chex.assert_trees_all_equal(closed, passed)
    chex.assert_trees_all_equal(sampler(key), passed)
    other = sampler(jax.random.key(8))
    assert not np.array_equal(np.asarray(other[0]), np.asarray(passed[0]))
    raw_key = sampler(jax.random.PRNGKey(0))  # legacy uint32 keys work too
    chex.assert_shape(raw_key[0], (16, 4))

  def test_sampler_argument_does_not_embed_the_data(self):
    ds = data.linear_regression(num_examples=8192, dim=64)  # 2 MB of float32
    sampler = data.make_batch_fn(ds, 32)
    text = jax.jit(lambda s, key: s(key)).lower(sampler, jax.random.key(0)).as_text()
    assert len(text) < 100_000, len(text)

  @parameterized.parameters(0, -3, 2.5, True, None)
  def test_bad_batch_size(self, batch_size):
    ds = data.linear_regression(num_examples=8, dim=2)
    with self.assertRaisesRegex(ValueError, "batch_size.*" + re.escape(repr(batch_size))):
      data.make_batch_fn(ds, batch_size)
    with self.assertRaisesRegex(ValueError, "batch_size"):
      data.eval_batches(ds, batch_size)  # raised at the call, not at the first next()

  def test_bad_split_and_short_stream(self):
    ds = data.linear_regression(num_examples=8, dim=2)
    with self.assertRaisesRegex(ValueError, "split.*'valid'"):
      data.make_batch_fn(ds, 4, split="valid")
    with self.assertRaisesRegex(ValueError, "split"):
      data.eval_batches(ds, 4, split="valid")
    stream = jnp.arange(5, dtype=jnp.int32)
    with self.assertRaisesRegex(ValueError, "seq_len=5"):
      data.sample_batch(stream, stream, jax.random.key(0), 2, seq_len=5)


@pytest.mark.parametrize("batch_size", [1, 7, 64, 120, 1000])
def test_eval_batches_cover_the_test_set_exactly_once(digits, batch_size):
  batches = list(data.eval_batches(digits, batch_size))
  assert len(batches) == -(-360 // batch_size)
  for x, y, w in batches:
    chex.assert_shape(x, (batch_size, 8, 8, 1))
    chex.assert_shape([y, w], (batch_size,))
    chex.assert_type(w, jnp.float32)
  weights = np.concatenate([np.asarray(w) for _, _, w in batches])
  assert weights.sum() == 360 and set(np.unique(weights).tolist()) <= {0.0, 1.0}
  real = weights == 1.0
  xs = np.concatenate([np.asarray(x) for x, _, _ in batches])
  ys = np.concatenate([np.asarray(y) for _, y, _ in batches])
  np.testing.assert_array_equal(xs[real], np.asarray(digits.x_test))
  np.testing.assert_array_equal(ys[real], np.asarray(digits.y_test))
  np.testing.assert_array_equal(ys[~real], np.asarray(digits.y_test)[0])  # padding repeats ex. 0


def test_eval_batches_language_model_windows(corpus):
  _, ds = corpus
  stream = np.asarray(ds.x_test)
  num_windows = (len(stream) - 1) // 16
  batches = list(data.eval_batches(ds, 8))
  assert len(batches) == -(-num_windows // 8)
  xs = np.concatenate([np.asarray(x) for x, _, _ in batches])
  ys = np.concatenate([np.asarray(y) for _, y, _ in batches])
  weights = np.concatenate([np.asarray(w) for _, _, w in batches])
  chex.assert_shape([xs, ys], (len(batches) * 8, 16))
  assert weights.sum() == num_windows
  real = weights == 1.0
  np.testing.assert_array_equal(xs[real].reshape(-1), stream[: num_windows * 16])
  np.testing.assert_array_equal(ys[real].reshape(-1), stream[1 : num_windows * 16 + 1])
  capped = list(data.eval_batches(ds, 2, max_lm_batches=3))
  assert len(capped) == 3 and all(np.asarray(w).sum() == 2 for _, _, w in capped)
  train = list(data.eval_batches(ds, 8, split="train", max_lm_batches=None))
  assert sum(float(np.asarray(w).sum()) for _, _, w in train) == (ds.x_train.shape[0] - 1) // 16


def test_eval_batches_feed_one_jitted_step(digits):
  traces = []

  @jax.jit
  def weighted_sums(x, y, w):
    traces.append(x.shape)  # runs once per compilation
    return jnp.sum(w), jnp.sum(w * y), jnp.sum(w[:, None] * x.reshape(x.shape[0], -1))

  totals = np.sum([np.asarray(weighted_sums(*b)) for b in data.eval_batches(digits, 100)], axis=0)
  expected = [360, np.sum(np.asarray(digits.y_test)), np.sum(np.asarray(digits.x_test))]
  np.testing.assert_allclose(totals, expected, rtol=1e-5)
  assert len(traces) == 1  # four batches, one shape, one compilation
