"""The study protocol: declared claims, selection on validation (and its stability), the
pre-registration and the confirm phase's refusals, config rules and summaries."""

import dataclasses
import json
import math
import subprocess

import ml_collections
import numpy as np
import pytest

from wd_jax import study
from wd_jax.study import claims, phases, preregistration, protocol, schema, stats


def _claims():
  return claims.declare(
    faster=claims.claim("B beats A.", "paper 1", "greater", a="b/acc", b="a/acc"),
    same=claims.claim("A equals C.", "paper 2", "equivalent", a="a/acc", b="c/acc", margin=0.05),
    identity=claims.claim("m = m_loss + m_l2.", "algebra", "less", a="err", kind="construction"),
    slope=claims.claim(
      "Slope in range.", "paper 3", "slope_within", measure="xy", low=-0.5, high=0.5
    ),
  )


MEASURED = {
  "a/acc": [0.80, 0.82, 0.81],
  "b/acc": [0.90, 0.93, 0.91],
  "c/acc": [0.80, 0.83, 0.80],
  "err": [-1e-3, -2e-3, -1.5e-3],
  "xy": {
    "x": [0, 1, 2, 0, 1, 2],
    "y": [1.0, 1.1, 1.2, 2.0, 2.1, 2.2],
    "groups": [0, 0, 0, 1, 1, 1],
  },
}


def test_claims_keep_their_declared_order_and_each_verdict_is_the_stats_decision():
  parsed = claims.check(_claims(), MEASURED)
  assert [c.name for c in parsed] == ["faster", "same", "identity", "slope"]
  found = claims.decide(parsed, MEASURED)
  verdicts = {f.claim.name: f.decision.verdict for f in found}
  assert verdicts == {
    "faster": stats.SUPPORTED,
    "same": stats.SUPPORTED,
    "identity": stats.SUPPORTED,
    "slope": stats.SUPPORTED,
  }
  assert found[0].decision == stats.decide_greater(MEASURED["b/acc"], MEASURED["a/acc"])


def test_a_claim_cannot_be_edited_by_the_code_that_measures_it():
  (c, *_) = claims.parse(_claims())
  with pytest.raises(dataclasses.FrozenInstanceError):
    c.statement = "something easier"
  with pytest.raises(TypeError):
    c.test["margin"] = 1.0


@pytest.mark.parametrize(
  "change, message",
  [
    ({"comparison": "bigger"}, "comparison"),
    ({"margin": -1.0}, "margin"),
    ({"alpha": 0.7}, "alpha"),
    ({"kind": "obvious"}, "kind"),
    ({"colour": "red"}, "colour"),
    ({"a": "nope/acc"}, "nope/acc"),
  ],
)
def test_bad_claims_are_refused_before_anything_runs(change, message):
  declared = _claims()
  for k, v in change.items():
    declared.faster[k] = v
  with pytest.raises(ValueError, match=message):
    claims.check(declared, MEASURED)


def test_equivalence_needs_a_margin_and_claims_cannot_be_empty():
  with pytest.raises(ValueError, match="margin"):
    claims.parse(claims.declare(x=claims.claim("s", "src", "equivalent", a="a")))
  with pytest.raises(ValueError, match="empty"):
    claims.parse(ml_collections.ConfigDict())


ROWS = [
  {
    "weight_decay": wd,
    "seed": s,
    "val_accuracy": acc + 0.01 * s,
    "test_accuracy": 0.5,
    "diverged": False,
  }
  for wd, acc in ((1e-3, 0.80), (1e-2, 0.85), (1e-1, 0.70))
  for s in (1, 0)
]


