"""Flax NNX models for the weight-decay studies, usable as pure functions of pytrees.

Four small models cover the benchmarks of REFERENCES §6: an `MLP`, a `CNN1D` for MNIST-1D, a
BatchNorm `ResNet` (whose convolution kernels are exactly scale-invariant, REFERENCES §4) and a
pre-LayerNorm causal `TransformerLM`. Each has a `scale_invariant_mask()`: a pytree of bools
shaped like ``nnx.state(model, nnx.Param)``, True exactly for the parameters w with
L(c·w) = L(w) for every c > 0 — the ones whose effective learning rate is α/‖w‖².

The training loop never calls a module with Python-side state. It splits the model once and
applies it as a pure function, so the same step is jitted, vmapped over stacked parameters and
pmapped::

  train_gd, eval_gd, params, rest = split_model(model)
  logits, rest = apply_model(train_gd, params, rest, x)   # BatchNorm statistics updated
  logits, _ = apply_model(eval_gd, params, rest, x)       # running statistics used, unchanged
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from wd_jax import masks

__all__ = [
  "CNN1D",
  "MLP",
  "MODELS",
  "ResNet",
  "TransformerLM",
  "apply_model",
  "build_model",
  "split_model",
]

PathParts = tuple[Any, ...]

# torch's BatchNorm momentum 0.1 (flax's default 0.99 averages over ~100 steps, too slow for
# the few-hundred-step runs of this project).
_BN_MOMENTUM = 0.9


class _Model(nnx.Module):
  """Shared behaviour: the scale-invariant mask, computed from the paths subclasses name."""

  def _scale_invariant_paths(self) -> set[PathParts]:
    """Paths (module path + parameter name) of the scale-invariant parameters; none by default."""
    return set()

  def scale_invariant_mask(self) -> Any:
    """A pytree of bools with the structure of ``nnx.state(self, nnx.Param)``.

    True exactly for the parameters w on which the output does not depend through ‖w‖
    (f(c·w) = f(w) for c > 0, in train mode), so the gradient is orthogonal to w.

    Returns:
      An ``nnx.State`` with the tree structure of ``nnx.state(self, nnx.Param)`` whose leaves
      are Python bools; it can be passed as an optax ``mask`` or to ``wd_jax`` masks.
    """
    # Paths named as wd_jax.masks names them (so a mask rule and this mask agree on a path).
    invariant = {tuple(str(p) for p in parts) for parts in self._scale_invariant_paths()}
    return jax.tree_util.tree_map_with_path(
      lambda path, _: masks.path_names(path) in invariant, nnx.state(self, nnx.Param)
    )


def _float_dtype(dtype: str | None) -> Any:
  """A model's float dtype from its config name (None: float32), checked against x64 mode."""
  if dtype is None:
    return jnp.float32
  if dtype not in ("float32", "float64", "bfloat16", "float16"):
    raise ValueError(
      f"dtype must be one of 'float32', 'float64', 'bfloat16', 'float16', got {dtype!r}."
    )
  if dtype == "float64" and not jax.config.read("jax_enable_x64"):
    raise ValueError(
      "dtype='float64' needs 64-bit mode: jax.config.update('jax_enable_x64', True) first."
    )
  return jnp.dtype(dtype)


def _sizes(name: str, values: Any, *, allow_empty: bool = True) -> list[int]:
  """`values` as a list of ints >= 1; `ValueError` naming the argument otherwise."""
  if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
    raise ValueError(f"{name} must be a list of ints >= 1, got {values!r}.")
  out = []
  for v in values:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
      raise ValueError(f"{name} must be a list of ints >= 1, got {tuple(values)!r}.")
    out.append(int(v))
  if not out and not allow_empty:
    raise ValueError(f"{name} needs at least one entry, got {tuple(values)!r}.")
  return out


def _flatten(x: jax.Array) -> jax.Array:
  return x.reshape(x.shape[0], -1)


