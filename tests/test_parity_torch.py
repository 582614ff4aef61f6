"""Parity with PyTorch's Adam, AdamW and SGD on one training problem (float64, REFERENCES §1, §7).

Both frameworks train the same 2-layer tanh MLP from the same initial parameters on the
same stream of mini-batches, each computing its own gradient from its own current
parameters, so whole trajectories are compared, not single steps. The learning rate
follows a linear-warmup + cosine-decay optax schedule; torch follows it through
``LambdaLR`` with the multiplier schedule(t) / peak, so step t uses schedule(t) in both.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from problems import teacher_grad, teacher_loss, teacher_problem, train_teacher

import wd_jax

torch = pytest.importorskip(
  "torch", reason="PyTorch parity tests need torch (pip install torch==2.13.0, CPU wheel)"
)

STEPS = 120
WARMUP = 12
BATCH = 32
MIN_DECAY_EFFECT = 1e-3  # the decay must move θ by at least this much vs λ = 0


def _schedule(peak):
  return optax.warmup_cosine_decay_schedule(
    init_value=0.0, peak_value=peak, warmup_steps=WARMUP, decay_steps=STEPS, end_value=peak / 100
  )


def _problem(seed=0):
  return teacher_problem(seed, STEPS, BATCH)


_loss_jax = teacher_loss


def _loss_torch(p, x, y):
  out = torch.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
  return 0.5 * torch.mean(torch.sum((out - y) ** 2, dim=-1))


def _run_torch(make_opt, params, xs, ys, *, peak, lrs, wd, masked):
  tp = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
  if masked:  # torch's way of exempting biases: a param group with weight_decay=0
    groups = [
      {"params": [tp["w1"], tp["w2"]], "weight_decay": wd},
      {"params": [tp["b1"], tp["b2"]], "weight_decay": 0.0},
    ]
  else:
    groups = [{"params": list(tp.values()), "weight_decay": wd}]
  opt = make_opt(groups, peak)
  sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: lrs[t] / peak)
  for t, (x, y) in enumerate(zip(xs, ys)):
    assert opt.param_groups[0]["lr"] == pytest.approx(lrs[t], rel=1e-15, abs=0)
    opt.zero_grad()
    _loss_torch(tp, torch.from_numpy(x), torch.from_numpy(y)).backward()
    opt.step()
    sched.step()
  return {k: v.detach().numpy().copy() for k, v in tp.items()}


def _max_abs_diff(a, b, keys=None):
  return max(float(np.max(np.abs(a[k] - b[k]))) for k in keys or b)


# name: (wd_jax optimizer (lr, λ, mask), torch optimizer (param groups, lr), peak lr, λ, masked).
CASES = {
  "adam_l2": (
    lambda lr, wd, mask: wd_jax.adam_l2(lr, wd, mask=mask),
    lambda groups, lr: torch.optim.Adam(groups, lr=lr),
    1e-2,
    0.1,
    False,
  ),
  "adam_l2_tracked": (
    lambda lr, wd, mask: wd_jax.adam_l2(lr, wd, mask=mask, track_moments=True),
    lambda groups, lr: torch.optim.Adam(groups, lr=lr),
    1e-2,
    0.1,
    False,
  ),
  "adamw": (
    lambda lr, wd, mask: wd_jax.adamw(lr, weight_decay=wd, coupling="lr", mask=mask),
    lambda groups, lr: torch.optim.AdamW(groups, lr=lr),
    1e-2,
    0.1,
    False,
  ),
  "sgd": (
    lambda lr, wd, mask: wd_jax.sgd_l2(lr, wd, mask=mask),
    lambda groups, lr: torch.optim.SGD(groups, lr=lr),
    5e-2,
    0.1,
    False,
  ),
  "sgd_momentum": (
    lambda lr, wd, mask: wd_jax.sgd_l2(lr, wd, momentum=0.9, mask=mask),
    lambda groups, lr: torch.optim.SGD(groups, lr=lr, momentum=0.9),
    1e-2,
    0.1,
    False,
  ),
  "sgd_nesterov": (
    lambda lr, wd, mask: wd_jax.sgd_l2(lr, wd, momentum=0.9, nesterov=True, mask=mask),
    lambda groups, lr: torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True),
    1e-2,
    0.1,
    False,
  ),
  "adam_l2_masked": (
    lambda lr, wd, mask: wd_jax.adam_l2(lr, wd, mask=mask),
    lambda groups, lr: torch.optim.Adam(groups, lr=lr),
    1e-2,
    0.1,
    True,
  ),
  "adam_l2_tracked_masked": (
    lambda lr, wd, mask: wd_jax.adam_l2(lr, wd, mask=mask, track_moments=True),
    lambda groups, lr: torch.optim.Adam(groups, lr=lr),
    1e-2,
    0.1,
    True,
  ),
  "adamw_masked": (
    lambda lr, wd, mask: wd_jax.adamw(lr, weight_decay=wd, coupling="lr", mask=mask),
    lambda groups, lr: torch.optim.AdamW(groups, lr=lr),
    1e-2,
    0.1,
    True,
  ),
  "adam_l2_amsgrad": (
    lambda lr, wd, mask: wd_jax.adam_l2(lr, wd, mask=mask, amsgrad="torch"),
    lambda groups, lr: torch.optim.Adam(groups, lr=lr, amsgrad=True),
    1e-2,
    0.1,
    False,
  ),
  "adam_l2_tracked_amsgrad": (
    lambda lr, wd, mask: wd_jax.adam_l2(lr, wd, mask=mask, amsgrad="torch", track_moments=True),
    lambda groups, lr: torch.optim.Adam(groups, lr=lr, amsgrad=True),
    1e-2,
    0.1,
    False,
  ),
  "adamw_amsgrad": (
    lambda lr, wd, mask: wd_jax.adamw(lr, weight_decay=wd, mask=mask, amsgrad="torch"),
    lambda groups, lr: torch.optim.AdamW(groups, lr=lr, amsgrad=True),
    1e-2,
    0.1,
    False,
  ),
  "sgd_momentum_masked": (
    lambda lr, wd, mask: wd_jax.sgd_l2(lr, wd, momentum=0.9, mask=mask),
    lambda groups, lr: torch.optim.SGD(groups, lr=lr, momentum=0.9),
    1e-2,
    0.1,
    True,
  ),
}

# Every case under the warmup + cosine schedule; the unmasked ones also at a constant lr.
PARAMS = [pytest.param(name, "warmup_cosine", id=f"{name}-warmup_cosine") for name in CASES] + [
  pytest.param(name, "constant", id=f"{name}-constant")
  for name, case in CASES.items()
  if not case[-1]
]


@pytest.fixture(autouse=True)
def _x64_and_one_torch_thread():
  # One intra-op thread: these tensors are tiny, and on a busy 2-core machine torch's
  # thread pool made each run ~20x slower. Restored afterwards for other test files.
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  try:
    with jax.enable_x64(True):
      yield
  finally:
    torch.set_num_threads(threads)


@pytest.mark.parametrize(("name", "lr_kind"), PARAMS)
def test_matches_torch(name, lr_kind):
  make_jax, make_torch, peak, wd, masked = CASES[name]
  params, xs, ys = _problem()
  if lr_kind == "warmup_cosine":
    lr = _schedule(peak)
    # The lr optax applies at step t: the schedule at an int32 count (float32 even under x64),
    # evaluated under jit like inside the update (eager evaluation differs by up to ~4e-7
    # relative at a few steps, since XLA compiles the float32 cosine differently).
    lrs = np.asarray(jax.jit(jax.vmap(lr))(jnp.arange(STEPS + 1, dtype=jnp.int32)))
    lrs = [float(a) for a in lrs]
    # 1e-6 is the bound asked of parity with torch; it leaves room for lrs an ulp apart.
    atol = 1e-6
  else:
    lr, lrs = peak, [peak] * (STEPS + 1)
    atol = 1e-12  # only float64 rounding differs (measured ≤ 1.5e-15)
  mask = wd_jax.default_mask if masked else None
  run_torch = lambda wd, masked: _run_torch(
    make_torch, params, xs, ys, peak=peak, lrs=lrs, wd=wd, masked=masked
  )

  ours = train_teacher(make_jax(lr, wd, mask), params, xs, ys)
  theirs = run_torch(wd, masked)
  print(f"max |wd_jax - torch| = {_max_abs_diff(ours, theirs):.3e}")
  chex.assert_trees_all_close(ours, theirs, atol=atol, rtol=0)

  # Not vacuous: the parameters trained, and the decay moved them far beyond the tolerance ...
  assert _max_abs_diff(ours, params) > 10 * MIN_DECAY_EFFECT
  assert _max_abs_diff(ours, run_torch(0.0, False)) > MIN_DECAY_EFFECT
  if masked:  # ... and the mask mattered: decaying the biases too gives other biases.
    assert _max_abs_diff(ours, run_torch(wd, False), ("b1", "b2")) > MIN_DECAY_EFFECT


def test_optax_amsgrad_is_not_torchs():
  """amsgrad=True keeps optax's rule (the max of the debiased v̂); torch's (the max of the raw
  v, debiased at the current step) is amsgrad="torch": the two runs end apart."""
  params, xs, ys = _problem()
  lrs = [1e-2] * (STEPS + 1)
  theirs = _run_torch(
    lambda groups, lr: torch.optim.AdamW(groups, lr=lr, amsgrad=True),
    params,
    xs,
    ys,
    peak=1e-2,
    lrs=lrs,
    wd=0.1,
    masked=False,
  )
  optax_rule = train_teacher(wd_jax.adamw(1e-2, weight_decay=0.1, amsgrad=True), params, xs, ys)
  apart = _max_abs_diff(optax_rule, theirs)
  print(f"max |optax's AMSGrad - torch's| = {apart:.3e} after {STEPS} steps")
  assert apart > 1e-2


def test_torch_and_jax_gradients_agree():
  """The two losses are the same function: equal gradients at the initial params."""
  params, xs, ys = _problem()
  g_jax = teacher_grad(jax.tree.map(jnp.asarray, params), xs[0], ys[0])
  tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
  _loss_torch(tp, torch.from_numpy(xs[0]), torch.from_numpy(ys[0])).backward()
  g_torch = {k: v.grad.numpy() for k, v in tp.items()}
  chex.assert_trees_all_close(jax.tree.map(np.asarray, g_jax), g_torch, atol=1e-13, rtol=0)


# ---------------------------------------------------------------------------------------------
# Muon and Adafactor against torch 2.13 (weight_decay, param groups exempting the biases).
# torch's Muon runs its Newton–Schulz iteration in bfloat16 whatever the parameter dtype;
# everything else (momentum, Nesterov, the normalisation clamp, adjust_lr, the decay order) is
# float64. The test swaps in the same function without the cast, so that every other part is
# compared at 1e-10; `test_float64_newton_schulz_is_torchs` checks the swap.

RECIPE_ATOL = 1e-10


def _ns_without_bfloat16(grad, ns_coefficients, ns_steps, eps):
  """torch.optim._muon._zeropower_via_newtonschulz, line for line, minus ``grad.bfloat16()``."""
  a, b, c = ns_coefficients
  ortho_grad = grad.clone()
  if grad.size(0) > grad.size(1):
    ortho_grad = ortho_grad.T
  ortho_grad.div_(ortho_grad.norm().clamp(min=eps))
  for _ in range(ns_steps):
    gram_matrix = ortho_grad @ ortho_grad.T
    gram_update = torch.addmm(gram_matrix, gram_matrix, gram_matrix, beta=b, alpha=c)
    ortho_grad = torch.addmm(ortho_grad, gram_update, ortho_grad, beta=a)
  if grad.size(0) > grad.size(1):
    ortho_grad = ortho_grad.T
  return ortho_grad


def test_float64_newton_schulz_is_torchs():
  from torch.optim import _muon as torch_muon

  g = torch.from_numpy(np.random.default_rng(0).normal(size=(16, 8)))
  args = ((3.4445, -4.7750, 2.0315), 5, 1e-7)
  ours = _ns_without_bfloat16(g, *args).numpy()
  theirs = torch_muon._zeropower_via_newtonschulz(g, *args).double().numpy()
  assert np.max(np.abs(ours - theirs)) < 2e-2  # bfloat16 has 8 mantissa bits
  assert np.max(np.abs(ours - theirs)) > 0  # ... and the swap does change the precision


def _loss_torch_t(p, x, y):
  """`_loss_torch` with the matrices in torch's (out, in) layout."""
  out = torch.tanh(x @ p["w1"].T + p["b1"]) @ p["w2"].T + p["b2"]
  return 0.5 * torch.mean(torch.sum((out - y) ** 2, dim=-1))