def test_selection_reads_the_validation_metric_only_and_picks_every_seed():
  best = protocol.select_best(ROWS, by=("weight_decay",), metric="val_accuracy")
  assert best == {"weight_decay": 1e-2}
  with pytest.raises(ValueError, match="val_"):
    protocol.select_best(ROWS, by=("weight_decay",), metric="test_accuracy")
  picked = protocol.selector(by=("weight_decay",), fixed=[{"weight_decay": 1e-1}])(ROWS)
  assert sorted((ROWS[i]["weight_decay"], ROWS[i]["seed"]) for i in picked) == [
    (1e-2, 0),
    (1e-2, 1),
    (1e-1, 0),
    (1e-1, 1),
  ]
  # Per-seed values come in seed order, so arms pair up by seed.
  assert protocol.per_seed(ROWS, "val_accuracy", {"weight_decay": 1e-3}) == [0.80, 0.81]


def test_a_diverged_configuration_is_never_selected():
  rows = [dict(r) for r in ROWS]
  rows[2]["diverged"] = True  # 1e-2, seed 1
  assert protocol.select_best(rows, by=("weight_decay",), metric="val_accuracy") == {
    "weight_decay": 1e-3
  }
  for r in rows:
    r["diverged"] = True
  assert protocol.select_best(rows, by=("weight_decay",), metric="val_accuracy") is None


@pytest.mark.parametrize(
  "rule, value, message",
  [
    (schema.choices(("a", "b")), ("a", "c"), "has 'c'"),
    (schema.choices(("a", "b")), ("a", "a"), "repeats"),
    (schema.ints(), (0, -1), "ints >= 0"),
    (schema.numbers(), (1e-3, 0.0), "> 0"),
    (schema.number(low=0.0, open_low=True, high=1.0), 1.5, "<= 1.0"),
    (schema.choice(("vmap",)), "fast", "one of"),
    (schema.flag(), "yes", "True or False"),
  ],
)
def test_schema_rules_name_the_field_and_the_value(rule, value, message):
  cfg = ml_collections.ConfigDict({"field": value})
  with pytest.raises(ValueError, match=f"config.field.*{message}"):
    schema.check(cfg, {"field": rule})


def test_schema_refuses_a_run_config_without_a_validation_split():
  from wd_jax.engine.config import base_config

  cfg = ml_collections.ConfigDict({"run": base_config()})
  with pytest.raises(ValueError, match="validation_fraction"):
    schema.check(cfg, {"run": schema.run_config()})
  cfg.run.dataset.validation_fraction = 0.1
  schema.check(cfg, {"run": schema.run_config()})


def test_summary_separates_empirical_claims_from_those_true_by_construction(tmp_path):
  found = claims.decide(claims.check(_claims(), MEASURED), MEASURED, lambda c: "measured text")
  path = study.write_summary(
    str(tmp_path),
    "Demo",
    found,
    tables=[("Accuracy", study.markdown_table(["variant", "acc"], [["adamw", 0.905]]))],
    figures=[("accuracy vs λ", str(tmp_path / "acc.png"))],
  )
  with open(path) as f:
    text = f.read()
  empirical, built_in = text.split("## True by construction")
  assert "**identity**" in built_in and "**identity**" not in empirical
  assert empirical.count("**Verdict**") == 3 and "3 claims tested at α = 0.05" in empirical
  assert "**Measured**: measured text" in text
  assert "| adamw | 0.905 |" in text and "![accuracy vs λ](acc.png)" in text


def test_an_inconclusive_verdict_says_how_many_seeds_would_decide_it(tmp_path):
  declared = claims.declare(x=claims.claim("A > B", "src", "greater", a="a", b="b"))
  values = {"a": [0.51, 0.49, 0.53], "b": [0.50, 0.50, 0.50]}
  found = claims.decide(claims.check(declared, values), values)
  assert found[0].decision.verdict == stats.INCONCLUSIVE
  with open(study.write_summary(str(tmp_path), "t", found)) as f:
    text = f.read()
  assert f"~{found[0].decision.n_needed} pairs would decide it" in text


