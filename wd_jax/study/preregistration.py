"""The pre-registration: what a study's confirm phase runs and decides, frozen before it runs.

The tune phase (`wd_jax.study.protocol`) writes one JSON file: the configurations it selected on
its tuning draw, the claims as declared (statement, source, measurement, comparison, margin, α),
the run they are measured on and the rules the confirm phase must keep (fresh seeds, a fresh
data draw). The file records the SHA-256 digest of its content in canonical form (sorted keys,
no whitespace), so any edit shows: `read` refuses a file whose content no longer matches its
digest, and a changed claim is a new pre-registration with a new digest, never a silent change.
Commit the file (e.g. ``experiments/preregistered/<study>.json``); the confirm phase's summary
names the digest and the git commit that holds it (`provenance`).

>>> import os, tempfile
>>> from wd_jax.study import preregistration
>>> path = os.path.join(tempfile.mkdtemp(), "study.json")
>>> p = preregistration.write(path, {"study": "demo", "claims": {"x": {"margin": 0.01}}})
>>> preregistration.read(path).digest == p.digest, len(p.digest)
(True, 64)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from typing import Any

from wd_jax.engine.runlog import write_atomic

FILE_NAME = "preregistration.json"  # the copy a confirm workdir keeps


def _jsonable(x: Any) -> Any:
  """Plain JSON values: ConfigDicts and mappings become dicts, tuples lists, numpy scalars
  numbers (anything else is refused by the JSON encoder)."""
  if hasattr(x, "to_dict"):
    x = x.to_dict()
  if isinstance(x, Mapping):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if hasattr(x, "item") and not isinstance(x, (str, bytes)):
    return x.item()
  return x


def canonical(body: Mapping[str, Any]) -> bytes:
  """The bytes the digest is taken of: sorted keys, no whitespace, UTF-8, no NaN."""
  return json.dumps(
    _jsonable(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
  ).encode()


def digest_of(body: Mapping[str, Any]) -> str:
  """SHA-256 (hex) of `canonical(body)`."""
  return hashlib.sha256(canonical(body)).hexdigest()


@dataclasses.dataclass(frozen=True)
class Preregistration:
  """A pre-registration as read from (or written to) its file.

  Attributes:
    path: the file.
    digest: SHA-256 (hex) of the body's canonical form.
    body: the content: ``study``, ``claims``, ``selected``, ``runs``, ``rules``, ``tune``...

  Example:
    >>> import os, tempfile
    >>> from wd_jax.study import preregistration
    >>> p = preregistration.write(os.path.join(tempfile.mkdtemp(), "s.json"), {"study": "s"})
    >>> p.short == p.digest[:12], p.body["study"]
    (True, 's')
  """

  path: str
  digest: str
  body: Mapping[str, Any]

  @property
  def short(self) -> str:
    """The digest's first 12 hex digits (how summaries name it)."""
    return self.digest[:12]


def write(path: str, body: Mapping[str, Any]) -> Preregistration:
  """Writes `body` and its digest to `path` (atomically; the directory is created).

  Args:
    path: the file, e.g. ``experiments/preregistered/<study>.json``.
    body: JSON-able content (ConfigDicts and tuples are converted).

  Returns:
    The `Preregistration` written.

  Example:
    >>> import os, tempfile
    >>> from wd_jax.study import preregistration
    >>> p = preregistration.write(os.path.join(tempfile.mkdtemp(), "s.json"), {"study": "s"})
    >>> p.digest == preregistration.digest_of({"study": "s"})
    True

  References:
    Nosek, Ebersole, DeHaven & Mellor, "The preregistration revolution", PNAS 2018.
  """
  plain = _jsonable(body)
  digest = digest_of(plain)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  text = json.dumps({"sha256": digest, "preregistration": plain}, indent=2, ensure_ascii=False)
  write_atomic(path, text + "\n")
  return Preregistration(os.path.abspath(path), digest, plain)


def read(path: str) -> Preregistration:
  """Reads a pre-registration and checks its digest.

  Args:
    path: the file `write` wrote.

  Returns:
    The `Preregistration`.

  Raises:
    ValueError: no file (run the tune phase first), not a pre-registration, or content that
      does not match the recorded digest (edited after it was written).

  Example:
    >>> import json, pathlib, tempfile
    >>> from wd_jax.study import preregistration
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "s.json"
    >>> _ = preregistration.write(str(path), {"study": "s", "margin": 0.01})
    >>> raw = json.loads(path.read_text()); raw["preregistration"]["margin"] = 0.02
    >>> _ = path.write_text(json.dumps(raw))  # edited by hand, the digest kept
    >>> preregistration.read(str(path))
    Traceback (most recent call last):
    ...
    ValueError: pre-registration ... was edited after it was written: ...

  References:
    Nosek, Ebersole, DeHaven & Mellor, "The preregistration revolution", PNAS 2018.
  """
  if not os.path.exists(path):
    raise ValueError(
      f"no pre-registration at {path!r}: the confirm phase runs only what a tune phase "
      "pre-registered; run it first (--config.phase=tune) and commit the file it writes."
    )
  with open(path, encoding="utf-8") as f:
    raw = json.load(f)
  if not isinstance(raw, dict) or set(raw) != {"sha256", "preregistration"}:
    raise ValueError(f"{path!r} is not a pre-registration (keys 'sha256', 'preregistration').")
  digest = digest_of(raw["preregistration"])
  if digest != raw["sha256"]:
    raise ValueError(
      f"pre-registration {path!r} was edited after it was written: its content hashes to "
      f"{digest[:12]}, not the recorded {str(raw['sha256'])[:12]}. A changed pre-registration "
      "is a new one: run the tune phase again."
    )
  return Preregistration(os.path.abspath(path), digest, raw["preregistration"])