def _run_torch_recipe(kind, params, xs, ys, *, peak, lrs, wd, **muon_kwargs):
  """torch Muon (matrices) + Adam (biases), or Adafactor with a λ-free bias group."""
  tp = {
    k: torch.tensor(v.T if v.ndim == 2 else v, dtype=torch.float64, requires_grad=True)
    for k, v in params.items()
  }
  mats, vecs = [tp["w1"], tp["w2"]], [tp["b1"], tp["b2"]]
  if kind == "muon":
    opts = [
      torch.optim.Muon(
        mats, lr=peak, weight_decay=wd, momentum=0.95, **({"nesterov": True} | muon_kwargs)
      ),
      torch.optim.AdamW(vecs, lr=peak, weight_decay=0.0),
    ]
  else:
    groups = [{"params": mats, "weight_decay": wd}, {"params": vecs, "weight_decay": 0.0}]
    opts = [torch.optim.Adafactor(groups, lr=peak)]
  scheds = [torch.optim.lr_scheduler.LambdaLR(o, lambda t: lrs[t] / peak) for o in opts]
  for x, y in zip(xs, ys):
    for o in opts:
      o.zero_grad()
    _loss_torch_t(tp, torch.from_numpy(x), torch.from_numpy(y)).backward()
    for o, s in zip(opts, scheds):
      o.step()
      s.step()
  return {
    k: (v.detach().numpy().T if v.ndim == 2 else v.detach().numpy()).copy() for k, v in tp.items()
  }