class MLP(_Model):
  """A fully connected ReLU network, plain or with every hidden layer normalised.

  ``norm=None``: Linear → ReLU; no parameter is scale-invariant. ``norm="layer"``: bias-free
  Linear → LayerNorm → ReLU, so every hidden kernel is scale-invariant (f(c·W) = f(W) for
  c > 0: LayerNorm removes the scale of its input) and the head is not.

  Args:
    in_features: size of a flattened input example.
    widths: widths of the hidden layers (may be empty: a linear model).
    num_classes: number of outputs.
    rngs: random streams for initialisation.
    norm: None or ``"layer"``.
    dtype: parameter and computation dtype, e.g. ``"float64"`` (needs
      ``jax.config.update("jax_enable_x64", True)``); default float32.

  Input (B, in_features) or (B, ...) with prod(...) = in_features; output (B, num_classes).
  """

  def __init__(
    self,
    in_features: int,
    widths: Sequence[int],
    num_classes: int,
    *,
    rngs: nnx.Rngs,
    norm: str | None = None,
    dtype: str | None = None,
  ) -> None:
    if norm not in (None, "layer"):
      raise ValueError(f"norm must be None or 'layer', got {norm!r}.")
    dt = _float_dtype(dtype)
    sizes = [int(in_features), *_sizes("widths", widths)]
    self.norm = norm
    bias = norm is None
    self.hidden = nnx.List(
      [
        nnx.Linear(a, b, use_bias=bias, dtype=dt, param_dtype=dt, rngs=rngs)
        for a, b in itertools.pairwise(sizes)
      ]
    )
    self.norms = nnx.List(
      [nnx.LayerNorm(b, dtype=dt, param_dtype=dt, rngs=rngs) for b in sizes[1:]]
      if norm == "layer"
      else []
    )
    self.head = nnx.Linear(sizes[-1], int(num_classes), dtype=dt, param_dtype=dt, rngs=rngs)

  def _scale_invariant_paths(self) -> set[PathParts]:
    if self.norm is None:
      return set()
    return {("hidden", i, "kernel") for i in range(len(self.hidden))}

  def __call__(self, x: jax.Array) -> jax.Array:
    x = _flatten(x)
    for i, layer in enumerate(self.hidden):
      x = layer(x)
      if self.norm == "layer":
        x = self.norms[i](x)
      x = jax.nn.relu(x)
    return self.head(x)


