"""The documentation: every docstring Example runs, every public function documents Args,
Returns, Example and References, the guide's "measured here" verdicts are the results page's,
and the site builds without a single warning."""

import doctest
import importlib
import inspect
import io
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import optax
import pytest

import wd_jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The modules whose docstrings make the API reference (docs/api/*.rst), where they are defined.
DOCUMENTED_MODULES = (
  "wd_jax.transforms",
  "wd_jax.decoupled",
  "wd_jax.optimizers",
  "wd_jax.other_optimizers",
  "wd_jax.factored",
  "wd_jax.equilibrium",
  "wd_jax.schedule_free",
  "wd_jax.masks",
  "wd_jax.schedules",
  "wd_jax.timescale",
  "wd_jax.moments",
  "wd_jax.diagnostics",
  "wd_jax.engine.experiment",
  "wd_jax.engine.train",
  "wd_jax.engine.sweep",
  "wd_jax.engine.data",
  "wd_jax.engine.data._dataset",
  "wd_jax.study.stats",
  "wd_jax.study._estimate",
  "wd_jax.study.power",
  "wd_jax.study.claims",
  "wd_jax.study.protocol",
  "wd_jax.study.preregistration",
)
# Pages of the site whose ``>>>`` lines are examples too.
DOCUMENTED_PAGES = ("docs/getting_started.md", "docs/guide.md")

# The engine and study functions users call, beside everything in `wd_jax.__all__`.
ENGINE_FUNCTIONS = (
  "wd_jax.engine.train.fit",
  "wd_jax.engine.train.build",
  "wd_jax.engine.sweep.run_sweep",
  "wd_jax.engine.data.from_arrays",
  "wd_jax.engine.data.with_validation_split",
  *(
    f"wd_jax.diagnostics.{n}"
    for n in (
      "step_diagnostics",
      "global_norm",
      "leaf_norms",
      "angular_update",
      "effective_learning_rate",
      "zero_fraction",
      "l2_share_by_leaf",
      "predicted_angular_update",
      "predicted_equilibrium_norm",
    )
  ),
  *(
    f"wd_jax.study.stats.{n}"
    for n in (
      "decide",
      "decide_greater",
      "decide_less",
      "decide_equivalent",
      "decide_slope",
      "multiple_claims_note",
      "holm",
      "t_interval",
      "bootstrap_interval",
      "paired_differences",
      "seeds_items_interval",
      "per_item_slopes",
      "power_one_sided",
      "power_tost",
      "n_needed",
    )
  ),
  *(f"wd_jax.study.claims.{n}" for n in ("claim", "declare", "check", "parse", "decide")),
  *(
    f"wd_jax.study.protocol.{n}"
    for n in (
      "selector",
      "select_best",
      "per_seed",
      "rows_of",
      "configurations",
      "score",
      "choose",
      "grid_edges",
      "record_mean",
    )
  ),
  *(
    f"wd_jax.study.preregistration.{n}"
    for n in ("write", "read", "check_same", "bind", "provenance")
  ),
)
ENGINE_CLASSES = (
  "wd_jax.engine.train.BatchStream",
  "wd_jax.engine.data.Dataset",
  "wd_jax.study.stats.Decision",
  "wd_jax.study.claims.Claim",
  "wd_jax.study.claims.Finding",
  "wd_jax.study.preregistration.Preregistration",
)
# Weight-decay transforms and recipes: their docstrings also give the update rule as math.
DECAY_FUNCTIONS = (
  "adafactor adam_l2 adams adamw adan add_l1 add_l2 decay_factor decoupled_weight_decay lamb "
  "lion muon nadamw prox_l1 scale_by_adam_l2 scale_by_adam_stable schedule_free_adamw sgd_l2 "
  "sgdw with_weight_decay"
).split()

FUNCTION_SECTIONS = ("Args", "Returns", "Example", "References")
CLASS_SECTIONS = ("Attributes", "Example")


def _namespace() -> dict:
  """What an Example may assume: ``import jax, jax.numpy as jnp, optax, wd_jax``."""
  return {"jax": jax, "jnp": jnp, "optax": optax, "wd_jax": wd_jax}


def _run(tests: list[doctest.DocTest]) -> tuple[int, int, str]:
  out = io.StringIO()
  runner = doctest.DocTestRunner(
    optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
  )
  # float32 outputs: an earlier test of this worker may have left x64 on.
  with jax.enable_x64(False):
    for test in tests:
      runner.run(test, out=out.write)
  result = runner.summarize(verbose=False)
  return result.attempted, result.failed, out.getvalue()


@pytest.mark.parametrize("name", DOCUMENTED_MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # an example that writes files writes them here
  module = importlib.import_module(name)
  tests = doctest.DocTestFinder().find(module, name, globs=_namespace())
  attempted, failed, report = _run(tests)
  assert attempted > 0, f"{name} has no docstring example"
  assert failed == 0, report


@pytest.mark.parametrize("page", DOCUMENTED_PAGES)
def test_page_examples_run(page):
  with open(os.path.join(ROOT, page)) as f:
    text = f.read()
  test = doctest.DocTestParser().get_doctest(text, _namespace(), page, page, 0)
  attempted, failed, report = _run([test])
  assert attempted > 0, f"{page} has no example"
  assert failed == 0, report


def _resolve(dotted: str):
  module, _, attr = dotted.rpartition(".")
  return getattr(importlib.import_module(module), attr)


def _public() -> tuple[dict, dict]:
  """(functions, classes) documented in the API reference, by dotted name."""
  functions, classes = {}, {}
  for name in wd_jax.__all__:
    obj = getattr(wd_jax, name)
    if inspect.isclass(obj):
      classes[f"wd_jax.{name}"] = obj
    elif inspect.isfunction(obj):
      functions[f"wd_jax.{name}"] = obj
  functions.update({n: _resolve(n) for n in ENGINE_FUNCTIONS})
  classes.update({n: _resolve(n) for n in ENGINE_CLASSES})
  return functions, classes


def _sections(obj) -> set[str]:
  doc = inspect.getdoc(obj) or ""
  found = set(re.findall(r"^(\w+):\s*$", doc, re.M))
  return found | ({"Example"} if "Examples" in found else set())


def documentation_counts() -> dict[str, tuple[int, int]]:
  """How many public functions (classes) carry every required section, of how many."""
  functions, classes = _public()
  return {
    "functions": (
      sum(set(FUNCTION_SECTIONS) <= _sections(f) for f in functions.values()),
      len(functions),
    ),
    "classes": (sum(set(CLASS_SECTIONS) <= _sections(c) for c in classes.values()), len(classes)),
  }


def test_every_public_function_documents_its_sections():
  functions, classes = _public()
  missing = {
    name: sorted(set(FUNCTION_SECTIONS) - _sections(f))
    for name, f in functions.items()
    if not set(FUNCTION_SECTIONS) <= _sections(f)
  }
  missing.update(
    {
      name: sorted(set(CLASS_SECTIONS) - _sections(c))
      for name, c in classes.items()
      if not set(CLASS_SECTIONS) <= _sections(c)
    }
  )
  assert not missing, missing
  no_math = [n for n in DECAY_FUNCTIONS if ".. math::" not in (getattr(wd_jax, n).__doc__ or "")]
  assert not no_math, f"decay docstrings without the update rule as math: {no_math}"
  assert len(functions) > 60 and len(classes) > 15  # the lists above were read, not skipped


# The guide's "measured here" statements: (a phrase of the results page's claim, a phrase of the
# guide's bullet that reports it, the verdict both give). When a study is run again and a verdict
# changes, the guide must change with it.
GUIDE_VERDICTS = (
  ("**stabilised_above_none**", "during the large-lr", "supported"),
  ("**no_gain_before_drop**", "decay gives no validation gain before", "supported"),
  ("**gain_after_drop**", "it ends better on test after the drop", "supported"),
  ("**moderate_lower_at_end**", "moderate λ ends with a lower training loss", "supported"),
  ("**moderate_higher_before_decay**", "its training loss being higher before", "inconclusive"),
  ("**lambda_falls_with_data**", "The best λ falls as the training set grows", "supported"),
  ("**tau_flat_in_data_fixed**", "The best timescale τ_epoch stays flat as", "inconclusive"),
  ("**tau_flat_in_width_mup**", "τ_epoch stays flat across widths", "not supported"),
  ("**adamw_beats_adam**", "Tuned AdamW ends better than tuned plain Adam", "supported"),
  ("**adamw_beats_adam_l2**", "AdamW ends better than Adam+L2 on", "supported"),
  ("**adamw_ties_adam_l2**", "end within 0.01 of each other", "not supported"),
  ("**first_moment_is_the_harm**", "Keeping λθ out of the first moment", "inconclusive"),
  ("**l2_turns_the_step_where_it_acts**", "coupled L2 turns Adam's step further", "not supported"),
  ("**turn_predicts_harm**", "the more λθ in m costs", "supported"),
  ("**mlp_adam_l2_ridge**", "Adam+L2's best λ does not move with α", "supported"),
  ("**mlp_adamw_schedule_ridge**", "schedule-coupled AdamW's best λ follows α", "inconclusive"),
  ("**mlp_ln_adamw_ridge**", "lr-coupled AdamW's best λ scales as 1/α", "inconclusive"),
  ("**constant_less_accurate**", 'ignores the schedule (`"constant"`) ends less', "supported"),
  ("**corrected_holds_norm**", "the weight norm keeps falling through the anneal", "supported"),
  ("**corrected_costs_accuracy**", "AdamC costs more than 0.01", "not supported"),
  ("**lr_rise**", "with strong decay (τ/T = 1/64) the gradient norm rises", "supported"),
  ("**lr_rise_when_tuned**", "selects on validation", "inconclusive"),
  ("**corrected_reduces_rise**", "AdamC reduces that end-of-training rise", "supported"),
  ("**constant_larger_rise**", "makes the end-of-training rise larger", "supported"),
  ("**decay_helps**", "Whole-run decay helps here", "supported"),
  ("**early_25_recovers_most**", "first 25% of training recovers most", "inconclusive"),
  ("**late_50_recovers_little**", "only from 50% on recovers little", "supported"),
  ("**early_beats_late_at_25**", "decay during the first quarter beats", "not supported"),
  ("**norm_stays_below_none**", "stays below the never-decayed run's", "supported"),
  ("**norm_stays_near_whole**", "nearer whole-run decay's than none's", "not supported"),
  ("**random_labels_grow_the_norm**", "random labels grow the normalised layers'", "supported"),
  ("**sharpness_tracks_early_decay**", "relative sharpness is lower after early", "supported"),
  (
    "**classic_sharpness_misses_early_decay**",
    "calls the early-decay network sharper",
    "supported",
  ),
  ("**sharpness_separates_labels**", "separates every random-label network", "supported"),
  ("**raw_norm_misses_labels**", "By the same test the raw norm does not", "supported"),
  ("**prox_beats_pruned_l2**", "proximal L1 trained in ends more accurate", "not supported"),
  ("**lasso_support_f1**", "the lasso's nonzeros recover the", "not supported"),
  ("**lasso_precision_at_k**", "the lasso's k largest weights are the teacher's", "supported"),
  ("**equilibrium_reached**", "The runs reach equilibrium", "supported"),
  ("**adamw_b_angle**", "each layer's angular update per step is at", "supported"),
  ("**adamw_b_norm**", "Under AdamW the norm is at", "not supported"),
  ("**sgdm_b_norm**", "Under SGD with momentum and L2 the norm", "supported"),
)


def _results_verdicts() -> list[tuple[str, str]]:
  """(claim line, verdict) for every claim of docs/RESULTS.md."""
  with open(os.path.join(ROOT, "docs", "RESULTS.md")) as f:
    lines = f.read().splitlines()
  out, claim = [], None
  for line in lines:
    if line.startswith("- **"):
      claim = line
    elif claim and line.lstrip().startswith("- **Verdict**:"):
      verdict = line.split("**Verdict**:", 1)[1].split("—", 1)[0].strip()
      out.append((claim, verdict))
      claim = None
  return out


def _guide_bullets() -> list[str]:
  """The guide's bullet items, each joined into one line."""
  with open(os.path.join(ROOT, "docs", "guide.md")) as f:
    lines = f.read().splitlines()
  items, current = [], None
  for line in lines:
    if line.startswith("- "):
      current = [line[2:]]
      items.append(current)
    elif current is not None and line.startswith("  ") and line.strip():
      current.append(line.strip())
    else:
      current = None
  return [" ".join(item) for item in items]


def test_guide_reports_the_verdicts_of_the_results_page():
  verdicts = _results_verdicts()
  bullets = _guide_bullets()
  assert len(verdicts) > 30
  for claim_phrase, guide_phrase, verdict in GUIDE_VERDICTS:
    # A study's replication repeats its claims: the guide's verdict must be every run's.
    found = [v for claim, v in verdicts if claim_phrase in claim]
    assert found, f"{claim_phrase!r} names no claim of docs/RESULTS.md"
    assert set(found) == {verdict}, f"{claim_phrase!r}: RESULTS.md says {found}, not {verdict!r}"
    said = [b for b in bullets if guide_phrase in b]
    assert len(said) == 1, f"{guide_phrase!r} is in {len(said)} bullets of docs/guide.md"
    assert f"**{verdict}**" in said[0], f"docs/guide.md: {said[0]!r} does not say {verdict!r}"
  reported = sum(b.count("— **") for b in bullets)
  assert reported == len(GUIDE_VERDICTS), "a verdict of the guide is not checked here"


def test_site_builds_without_warnings(tmp_path):
  """What BUILD.md's command does, with -W: one warning (a broken reference, a docstring that is
  not valid reStructuredText, a page outside the table of contents) fails the build."""
  html = tmp_path / "html"
  cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
  cmd += ["-d", str(tmp_path / "doctrees"), os.path.join(ROOT, "docs"), str(html)]
  out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
  assert out.returncode == 0, out.stderr[-5000:]
  assert "WARNING" not in out.stderr and "ERROR" not in out.stderr, out.stderr[-5000:]
  api = (html / "api" / "optax.html").read_text()
  undocumented = [n for n in wd_jax.__all__ if n != "diagnostics" and f'id="wd_jax.{n}"' not in api]
  assert not undocumented, undocumented
  engine = (html / "api" / "engine.html").read_text() + (html / "api" / "studies.html").read_text()
  engine += (html / "api" / "diagnostics.html").read_text()
  missing = [n for n in ENGINE_FUNCTIONS + ENGINE_CLASSES if f'id="{n}"' not in engine]
  assert not missing, missing
  assert (html / "RESULTS.html").exists() and (html / "guide.html").exists()


def test_tutorial_runs_end_to_end_and_shows_the_pollution(tmp_path):
  """The tutorial script as a user runs it: it must finish, draw its figure, and show what it
  says it shows (at τ/T = 1/8 both decays visibly turn the step from the loss-only step)."""
  env = dict(os.environ, MPLBACKEND="Agg")
  cmd = [sys.executable, os.path.join(ROOT, "docs", "tutorial.py"), str(tmp_path)]
  out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  assert (tmp_path / "tutorial_pollution.png").stat().st_size > 10_000
  cos = dict(re.findall(r"(Adam \+ L2|AdamW): .*median step_cos .*? ([0-9.]+),", out.stdout))
  assert set(cos) == {"Adam + L2", "AdamW"}, out.stdout
  assert all(0.0 < float(c) < 0.97 for c in cos.values()), out.stdout