# torch's Muon takes ε = 1e-7, its AdamW (the other leaves) 1e-8.
_TORCH_MUON = {"convention": "torch", "eps": 1e-7, "adam_eps": 1e-8}
TORCH_RECIPES = {
  # name: (wd_jax recipe (lr, λ), torch optimizer kind, its extra Muon kwargs, peak lr, λ)
  "muon": (
    lambda lr, wd: wd_jax.muon(lr, weight_decay=wd, **_TORCH_MUON),
    "muon",
    {},
    2e-2,
    0.1,
  ),
  "muon_match_rms_adamw": (
    lambda lr, wd: wd_jax.muon(lr, weight_decay=wd, consistent_rms=0.2, **_TORCH_MUON),
    "muon",
    {"adjust_lr_fn": "match_rms_adamw"},
    2e-3,
    0.1,
  ),
  "muon_no_nesterov": (
    lambda lr, wd: wd_jax.muon(lr, weight_decay=wd, nesterov=False, **_TORCH_MUON),
    "muon",
    {"nesterov": False},
    2e-2,
    0.1,
  ),
  "adafactor": (
    lambda lr, wd: wd_jax.adafactor(
      lr, weight_decay_rate=wd, weight_decay_mask=wd_jax.default_mask, convention="torch"
    ),
    "adafactor",
    {},
    0.5,
    0.02,
  ),
}


