"""The shipped configs: each file's ``get_config(variant)`` returns an ``ml_collections``
ConfigDict. ``--config`` takes a file's path (``experiments/configs/x.py:smoke``) or, with the
``wd-jax`` command, its name (``--config=x:smoke``); ``wd-jax configs`` lists them."""
