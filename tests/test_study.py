"""The verdict logic of every study's summary.md, on synthetic per-seed metrics."""

import pytest

from wd_jax import study


@pytest.mark.parametrize(
  "a, b, expect, status",
  [
    ([0.90, 0.91, 0.92], [0.80, 0.81, 0.79], "greater", study.SUPPORTED),
    ([0.80, 0.81, 0.79], [0.90, 0.91, 0.92], "greater", study.NOT_SUPPORTED),
    ([0.85, 0.90, 0.80], [0.84, 0.86, 0.88], "greater", study.INCONCLUSIVE),  # spreads overlap
    ([0.10, 0.11], [0.50, 0.52], "less", study.SUPPORTED),
    ([0.50, 0.52], [0.10, 0.11], "less", study.NOT_SUPPORTED),
    ([0.30, 0.40], [0.35, 0.38], "less", study.INCONCLUSIVE),
  ],
)
def test_compare_order(a, b, expect, status):
  assert study.compare(a, b, expect=expect).status == status


def test_compare_margin_makes_a_small_lead_inconclusive():
  a, b = [0.905, 0.906, 0.907], [0.900, 0.901, 0.902]
  assert study.compare(a, b, expect="greater").status == study.SUPPORTED
  assert study.compare(a, b, expect="greater", margin=0.01).status == study.INCONCLUSIVE


@pytest.mark.parametrize(
  "a, b, margin, status",
  [
    ([0.90, 0.91], [0.905, 0.912], 0.01, study.SUPPORTED),
    ([0.90, 0.91], [0.70, 0.71], 0.01, study.NOT_SUPPORTED),
    ([0.90, 0.94], [0.86, 0.90], 0.01, study.INCONCLUSIVE),
  ],
)
def test_compare_equal(a, b, margin, status):
  assert study.compare(a, b, expect="equal", margin=margin).status == status


def test_compare_rejects_bad_arguments_and_handles_nan():
  with pytest.raises(ValueError, match="expect"):
    study.compare([1.0], [2.0], expect="bigger")
  with pytest.raises(ValueError, match="margin"):
    study.compare([1.0], [2.0], expect="equal")
  assert study.compare([float("nan")], [1.0], expect="greater").status == study.INCONCLUSIVE


def test_mean_spread_and_fmt():
  m, s = study.mean_spread([1.0, 2.0, 3.0, float("nan")])
  assert m == 2.0 and s == 1.0
  assert study.fmt([1.0, 2.0, 3.0]) == "2.000 ± 1.000 (n=3)"
  assert study.fmt([1.0, 3.0, float("nan")]) == "2.000 ± 1.414 (n=2, 1 of 3 diverged)"
  assert study.fmt([float("nan")] * 2) == "diverged (n=2)"


def test_summary_lists_claim_verdict_tables_and_figures(tmp_path):
  v = study.compare([0.9, 0.91], [0.7, 0.72], expect="greater", names=("AdamW", "Adam+L2"))
  path = study.write_summary(
    str(tmp_path),
    "Demo",
    [study.Finding("AdamW beats Adam+L2", "L&H 2019", v, "acc")],
    tables=[("Accuracy", study.markdown_table(["variant", "acc"], [["adamw", 0.905]]))],
    figures=[("accuracy vs λ", str(tmp_path / "acc.png"))],
  )
  with open(path) as f:
    text = f.read()
  assert "**Verdict**: supported" in text and "AdamW 0.905 ± 0.007 (n=2)" in text
  assert "| adamw | 0.905 |" in text and "![accuracy vs λ](acc.png)" in text


def test_every_variant_has_a_stable_colour():
  assert study.color("adamw") == study.VARIANT_COLORS["adamw"]
  assert study.color("something_new") == study.color("something_new")
