"""Every file in tests/broken/ is a spec with one mistake; `dslc check` must report it well.

The first lines of each file say what is expected:

    # expect: 9:5 unknown layer 'lienar'      line:col of the diagnostic and a fragment of its message
    # hint: did you mean 'linear'?            a fragment of its hint (optional)
    # set: lrr=0.1                            a --set override to pass (optional, repeatable)
    # status: 0                               the exit status (default 2; 0 for warnings)

`# expect: --set:1:5 ...` points into the --set text instead of the file, and
`# expect: 4:1 warning: ...` expects a warning. A broken spec must give exactly
one error (no cascades), with a source line, a caret under the mistake and no traceback.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dslc.cli import main

BROKEN = Path(__file__).with_name("broken")
FILES = sorted(p for p in BROKEN.iterdir() if p.suffix in (".dlspec", ".yaml", ".yml"))
HEADER = re.compile(r"^# (expect|hint|set|status): (.*)$")
DIAGNOSTIC = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): (?P<severity>error|warning): (?P<message>.*)$")


@dataclass
class Expectation:
    path: str
    line: int
    column: int
    severity: str
    message: str
    hint: str | None = None
    sets: list[str] = field(default_factory=list)
    status: int = 2


def expectation(path: Path) -> Expectation:
    fields: dict[str, list[str]] = {}
    for text in path.read_text(encoding="utf-8").splitlines():
        m = HEADER.match(text)
        if not m:
            break
        fields.setdefault(m.group(1), []).append(m.group(2).strip())
    assert "expect" in fields, f"{path.name} has no `# expect:` line"
    where, _, message = fields["expect"][0].partition(" ")
    file, line, column = (["--set"] if where.startswith("--set:") else [str(path)]) + where.split(":")[-2:]
    severity = "error"
    if message.startswith("warning: "):
        severity, message = "warning", message[len("warning: "):]
    return Expectation(file, int(line), int(column), severity, message, (fields.get("hint") or [None])[0],
                       fields.get("set", []), int((fields.get("status") or [2])[0]))


def run_check(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


def diagnostics(stderr: str) -> list[tuple[re.Match, list[str]]]:
    """Each diagnostic's first-line match and the lines that follow it (source, caret, hint)."""
    found: list[tuple[re.Match, list[str]]] = []
    for text in stderr.splitlines():
        m = DIAGNOSTIC.match(text)
        if m:
            found.append((m, []))
        elif found:
            found[-1][1].append(text)
    return found


def assert_reported(exp: Expectation, status: int, stderr: str) -> None:
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    assert status == exp.status, stderr
    found = diagnostics(stderr)
    errors = [d for d in found if d[0]["severity"] == "error"]
    if exp.severity == "error":
        assert len(errors) == 1, f"expected exactly one error:\n{stderr}"
    else:
        assert not errors, stderr
    matching = [d for d in found if d[0]["severity"] == exp.severity and d[0]["path"] == exp.path
                and (int(d[0]["line"]), int(d[0]["col"])) == (exp.line, exp.column)]
    assert matching, f"no {exp.severity} at {exp.path}:{exp.line}:{exp.column}:\n{stderr}"
    head, rest = matching[0]
    assert exp.message in head["message"], stderr
    source_line, caret = rest[0], rest[1]
    gutter = re.match(r"^\s*(\d+) \| ", source_line)
    assert gutter and int(gutter.group(1)) == exp.line, stderr
    assert caret.strip().startswith("| ") and "^" in caret, stderr
    assert caret.index("^") == gutter.end() + exp.column - 1, f"caret not under column {exp.column}:\n{stderr}"
    hints = [t for t in rest[2:] if t.startswith("  hint: ")]
    if exp.hint:
        assert hints and exp.hint in hints[0], stderr


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_broken_spec_is_reported(path: Path) -> None:
    exp = expectation(path)
    argv = ["check", str(path)] + [a for s in exp.sets for a in ("--set", s)]
    status, _, stderr = run_check(argv)
    assert_reported(exp, status, stderr)


def test_there_are_many_distinct_broken_specs() -> None:
    assert len(FILES) >= 40
    messages = [expectation(p).message for p in FILES]
    assert len(set(messages)) == len(messages), "two broken specs expect the same message"
    assert any(p.suffix == ".yaml" for p in FILES)


def test_json_diagnostics_carry_the_location() -> None:
    import json
    path = BROKEN / "unknown_layer.dlspec"
    exp = expectation(path)
    status, stdout, _ = run_check(["check", "--format", "json", str(path)])
    assert status == 2
    [d] = json.loads(stdout)
    assert (d["file"], d["line"], d["column"], d["severity"]) == (str(path), exp.line, exp.column, "error")
    assert exp.message in d["message"] and exp.hint in d["hint"]


@pytest.mark.parametrize("name", ["syntax_missing_brace_at_eof.dlspec", "class_count_mismatch.dlspec",
                                  "yaml_unknown_layer.yaml"])
def test_broken_spec_through_a_real_process(name: str) -> None:
    path = BROKEN / name
    exp = expectation(path)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "dslc", "check", str(path)], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.stdout == ""
    assert_reported(exp, proc.returncode, proc.stderr)