def test_diverged_runs_are_counted_not_averaged():
  m, s = study.mean_spread([1.0, 2.0, 3.0, math.nan])
  assert m == 2.0 and s == 1.0
  assert study.fmt([1.0, 2.0, 3.0]) == "2.000 ± 1.000 (n=3)"
  assert study.fmt([1.0, 3.0, math.nan]) == "2.000 ± 1.414 (n=2, 1 of 3 diverged)"
  assert study.fmt([math.nan] * 2) == "diverged (n=2)"


def test_a_new_variant_never_takes_a_known_variants_colour():
  assert study.color("adamw") == study.VARIANT_COLORS["adamw"]
  known = set(study.VARIANT_COLORS.values())
  for name in ("something_new", "adamw_v2", "lion", "my_decay"):
    assert study.color(name) not in known, name


def test_report_intervals_are_the_verdicts_t_interval():
  from wd_jax.study import report

  values = [0.70, 0.72, 0.75, None, float("nan")]  # two diverged runs are left out
  mean, half, n = report.mean_and_ci(values)
  centre, lo, hi = stats.t_interval([0.70, 0.72, 0.75], 0.05)
  assert (mean, n) == (centre, 3) and half == pytest.approx((hi - lo) / 2, rel=1e-12)
  assert math.isnan(report.mean_and_ci([0.7])[1]) and report.mean_and_ci([])[2] == 0


def test_findings_carry_holm_over_the_empirical_claims_only():
  found = claims.decide(claims.check(_claims(), MEASURED), MEASURED)
  family = [f for f in found if f.claim.kind == "empirical"]
  adjusted, rejected = stats.holm([f.decision.p_value for f in family], 0.05)
  assert [f.holm_p for f in family] == pytest.approx(list(adjusted))
  assert [f.survives_holm for f in family] == [bool(r) for r in rejected]  # all supported here
  (built_in,) = [f for f in found if f.claim.kind == "construction"]
  assert math.isnan(built_in.holm_p) and built_in.survives_holm is None


# ---------------------------------------------------------------------------------------------
# Two phases: selection on validation items, the pre-registration, fresh seeds and data.


def test_a_clear_pick_is_stable_and_a_tie_is_not():
  rng = np.random.default_rng(0)
  good = (rng.random((3, 2000)) < 0.75).astype(float)
  worse = (rng.random((3, 2000)) < 0.70).astype(float)
  twin = good[:, rng.permutation(2000)]  # the same scores on shuffled items: a tie
  clear = protocol.choose([({"lr": 1}, good), ({"lr": 2}, worse)], larger=True)
  assert clear.pick == {"lr": 1} and clear.stability > 0.99 and clear.gap > 0.03
  tie = protocol.choose([({"lr": 1}, good), ({"lr": 2}, twin)], larger=True, resamples=400)
  assert 0.3 < tie.stability < 0.7 and tie.alternatives[0][0] == {"lr": 2}
  diverged = good.copy()
  diverged[1, 0] = np.nan  # one seed of the best cell diverged: never picked
  assert protocol.choose([({"lr": 1}, diverged), ({"lr": 2}, worse)], larger=True).pick == {"lr": 2}
  assert protocol.choose([({"lr": 1}, good), ({"lr": 2}, worse)], larger=False).pick == {"lr": 2}


def test_a_pick_on_the_grids_edge_is_named():
  grids = {"learning_rate": [0.01, 0.02, 0.04], "tau_over_T": [None, 4.0, 1.0, 0.25]}
  assert protocol.grid_edges({"learning_rate": 0.02, "tau_over_T": 1.0}, grids) == []
  assert protocol.grid_edges({"learning_rate": 0.01, "tau_over_T": 0.25}, grids) == [
    "learning_rate 0.01 is the grid's smallest",
    "tau_over_T 0.25 is the grid's smallest",
  ]


def test_an_edited_preregistration_is_refused(tmp_path):
  path = str(tmp_path / "p.json")
  written = preregistration.write(path, {"claims": {"gap": {"margin": 0.01}}, "cells": {}})
  assert preregistration.read(path).digest == written.digest
  raw = json.loads((tmp_path / "p.json").read_text())
  raw["preregistration"]["claims"]["gap"]["margin"] = 0.02  # edited by hand, digest kept
  (tmp_path / "p.json").write_text(json.dumps(raw))
  with pytest.raises(ValueError, match="was edited after it was written"):
    preregistration.read(path)
  with pytest.raises(ValueError, match="run it first"):
    preregistration.read(str(tmp_path / "missing.json"))


