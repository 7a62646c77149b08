"""The README's commands run as written: every `dslc` line of its ```sh blocks, in order, in a fresh folder.

The folder holds links to the repository's `specs/` and `runtime/` (the commands name files there) and
nothing else, so `runs/`, `cnn.onnx` and `triton_repo/` are made by the commands themselves. Each command
must exit 0 without a traceback. Two things differ from a terminal, on purpose: `dslc serve` runs until
the test has asked it for /health (on a free port: another process may hold 8000), and `make` targets are
checked to exist in the Makefile, not run (they would rebuild the virtualenv). The ```console example is
run and its output compared; ```text blocks (outputs, the multi-node torchrun lines) are not commands.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT

README = ROOT / "README.md"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"^```{kind}\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)


def commands() -> list[str]:
    """Every command line of the ```sh blocks, comments stripped, continuation lines joined."""
    lines = []
    for block in blocks("sh"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def test_the_readme_has_the_commands_this_test_runs():
    found = commands()
    assert sum(c.startswith("dslc ") for c in found) >= 15
    assert all(c.startswith(("dslc ", "make ")) for c in found), found
    assert "dslc train --resume runs/cnn" in found           # the resume with no SPEC and no flags


def test_make_targets_the_readme_names_exist():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for command in commands():
        if command.startswith("make "):
            target = command.split()[1]
            assert re.search(rf"^{re.escape(target)}:", makefile, re.M), target


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _shell(command: str) -> str:
    """The command for /bin/sh with `dslc` as this interpreter's module (globs and ~ expand as in a terminal)."""
    return f"{shlex.quote(sys.executable)} -m dslc {command[len('dslc '):]}"


def _serve(command: str, cwd: Path, env: dict) -> None:
    port = _free_port()
    command = command.replace("--port 8000", f"--port {port}")
    proc = subprocess.Popen([sys.executable, "-m", "dslc", *shlex.split(command)[1:]], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
                    assert reply.status == 200
                    break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise AssertionError(f"`{command}` did not answer /health: {proc.communicate()[1][-2000:]}")
                time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)             # Ctrl-C, as in a terminal
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        assert "Traceback" not in err, err


@pytest.mark.slow
def test_every_readme_command_runs_as_written(tmp_path):
    for name in ("specs", "runtime"):
        (tmp_path / name).symlink_to(ROOT / name)
    env = {k: v for k, v in os.environ.items() if k != "DSLC_NO_PLOTS"}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    ran = []
    for command in commands():
        if command.startswith("make "):
            continue
        if command.startswith("dslc serve "):
            _serve(command, tmp_path, env)
            ran.append(command)
            continue
        proc = subprocess.run(_shell(command), shell=True, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=900)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"`{command}` exited {proc.returncode}:\n{out[-3000:]}"
        assert "Traceback" not in out and "internal error" not in out, f"`{command}`:\n{out[-3000:]}"
        ran.append(command)
    # what the commands made is what the README says they make
    assert (tmp_path / "cnn.onnx").is_file() and (tmp_path / "cnn-lr.png").is_file()
    assert (tmp_path / "runs" / "cnn" / "report.html").is_file()
    assert next((tmp_path / "triton_repo").glob("*/config.pbtxt"))
    summary = json.loads((tmp_path / "runs" / "cnn" / "summary.json").read_text())
    assert summary["steps"] == 7 * 80 and summary["overrides"] == ["lr=0.0005", "train.epochs=7"]
    assert len(ran) == sum(c.startswith("dslc ") for c in commands())


def test_the_console_example_prints_what_the_readme_shows(tmp_path):
    (tmp_path / "specs").symlink_to(ROOT / "specs")
    for block in [b for b in blocks("console") if b.startswith("$ dslc ") and "$ curl" not in b]:
        # (blocks with curl examples are served and run by tests/test_serve.py)
        lines = block.splitlines()
        command, expected = lines[0].removeprefix("$ "), "\n".join(lines[1:])
        proc = subprocess.run(_shell(command), shell=True, cwd=tmp_path, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.returncode == 0 and proc.stdout.strip() == expected.strip(), proc.stdout + proc.stderr