@pytest.mark.parametrize("name", list(TORCH_RECIPES))
def test_recipe_matches_torch(name, monkeypatch):
  from torch.optim import _muon as torch_muon

  monkeypatch.setattr(torch_muon, "_zeropower_via_newtonschulz", _ns_without_bfloat16)
  make, kind, kwargs, peak, wd = TORCH_RECIPES[name]
  params, xs, ys = _problem()
  lr = _schedule(peak)
  lrs = [
    float(a) for a in np.asarray(jax.jit(jax.vmap(lr))(jnp.arange(STEPS + 1, dtype=jnp.int32)))
  ]
  if name == "adafactor":  # torch's relative step min(α_t, 1/√t) must bind for part of the run
    t = np.arange(1, STEPS + 1)
    assert np.any(1 / np.sqrt(t) < lrs[:STEPS]) and np.any(1 / np.sqrt(t) > lrs[:STEPS])
  ours = train_teacher(make(lr, wd), params, xs, ys)
  theirs = _run_torch_recipe(kind, params, xs, ys, peak=peak, lrs=lrs, wd=wd, **kwargs)
  diff = _max_abs_diff(ours, theirs)
  print(f"{name}: max |wd_jax - torch| = {diff:.3e} after {STEPS} steps")
  assert diff <= RECIPE_ATOL
  assert _max_abs_diff(ours, params) > 10 * MIN_DECAY_EFFECT
  no_decay = _run_torch_recipe(kind, params, xs, ys, peak=peak, lrs=lrs, wd=0.0, **kwargs)
  assert _max_abs_diff(ours, no_decay) > MIN_DECAY_EFFECT