def test_a_changed_claim_is_refused_naming_the_digest_and_the_field(tmp_path):
  p = preregistration.write(str(tmp_path / "p.json"), {"claims": _claims()})
  preregistration.check_same(p, "config.claims", _claims(), "claims")  # unchanged: accepted
  edited = _claims()
  edited.faster.margin = 0.01
  with pytest.raises(ValueError, match=rf"{p.short}.*faster\.margin: 0\.01 now"):
    preregistration.check_same(p, "config.claims", edited, "claims")


def test_a_field_added_since_is_the_same_run_only_at_the_value_its_absence_means(tmp_path):
  p = preregistration.write(str(tmp_path / "p.json"), {"run": {"optimizer": {"name": "adamw"}}})
  absent = {"optimizer.allow_unused_mask_rules": False}
  now = {"optimizer": {"name": "adamw", "allow_unused_mask_rules": False}}
  with pytest.raises(ValueError, match="allow_unused_mask_rules: False now, '<absent>'"):
    preregistration.check_same(p, "config.run", now, "run")  # no default declared: a change
  preregistration.check_same(p, "config.run", now, "run", absent)  # what its absence meant
  now["optimizer"]["allow_unused_mask_rules"] = True
  with pytest.raises(ValueError, match="allow_unused_mask_rules: True now, False"):
    preregistration.check_same(p, "config.run", now, "run", absent)


def test_a_workdir_keeps_the_digest_it_was_started_on(tmp_path):
  a = preregistration.write(str(tmp_path / "a.json"), {"claims": 1})
  b = preregistration.write(str(tmp_path / "b.json"), {"claims": 2})
  preregistration.bind(str(tmp_path / "run"), a)
  preregistration.bind(str(tmp_path / "run"), a)  # the same one: fine
  with pytest.raises(
    ValueError, match=f"holds pre-registration {a.short}; this run reads {b.short}"
  ):
    preregistration.bind(str(tmp_path / "run"), b)


def test_provenance_names_the_commit_only_while_the_file_is_unchanged(tmp_path):
  git = lambda *args: subprocess.run(
    ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
    cwd=tmp_path,
    check=True,
    capture_output=True,
  )
  git("init", "-q")
  p = preregistration.write(str(tmp_path / "p.json"), {"claims": 1})
  assert preregistration.provenance(p).startswith("uncommitted (no git commit")
  git("add", "p.json")
  git("commit", "-q", "-m", "pre-register")
  commit = git("rev-parse", "HEAD").stdout.decode().strip()
  assert preregistration.provenance(p) == f"committed in {commit[:12]}"
  p = preregistration.write(str(tmp_path / "p.json"), {"claims": 2})
  assert preregistration.provenance(p).startswith("uncommitted (the file differs")


@pytest.mark.parametrize(
  "seeds, dataset, message",
  [
    ((5, 6), {"seed": 2}, "has 2 seeds"),
    ((0, 5, 6), {"seed": 2}, r"reuses the tuning seeds \[0\]"),
    ((5, 6, 7), {"seed": 1}, "is the tuning draw's"),
    ((5, 6, 7), {"paths": ("/x/a.py", "/y/c.py")}, "shares 1 files"),
  ],
)
def test_confirm_needs_fresh_seeds_and_a_fresh_draw(seeds, dataset, message):
  tune = {"seeds": [0, 1], "dataset": {"seed": 1, "paths": ["a.py", "b.py"]}}
  confirm = ml_collections.ConfigDict({"seeds": seeds, "dataset": dataset})
  with pytest.raises(ValueError, match=message):
    phases.check_fresh(tune, confirm, min_seeds=3)
