"""Your own Flax NNX model, arrays, batch iterator and optimizer recipe through the one loop."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx

import wd_jax
from wd_jax.engine import config as config_lib
from wd_jax.engine import data as data_lib
from wd_jax.engine import sweep, train
from wd_jax.engine.runlog import read_metrics


class TwoLayer(nnx.Module):
  """A model the library has never heard of: Linear → LayerNorm → ReLU → Linear."""

  def __init__(self, rngs: nnx.Rngs):
    self.inp = nnx.Linear(6, 32, use_bias=False, rngs=rngs)
    self.norm = nnx.LayerNorm(32, rngs=rngs)
    self.out = nnx.Linear(32, 3, rngs=rngs)

  def __call__(self, x):
    return self.out(jax.nn.relu(self.norm(self.inp(x))))


def _arrays(n_train=300, n_test=120, seed=0):
  """Three Gaussian blobs in 6-D: a task the model learns in a few dozen steps."""
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(3, 6)) * 2.0
  labels = rng.integers(0, 3, size=n_train + n_test)
  x = centers[labels] + rng.normal(size=(n_train + n_test, 6))
  return x[:n_train], labels[:n_train], x[n_train:], labels[n_train:]


def _config(steps=60):
  c = config_lib.base_config()
  c.optimizer.name = "adam_l2"
  c.optimizer.kwargs = {"track_moments": True}
  c.optimizer.learning_rate = 1e-2
  c.optimizer.weight_decay = 1e-3
  c.steps = steps
  c.batch_size = 32
  c.eval_batch_size = 64
  c.log_every = c.diagnostics_every = 20
  c.eval_every = c.checkpoint_every = 20
  return c


@pytest.fixture(scope="module")
def dataset():
  return data_lib.from_arrays(*_arrays())


def test_fit_trains_a_user_model_on_user_arrays_with_diagnostics(tmp_path, dataset):
  result = train.fit(_config(), str(tmp_path / "run"), model=TwoLayer, data=dataset, verbose=False)
  assert result["test_accuracy"] > 0.9  # the blobs are separable; chance is 1/3
  records = read_metrics(str(tmp_path / "run" / "metrics.jsonl"))
  assert [r["step"] for r in records] == [20, 40, 60]
  for key in ("param_norm", "grad_norm", "update_norm", "l2_share", "angular_update/inp/kernel"):
    assert key in records[-1], key
  assert 0.0 < records[-1]["l2_share"] < 1.0
  with open(tmp_path / "run" / "config.json") as f:
    assert '"name": "user:TwoLayer"' in f.read()


def test_fit_resumes_a_user_model_bitwise(tmp_path, dataset):
  whole = train.fit(_config(), str(tmp_path / "whole"), model=TwoLayer, data=dataset, verbose=False)
  part = str(tmp_path / "part")
  train.fit(_config(), part, model=TwoLayer, data=dataset, verbose=False)
  # As if killed after the step-40 checkpoint: drop the step-60 checkpoint, then resume (the
  # run's status.json says "completed", but its last checkpoint is gone: it trains again).
  with ocp.CheckpointManager(os.path.join(part, "checkpoints")) as mngr:
    assert mngr.all_steps() == [40, 60]
    mngr.delete(60)
  resumed = train.fit(_config(), part, model=TwoLayer, data=dataset, resume=True, verbose=False)
  same = jax.tree.map(np.array_equal, whole["state"].params, resumed["state"].params)
  assert all(jax.tree.leaves(same))
  assert resumed["loss"] == whole["loss"]
  assert [r["step"] for r in read_metrics(os.path.join(part, "metrics.jsonl"))] == [20, 40, 60]


def test_a_batch_iterator_gives_the_sampler_run_when_it_yields_the_same_batches(tmp_path, dataset):
  cfg = _config()
  sampler = data_lib.make_batch_fn(dataset, cfg.batch_size)
  key = jax.random.PRNGKey(cfg.seed + 1)  # the run's batch key (TrainState.key)

  def batches(start):  # the batches the device sampler would draw, from `start` on
    step = start
    while True:
      yield sampler(jax.random.fold_in(key, step))
      step += 1

  stream = train.BatchStream(batches, eval_data=dataset)
  a = train.fit(cfg, str(tmp_path / "a"), model=TwoLayer, data=dataset, verbose=False)
  b = train.fit(cfg, str(tmp_path / "b"), model=TwoLayer, data=stream, verbose=False)
  same = jax.tree.map(np.array_equal, a["state"].params, b["state"].params)
  assert all(jax.tree.leaves(same))


def _sgd_prox_l1(learning_rate, weight_decay, mask):
  """A recipe the registry does not hold: SGD then the proximal L1 step."""
  return optax.chain(
    optax.sgd(learning_rate), wd_jax.prox_l1(weight_decay, learning_rate=learning_rate, mask=mask)
  )


def test_a_four_configuration_sweep_of_a_user_model_and_recipe_equals_each_run_alone(
  tmp_path, dataset
):
  cfg = _config(steps=40)
  cfg.optimizer.name = "sgd_prox_l1"  # only a label: the recipe is passed in
  cfg.optimizer.kwargs = {}
  cfg.optimizer.learning_rate = 0.1
  grid = {"weight_decay": [1e-3, 0.3], "seed": [0, 1]}
  rows = sweep.run_sweep(
    cfg,
    grid,
    str(tmp_path / "sweep"),
    strategy="vmap",
    verbose=False,
    return_states=True,
    model=lambda rngs: TwoLayer(rngs),
    data=dataset,
    optimizer=_sgd_prox_l1,
  )
  assert len(rows) == 4 and not any(r["diverged"] for r in rows)
  # The strong L1 gives exact zeros, the weak one does not.
  zeros = {
    (r["weight_decay"], r["seed"]): float(np.mean(r["state"].params["inp"]["kernel"] == 0))
    for r in rows
  }
  assert zeros[0.3, 0] > 0.2 and zeros[1e-3, 0] < 0.05
  for r in rows:
    solo = cfg.copy_and_resolve_references()
    solo.optimizer.weight_decay, solo.seed = r["weight_decay"], r["seed"]
    alone = train.fit(
      solo,
      str(tmp_path / f"solo-{r['index']}"),
      model=lambda rngs: TwoLayer(rngs),
      data=dataset,
      optimizer=_sgd_prox_l1,
      verbose=False,
    )
    diff = jax.tree.map(
      lambda x, y: float(jnp.max(jnp.abs(x - y))), r["state"].params, alone["state"].params
    )
    assert max(jax.tree.leaves(diff)) < 1e-5
    np.testing.assert_allclose(r["test_loss"], alone["test_loss"], rtol=1e-4)


def test_bad_user_pieces_are_refused_before_the_workdir_exists(tmp_path, dataset):
  with pytest.raises(ValueError, match="model must be"):
    train.fit(_config(), str(tmp_path / "a"), model=42, data=dataset, verbose=False)
  with pytest.raises(ValueError, match="data must be"):
    train.fit(_config(), str(tmp_path / "b"), model=TwoLayer, data=[1, 2], verbose=False)
  with pytest.raises(ValueError, match="GradientTransformation"):
    train.fit(
      _config(),
      str(tmp_path / "c"),
      model=TwoLayer,
      data=dataset,
      optimizer=lambda **kw: "not an optimizer",
      verbose=False,
    )
  with pytest.raises(ValueError, match="processes"):
    sweep.run_sweep(
      _config(),
      {"seed": [0, 1]},
      str(tmp_path / "d"),
      strategy="processes",
      model=TwoLayer,
      data=dataset,
      verbose=False,
    )
  assert not any(os.path.exists(tmp_path / n) for n in "abcd")


class WrongInput(nnx.Module):
  """Expects 5 features; the data has 6."""

  def __init__(self, rngs: nnx.Rngs):
    self.inp = nnx.Linear(5, 3, rngs=rngs)

  def __call__(self, x):
    return self.inp(x)


def test_a_user_model_that_cannot_train_on_the_data_is_named_not_the_config_model(
  tmp_path, dataset
):
  with pytest.raises(ValueError, match=r"^your model WrongInput cannot train on") as e:
    train.fit(_config(), str(tmp_path / "never"), model=WrongInput, data=dataset, verbose=False)
  assert "cnn1d" not in str(e.value) and not (tmp_path / "never").exists()
