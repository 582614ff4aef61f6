"""Sphinx configuration of the wd-jax documentation.

Build (from the repository root; a warning fails the build):

  python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # document this checkout's wd_jax, not another installed copy

import wd_jax  # noqa: E402

project = "wd-jax"
author = "the wd-jax authors"
copyright = "the wd-jax authors, Apache-2.0"
release = version = wd_jax.__version__

extensions = [
  "sphinx.ext.autodoc",
  "sphinx.ext.napoleon",
  "sphinx.ext.mathjax",
  "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# Docstrings: Google style; `name` resolves to a Python object where it can (no warning if not).
default_role = "py:obj"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # Attributes as fields: no second description of a NamedTuple's fields
napoleon_use_rtype = False
# The Args say what each argument takes; expanded annotations (optax.Schedule is a long Callable
# union) would only repeat it less readably.
autodoc_typehints = "none"
autodoc_member_order = "bysource"
autodoc_preserve_defaults = True

# Markdown pages, and the README / experiments/README.md sections they include.
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"wd-jax {release}"
html_static_path: list[str] = []
