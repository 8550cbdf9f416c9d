"""A release, as a new user gets it: ``scripts/build-release`` builds every distribution, each
sdist holds only what it should, and ``pip install --find-links dist
'agentexec[redis,sqlalchemy,openai]==<ours>'`` into a fresh virtualenv installs *our*
distributions (never the unrelated ``agentexec`` 0.1.0-0.3.0 on the package index), where the
README's example then runs.

Installing resolves the third-party dependencies from the package index (or uv's cache)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from samples import ROOT, blocks

pytestmark = pytest.mark.slow

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
MEMBERS = {
    tomllib.loads(p.read_text())["project"]["name"]: p.parent
    for p in sorted((ROOT / "packages").glob("*/pyproject.toml"))
}
INSTALL = f"agentexec[redis,sqlalchemy,openai]=={VERSION}"
#: what INSTALL brings (the README's install line; pydantic-ai is another extra)
INSTALLED = ("agentexec", "agentexec-core", "agentexec-redis", "agentexec-sqlalchemy", "agentexec-openai")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTEXEC_", "UV_PROJECT"))}
    env.pop("VIRTUAL_ENV", None)
    env["UV_PYTHON_DOWNLOADS"] = "never"
    return env


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [str(ROOT / "scripts" / "build-release"), str(out)], cwd=ROOT, env=_env(),
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def _name(distribution: str) -> str:
    return distribution.replace("-", "_")


def test_every_release_distribution_is_built_and_nothing_else(dist: Path) -> None:
    expected = {"agentexec", *MEMBERS}
    built = sorted(p.name for p in dist.iterdir() if p.suffix in (".whl", ".gz"))
    assert built == sorted(
        [f"{_name(d)}-{VERSION}-py3-none-any.whl" for d in expected]
        + [f"{_name(d)}-{VERSION}.tar.gz" for d in expected]
    )
    assert not any("thirdparty" in name for name in built)


def test_sdists_hold_only_what_they_should(dist: Path) -> None:
    with tarfile.open(dist / f"agentexec-{VERSION}.tar.gz") as meta:
        names = {n.split("/", 1)[1] for n in meta.getnames() if "/" in n}
    assert names <= {"PKG-INFO", "pyproject.toml", "README.md", ".gitignore"}, names
    for distribution, source in MEMBERS.items():
        with tarfile.open(dist / f"{_name(distribution)}-{VERSION}.tar.gz") as sdist:
            names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
        extra = {
            n for n in names
            if not n.startswith("src/") and n not in {"PKG-INFO", "pyproject.toml", "README.md", ".gitignore"}
        }
        assert not extra, f"{distribution}'s sdist carries {sorted(extra)}"
        tracked = {str(p.relative_to(source)) for p in (source / "src").rglob("*") if p.is_file()
                   and "__pycache__" not in p.parts}
        assert tracked <= names, f"{distribution}'s sdist lacks {sorted(tracked - names)}"


def test_the_meta_wheel_pins_our_distributions(dist: Path) -> None:
    with zipfile.ZipFile(dist / f"agentexec-{VERSION}-py3-none-any.whl") as wheel:
        metadata = wheel.read(f"agentexec-{VERSION}.dist-info/METADATA").decode()
    for distribution in MEMBERS:
        # agentexec-telemetry is pinned with its extras: agentexec-telemetry[otel]==...
        assert re.search(rf"Requires-Dist: {distribution}(\[[a-z,-]+\])?=={VERSION}", metadata), distribution


def test_install_by_name_into_a_fresh_venv_and_run_the_readme_example(
    dist: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    run = {"cwd": tmp_path, "env": _env(), "capture_output": True, "text": True}
    made = subprocess.run(["uv", "venv", "--python", sys.executable, str(venv)], timeout=120, **run)  # type: ignore[call-overload]
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    # the README's install line, with uv's pip (pip itself resolves the same way, only slower)
    installed = subprocess.run(
        ["uv", "pip", "install", "--python", str(python), "--find-links", str(dist), INSTALL],
        timeout=600, **run,  # type: ignore[call-overload]
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    check = subprocess.run(
        [str(python), "-c",
         "import importlib.metadata as m\n"
         f"for d in {INSTALLED!r}:\n"
         "    print(d, m.version(d), m.distribution(d).read_text('direct_url.json') is None)\n"
         "print(m.requires('agentexec'))"],
        timeout=60, **run,  # type: ignore[call-overload]
    )
    assert check.returncode == 0, check.stderr
    for distribution in INSTALLED:
        assert f"{distribution} {VERSION} True" in check.stdout, check.stdout  # ours, from a wheel
    assert f"agentexec-core=={VERSION}" in check.stdout

    [example] = [b for b in blocks(ROOT / "README.md") if b.language == "python"]
    (tmp_path / "app.py").write_text(example.code)
    ran = subprocess.run([str(python), "app.py"], timeout=120, **run)  # type: ignore[call-overload]
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "Acme: looks solid COMPLETE" in ran.stdout
    cli = subprocess.run([str(venv / "bin" / "agentexec"), "--version"], timeout=60, **run)  # type: ignore[call-overload]
    assert cli.stdout.strip() == f"agentexec {VERSION}"
    # the migrations ship in agentexec-sqlalchemy's wheel: a pip user upgrades with them
    db = f"sqlite:///{tmp_path / 'migrated.db'}"
    for action, expected in (("upgrade", "no version -> "), ("check", "up to date")):
        ran = subprocess.run([str(venv / "bin" / "agentexec"), "db", action, "--url", db], timeout=60, **run)  # type: ignore[call-overload]
        assert ran.returncode == 0 and expected in ran.stdout, ran.stdout + ran.stderr
