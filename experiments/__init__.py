"""The scripts and configs behind the ``wd-jax`` command (`cli`).

In a checkout this folder is ``experiments/`` and its scripts run as ``python experiments/x.py``;
``pip install 'wd-jax[studies]'`` installs it as the package ``wd_jax_experiments``, where
``wd-jax train|sweep|study NAME`` runs the same scripts. Importing the package needs no extra
(``wd-jax study --list`` reads the scripts without importing them); ``wd-jax`` imports the layer
a command needs first, so a missing ``[engine]`` or ``[studies]`` extra is named in one line.
"""