class CNN1D(_Model):
  """A small 1-D CNN for MNIST-1D, after the CNN of Greydanus & Kobak (2024, ~94% test accuracy).

  Each layer is a kernel-5, stride-2, SAME-padded convolution followed by ReLU, so a length-40
  signal shrinks 40 → 20 → 10 → 5; the flattened features go to a linear head. No parameter is
  scale-invariant (no normalisation).

  Args:
    num_classes: number of outputs.
    channels: output channels of each convolution.
    in_length: length of the input signal (40 for MNIST-1D).
    rngs: random streams for initialisation.

  Input (B, in_length) or (B, in_length, 1); output (B, num_classes).
  """

  def __init__(
    self,
    num_classes: int = 10,
    channels: Sequence[int] = (32, 32, 32),
    *,
    in_length: int = 40,
    rngs: nnx.Rngs,
  ) -> None:
    sizes = [1, *_sizes("channels", channels, allow_empty=False)]
    self.convs = nnx.List(
      [
        nnx.Conv(a, b, kernel_size=(5,), strides=(2,), padding="SAME", rngs=rngs)
        for a, b in itertools.pairwise(sizes)
      ]
    )
    length = int(in_length)
    for _ in channels:
      length = -(-length // 2)  # SAME padding, stride 2: ceil(L / 2)
    self.head = nnx.Linear(length * sizes[-1], int(num_classes), rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim == 2:
      x = x[..., None]
    for conv in self.convs:
      x = jax.nn.relu(conv(x))
    return self.head(_flatten(x))


class _ConvBN(nnx.Module):
  """A bias-free convolution directly followed by BatchNorm: its kernel is scale-invariant."""

  def __init__(
    self,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    strides: int,
    *,
    axis_name: str | None,
    rngs: nnx.Rngs,
  ) -> None:
    self.conv = nnx.Conv(
      in_channels,
      out_channels,
      kernel_size=(kernel_size, kernel_size),
      strides=(strides, strides),
      padding="SAME",
      use_bias=False,  # a bias before BatchNorm is cancelled by its mean subtraction
      kernel_init=nnx.initializers.he_normal(),
      rngs=rngs,
    )
    self.bn = nnx.BatchNorm(out_channels, momentum=_BN_MOMENTUM, axis_name=axis_name, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.bn(self.conv(x))


class _BasicBlock(nnx.Module):
  """The ResNet basic block: relu(BN(conv(relu(BN(conv(x))))) + shortcut(x))."""

  def __init__(
    self,
    in_channels: int,
    out_channels: int,
    strides: int,
    *,
    axis_name: str | None,
    rngs: nnx.Rngs,
  ) -> None:
    self.conv_bn1 = _ConvBN(in_channels, out_channels, 3, strides, axis_name=axis_name, rngs=rngs)
    self.conv_bn2 = _ConvBN(out_channels, out_channels, 3, 1, axis_name=axis_name, rngs=rngs)
    if strides != 1 or in_channels != out_channels:
      self.shortcut = _ConvBN(in_channels, out_channels, 1, strides, axis_name=axis_name, rngs=rngs)
    else:
      self.shortcut = None

  def __call__(self, x: jax.Array) -> jax.Array:
    y = self.conv_bn2(jax.nn.relu(self.conv_bn1(x)))
    skip = x if self.shortcut is None else self.shortcut(x)
    return jax.nn.relu(y + skip)


class ResNet(_Model):
  """A small 2-D ResNet with BatchNorm after every (bias-free) convolution.

  Stem (3×3 conv + BN + ReLU), then one stage per width of `blocks_per_stage` basic blocks (the
  first block of every stage after the first halves the resolution, with a 1×1 conv + BN
  shortcut), global average pooling and a linear head.

  Every convolution kernel is followed directly by BatchNorm, so in train mode (batch
  statistics) the network's output does not change when a kernel is multiplied by c > 0 (up to
  BatchNorm's ε = 1e-5 added to the variance): those kernels are scale-invariant and
  `scale_invariant_mask` marks them. BatchNorm scales and biases and the head are not.
  In eval mode the running statistics are fixed, so the invariance holds only in train mode.

  Args:
    num_classes: number of outputs.
    widths: channels of each stage.
    blocks_per_stage: basic blocks per stage.
    in_channels: channels of the input image.
    axis_name: if set, BatchNorm averages its batch statistics over this mapped axis (for
      ``jax.pmap(..., axis_name=axis_name)``); with ``jit`` and sharded arrays leave it None.
    rngs: random streams for initialisation.

  Input (B, H, W, in_channels) float; output (B, num_classes).
  """

  def __init__(
    self,
    num_classes: int = 10,
    widths: Sequence[int] = (16, 32, 64),
    blocks_per_stage: int = 1,
    in_channels: int = 3,
    *,
    axis_name: str | None = None,
    rngs: nnx.Rngs,
  ) -> None:
    widths = _sizes("widths", widths, allow_empty=False)
    (blocks_per_stage,) = _sizes("blocks_per_stage", [blocks_per_stage])
    self.stem = _ConvBN(int(in_channels), widths[0], 3, 1, axis_name=axis_name, rngs=rngs)
    blocks = []
    channels = widths[0]
    for stage, width in enumerate(widths):
      for i in range(int(blocks_per_stage)):
        strides = 2 if stage > 0 and i == 0 else 1
        blocks.append(_BasicBlock(channels, width, strides, axis_name=axis_name, rngs=rngs))
        channels = width
    self.blocks = nnx.List(blocks)
    self.head = nnx.Linear(channels, int(num_classes), rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = jax.nn.relu(self.stem(x))
    for block in self.blocks:
      x = block(x)
    return self.head(jnp.mean(x, axis=(1, 2)))

  def _scale_invariant_paths(self) -> set[PathParts]:
    return {
      (*path, "conv", "kernel")
      for path, module in nnx.iter_modules(self)
      if isinstance(module, _ConvBN)
    }


class _DecoderBlock(nnx.Module):
  """x + attn(LN(x)), then x + MLP(LN(x)) with a GELU MLP."""

  def __init__(self, d_model: int, num_heads: int, mlp_ratio: int, *, rngs: nnx.Rngs) -> None:
    self.ln_attn = nnx.LayerNorm(d_model, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(
      num_heads=num_heads, in_features=d_model, decode=False, rngs=rngs
    )
    self.ln_mlp = nnx.LayerNorm(d_model, rngs=rngs)
    self.mlp_in = nnx.Linear(d_model, mlp_ratio * d_model, rngs=rngs)
    self.mlp_out = nnx.Linear(mlp_ratio * d_model, d_model, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x + self.attn(self.ln_attn(x), is_causal=True)
    return x + self.mlp_out(jax.nn.gelu(self.mlp_in(self.ln_mlp(x))))


class TransformerLM(_Model):
  """A pre-LayerNorm, decoder-only causal Transformer language model (GPT-2 layout).

  Token + learned positional embeddings, `num_layers` blocks of (LN → causal self-attention →
  residual, LN → GELU MLP → residual), a final LN and a linear head to the vocabulary. No
  dropout. The logits at position t depend only on tokens 0..t.

  No parameter is exactly scale-invariant: pre-LN normalises the *input* of each block, not the
  output of a weight. Scaling W_q or W_k changes the softmax temperature, W_v / W_o / the MLP
  weights scale what is added to the residual stream, and the embeddings are summed before any
  normalisation, so `scale_invariant_mask` is all False.

  Args:
    vocab_size: number of tokens (inputs and output classes).
    d_model: width of the residual stream.
    num_heads: attention heads (must divide d_model).
    num_layers: decoder blocks.
    max_len: longest sequence (size of the positional embedding table).
    mlp_ratio: hidden width of the MLP in units of d_model.
    rngs: random streams for initialisation.

  Input int (B, T) with T ≤ max_len; output float logits (B, T, vocab_size).
  """

  def __init__(
    self,
    vocab_size: int,
    *,
    d_model: int = 128,
    num_heads: int = 4,
    num_layers: int = 2,
    max_len: int = 128,
    mlp_ratio: int = 4,
    rngs: nnx.Rngs,
  ) -> None:
    _sizes("d_model, num_heads, num_layers, mlp_ratio", [d_model, num_heads, num_layers, mlp_ratio])
    if d_model % num_heads:
      raise ValueError(
        f"TransformerLM needs num_heads to divide d_model, got d_model={d_model}, "
        f"num_heads={num_heads}."
      )
    embed_init = nnx.initializers.normal(0.02)  # GPT-2's embedding scale
    self.max_len = int(max_len)
    self.token_embed = nnx.Embed(int(vocab_size), d_model, embedding_init=embed_init, rngs=rngs)
    self.pos_embed = nnx.Embed(self.max_len, d_model, embedding_init=embed_init, rngs=rngs)
    self.blocks = nnx.List(
      [_DecoderBlock(d_model, num_heads, mlp_ratio, rngs=rngs) for _ in range(num_layers)]
    )
    self.ln_final = nnx.LayerNorm(d_model, rngs=rngs)
    self.head = nnx.Linear(d_model, int(vocab_size), rngs=rngs)

  def __call__(self, tokens: jax.Array) -> jax.Array:
    if tokens.ndim != 2:
      raise ValueError(f"TransformerLM expects int tokens of shape (B, T), got {tokens.shape}.")
    seq_len = tokens.shape[1]
    if seq_len > self.max_len:
      raise ValueError(f"TransformerLM got T={seq_len} tokens, more than max_len={self.max_len}.")
    x = self.token_embed(tokens) + self.pos_embed(jnp.arange(seq_len))[None]
    for block in self.blocks:
      x = block(x)
    return self.head(self.ln_final(x))


# ----------------------------------------------------------------------------------------------
# Building and applying models as pure functions.


def _build_mlp(num_classes: int, input_shape: tuple[int, ...], rngs: nnx.Rngs, **kwargs) -> MLP:
  kwargs.setdefault("widths", (128, 128))
  return MLP(math.prod(input_shape), num_classes=num_classes, rngs=rngs, **kwargs)


def _build_cnn1d(num_classes: int, input_shape: tuple[int, ...], rngs: nnx.Rngs, **kwargs) -> CNN1D:
  kwargs.setdefault("in_length", input_shape[0])
  return CNN1D(num_classes, rngs=rngs, **kwargs)


def _build_resnet(
  num_classes: int, input_shape: tuple[int, ...], rngs: nnx.Rngs, **kwargs
) -> ResNet:
  if len(input_shape) != 3:
    raise ValueError(f"build_model('resnet') needs input_shape (H, W, C), got {input_shape}.")
  kwargs.setdefault("in_channels", input_shape[-1])
  return ResNet(num_classes, rngs=rngs, **kwargs)


def _build_transformer(
  num_classes: int, input_shape: tuple[int, ...], rngs: nnx.Rngs, **kwargs
) -> TransformerLM:
  if "max_len" not in kwargs:
    if len(input_shape) != 1:
      raise ValueError(
        "build_model('transformer') takes max_len from input_shape (T,); got input_shape="
        f"{input_shape}: pass input_shape=(seq_len,) or max_len explicitly."
      )
    kwargs["max_len"] = input_shape[0]
  return TransformerLM(num_classes, rngs=rngs, **kwargs)


MODELS: dict[str, Callable[..., nnx.Module]] = {
  "mlp": _build_mlp,
  "cnn1d": _build_cnn1d,
  "resnet": _build_resnet,
  "transformer": _build_transformer,
}


def build_model(
  name: str, *, num_classes: int, input_shape: tuple[int, ...], rngs: nnx.Rngs, **kwargs: Any
) -> nnx.Module:
  """Builds a model by name, sized for a dataset.

  Args:
    name: one of ``"mlp"``, ``"cnn1d"``, ``"resnet"``, ``"transformer"``.
    num_classes: outputs; for ``"transformer"`` the vocabulary size.
    input_shape: shape of one example (no batch axis). ``"mlp"`` takes in_features =
      prod(input_shape) (default widths (128, 128)); ``"cnn1d"`` in_length = input_shape[0];
      ``"resnet"`` in_channels = input_shape[-1]; ``"transformer"`` max_len = input_shape[0].
    rngs: random streams for initialisation.
    **kwargs: passed to the model's constructor (e.g. ``widths``); they override the values
      derived from `input_shape`.

  Returns:
    The model, in train mode.

  Raises:
    ValueError: `name` is not a known model, or `input_shape` does not fit it.

  Examples:
    >>> from flax import nnx
    >>> model = build_model("resnet", num_classes=10, input_shape=(8, 8, 1), rngs=nnx.Rngs(0))
    >>> type(model).__name__
    'ResNet'
  """
  if name not in MODELS:
    raise ValueError(f"Unknown model name {name!r}; valid names: {sorted(MODELS)}.")
  input_shape = tuple(int(d) for d in input_shape)
  return MODELS[name](num_classes, input_shape, rngs, **kwargs)


def split_model(
  model: nnx.Module,
) -> tuple[nnx.GraphDef, nnx.GraphDef, nnx.State, nnx.State]:
  """Splits a model into train/eval graph definitions and its parameter and other state.

  The model itself is not modified (its train/eval mode is left as it was), and the returned
  states do not alias its variables.

  Args:
    model: an NNX module.

  Returns:
    ``(train_graphdef, eval_graphdef, params, rest)``: the static structure in train mode
    (BatchNorm uses batch statistics and updates its running averages; dropout, if any, on) and in
    eval mode (running averages used; dropout off), the ``nnx.Param`` state and all other state
    (e.g. ``nnx.BatchStat``; empty for models without BatchNorm).
  """
  modes = {"raise_if_not_found": False}
  train_model = nnx.with_attributes(model, use_running_average=False, deterministic=False, **modes)
  eval_model = nnx.with_attributes(model, use_running_average=True, deterministic=True, **modes)
  train_graphdef, params, rest = nnx.split(train_model, nnx.Param, ...)
  eval_graphdef = nnx.split(eval_model, nnx.Param, ...)[0]
  # nnx.split hands out the model's own Variable objects; fresh nodes (same immutable arrays)
  # keep later eager calls of `model` from changing the returned state, and vice versa.
  params, rest = jax.tree.map(lambda a: a, (params, rest))
  return train_graphdef, eval_graphdef, params, rest


def apply_model(
  graphdef: nnx.GraphDef, params: nnx.State, rest: nnx.State, x: jax.Array
) -> tuple[jax.Array, nnx.State]:
  """Applies a split model as a pure function.

  Args:
    graphdef: a graph definition from `split_model` (train or eval).
    params: the ``nnx.Param`` state.
    rest: the other state (BatchNorm statistics), as returned by `split_model` or a previous call.
    x: a batch of inputs.

  Returns:
    ``(logits, new_rest)``: the outputs, and `rest` after the call (BatchNorm running averages
    updated in train mode, returned unchanged in eval mode), with the structure of `rest`.
    Nothing outside the returned values is modified, so this is safe under ``jax.jit``,
    ``jax.vmap`` and ``jax.pmap``.
  """
  # copy=True: without it the merged model would hold the caller's Variable objects and an
  # eager train-mode call would overwrite the BatchNorm statistics inside the input `rest`.
  model = nnx.merge(graphdef, params, rest, copy=True)
  logits = model(x)
  new_rest = nnx.split(model, nnx.Param, ...)[2]
  return logits, new_rest