def _git(args: list[str], cwd: str) -> str | None:
  try:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout.strip() if out.returncode == 0 else None


def provenance(prereg: Preregistration) -> str:
  """Where the pre-registration's exact content is kept: the git commit that holds it, or
  "uncommitted" (not in a repository, never committed, or changed since its last commit).

  Args:
    prereg: a pre-registration read from its file.

  Returns:
    One sentence for a summary.

  Example:
    >>> import os, tempfile
    >>> from wd_jax.study import preregistration
    >>> p = preregistration.write(os.path.join(tempfile.mkdtemp(), "s.json"), {"study": "s"})
    >>> preregistration.provenance(p).startswith("uncommitted")
    True

  References:
    Nosek, Ebersole, DeHaven & Mellor, "The preregistration revolution", PNAS 2018.
  """
  where, name = os.path.split(prereg.path)
  commit = _git(["log", "-n", "1", "--format=%H", "--", name], where)
  if not commit:
    return "uncommitted (no git commit holds this file)"
  changed = _git(["status", "--porcelain", "--", name], where)
  if changed is None or changed:
    return f"uncommitted (the file differs from its last commit, {commit[:12]})"
  return f"committed in {commit[:12]}"


def check_same(
  prereg: Preregistration, what: str, declared: Any, key: str, absent_means: Any = None
) -> None:
  """Refuses a config whose `declared` part differs from the pre-registration's ``body[key]``.

  Args:
    prereg: the pre-registration.
    what: the config field, for the message (e.g. ``"config.claims"``).
    declared: that field's value now.
    key: where the pre-registration keeps it.
    absent_means: dotted field -> value, for fields added to the config after the
      pre-registration was written: its lacking the field means that value (e.g. the engine's
      `ABSENT_MEANS`); any other value now is a difference.

  Returns:
    None; it raises on a difference.

  Raises:
    ValueError: naming the digest and the first difference.

  Example:
    >>> import os, tempfile
    >>> from wd_jax.study import preregistration
    >>> path = os.path.join(tempfile.mkdtemp(), "s.json")
    >>> p = preregistration.write(path, {"claims": {"gap": {"margin": 0.01}}})
    >>> preregistration.check_same(p, "config.claims", {"gap": {"margin": 0.02}}, "claims")
    Traceback (most recent call last):
    ...
    ValueError: config.claims differ from pre-registration ... at gap.margin: 0.02 now, 0.01 ...

  References:
    Nosek, Ebersole, DeHaven & Mellor, "The preregistration revolution", PNAS 2018.
  """
  now, then = _jsonable(declared), prereg.body.get(key)
  for dotted, value in (absent_means or {}).items():
    then = _with_default(then, dotted.split("."), _jsonable(value))
  if now == then:
    return
  where = _first_difference(now, then)
  raise ValueError(
    f"{what} differ from pre-registration {prereg.short} ({prereg.path}) at {where}. A "
    "pre-registered claim or configuration is never changed in place: edit the config and run "
    "the tune phase again (a new pre-registration, a new digest)."
  )


def _with_default(tree: Any, keys: list[str], value: Any) -> Any:
  """`tree` with ``value`` at the path `keys` where the path's last key is absent."""
  if not isinstance(tree, dict):
    return tree
  head, rest = keys[0], keys[1:]
  if not rest:
    return tree if head in tree else {**tree, head: value}
  if head not in tree:
    return tree
  return {**tree, head: _with_default(tree[head], rest, value)}


def _first_difference(now: Any, then: Any, path: str = "") -> str:
  if isinstance(now, dict) and isinstance(then, dict):
    for k in sorted(set(now) | set(then)):
      if now.get(k, "<absent>") != then.get(k, "<absent>"):
        return _first_difference(now.get(k, "<absent>"), then.get(k, "<absent>"), f"{path}.{k}")
  return f"{path.lstrip('.') or 'the top level'}: {now!r} now, {then!r} pre-registered"


def bind(workdir: str, prereg: Preregistration) -> None:
  """Ties a confirm workdir to one pre-registration: keeps a copy there, and refuses a workdir
  that holds another one (a run is never continued under different claims).

  Args:
    workdir: the confirm phase's workdir (created if needed).
    prereg: the pre-registration it confirms.

  Returns:
    None; it raises on another digest.

  Raises:
    ValueError: the workdir was started on a pre-registration with another digest.

  Example:
    >>> import os, tempfile
    >>> from wd_jax.study import preregistration
    >>> tmp = tempfile.mkdtemp()
    >>> a = preregistration.write(os.path.join(tmp, "a.json"), {"claims": 1})
    >>> b = preregistration.write(os.path.join(tmp, "b.json"), {"claims": 2})
    >>> preregistration.bind(os.path.join(tmp, "run"), a)
    >>> preregistration.bind(os.path.join(tmp, "run"), b)
    Traceback (most recent call last):
    ...
    ValueError: workdir ... holds pre-registration ...; this run reads ...: use a new workdir.

  References:
    Nosek, Ebersole, DeHaven & Mellor, "The preregistration revolution", PNAS 2018.
  """
  path = os.path.join(workdir, FILE_NAME)
  if os.path.exists(path):
    held = read(path)
    if held.digest != prereg.digest:
      raise ValueError(
        f"workdir {workdir!r} holds pre-registration {held.short}; this run reads "
        f"{prereg.short}: use a new workdir."
      )
    return
  os.makedirs(workdir, exist_ok=True)
  write(path, prereg.body)
