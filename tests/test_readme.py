"""The README's snippets run as written."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _snippet(heading: str) -> str:
  with open(os.path.join(ROOT, "README.md")) as f:
    text = f.read()
  section = text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
  (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
  return code


def test_bring_your_own_snippet_runs(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)
  namespace: dict = {}
  exec(compile(_snippet("Bring your own model and data"), "README.md", "exec"), namespace)
  accuracy, share = map(float, capsys.readouterr().out.split()[-2:])
  assert accuracy > 0.9 and 0.0 < share < 1.0  # the task is learnt; m is tracked
  assert len(namespace["rows"]) == 4 and not any(r["diverged"] for r in namespace["rows"])
  assert os.path.exists(tmp_path / "runs" / "mine" / "metrics.jsonl")
  assert os.path.exists(tmp_path / "runs" / "mine-sweep" / "results.csv")


def test_optax_snippet_runs_as_written(capsys):
  namespace: dict = {}
  exec(compile(_snippet("Use it in your optax code"), "README.md", "exec"), namespace)
  out = capsys.readouterr().out
  assert "head/bias" in out and "rule '.*bias'" in out  # describe_mask's table
  assert "timescale τ" in out  # describe_timescale's report
  assert namespace["lam_l2"] > 0 and set(namespace["turn"]) >= {"step_cos", "m_ratio"}
