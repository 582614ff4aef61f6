"""Character-level pre-LN Transformer on the standard library's own sources, Adam+L2 tracked.

The corpus exists wherever Python does, so no download is needed; point
``--config.dataset.kwargs.paths`` at your own text files to use them instead.

    python experiments/train.py --config=experiments/configs/char_transformer.py --workdir=runs/lm
"""

from wd_jax.engine.config import base_config


def get_config(variant: str = "default"):
  c = base_config()
  c.dataset.name = "char_corpus"
  c.dataset.kwargs = {"seq_len": 64, "max_chars": 1_000_000}
  c.model.name = "transformer"
  c.model.kwargs = {"d_model": 128, "num_heads": 4, "num_layers": 2}
  c.optimizer.name = "adam_l2"
  c.optimizer.learning_rate = 3e-3
  c.optimizer.weight_decay = 1e-2
  c.optimizer.kwargs = {"track_moments": True}
  c.steps = 2000
  c.batch_size = 32
  c.eval_batch_size = 32
  if variant == "smoke":
    c.dataset.kwargs = {"seq_len": 32, "max_chars": 100_000}
    c.model.kwargs = {"d_model": 32, "num_heads": 2, "num_layers": 1}
    c.steps = 20
    c.batch_size = 8
    c.log_every = c.diagnostics_every = c.eval_every = c.checkpoint_every = 10
  elif variant != "default":
    raise ValueError(f"variant must be 'default' or 'smoke', got {variant!r}.")
  return c
