"""Every code block in README.md and docs/*.md runs as written (see tests/samples.py for how
each is run), on the embedded default: no ``AGENTEXEC_*`` variable, a fresh working directory
(with ``examples/`` linked in), the workspace's ``python`` and ``agentexec`` first on PATH.
Every wait is bounded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from samples import MODES, PAGES, ROOT, Block, all_blocks, blocks, relative_links

BLOCKS = all_blocks()
RUN_TIMEOUT = 120
BIN = Path(sys.executable).parent


def _by_mode(*modes: str) -> list[Block]:
    return [b for b in BLOCKS if b.mode in modes]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTEXEC_")}
    env.pop("VIRTUAL_ENV", None)
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", COLUMNS="100", **extra)
    return env


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    return tmp_path


def _command(block: Block, workdir: Path) -> list[str]:
    if block.language == "python":
        script = workdir / "sample.py"
        script.write_text(block.code)
        return [sys.executable, str(script)]
    assert block.language == "bash", f"{block.id}: cannot run a {block.language!r} block"
    return ["bash", "-euo", "pipefail", "-c", block.code]


def test_every_block_has_a_language_and_a_known_mode() -> None:
    assert len(BLOCKS) >= 15
    for block in BLOCKS:
        assert block.language, f"{block.id}: tag the block (```python, ```bash, ```text, ...)"
        assert block.mode, f"{block.id}: a {block.language} block needs a `<!-- sample: ... -->` mode"
        unknown = set(block.options) - MODES - {"contains", "expect"}
        assert not unknown, f"{block.id}: unknown sample options {unknown}"


def test_every_relative_link_resolves() -> None:
    for page in PAGES:
        for target in relative_links(page):
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to a missing {target}"


@pytest.mark.slow
@pytest.mark.parametrize("block", _by_mode("run"), ids=lambda b: b.id)
def test_block_runs(block: Block, workdir: Path) -> None:
    result = subprocess.run(
        _command(block, workdir), cwd=workdir, env=_env(), capture_output=True, text=True,
        timeout=RUN_TIMEOUT,
    )
    assert result.returncode == 0, f"{block.id}\n{result.stdout}\n{result.stderr}"
    if "expect" in block.options:
        assert block.options["expect"] in result.stdout, result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("block", _by_mode("until-sigterm"), ids=lambda b: b.id)
def test_block_runs_until_sigterm(block: Block, workdir: Path) -> None:
    log = workdir / "output.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            _command(block, workdir), cwd=workdir, env=_env(), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while "Pool started" not in log.read_text():
                assert process.poll() is None, f"{block.id} exited early:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"{block.id} did not start:\n{log.read_text()}"
                time.sleep(0.1)
            # the main process, as `kill PID` does (a SIGTERM to the whole process group hangs
            # the pool's shutdown today: a worker/ bug, reported with the issue)
            os.kill(process.pid, signal.SIGTERM)
            code = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
    output = log.read_text()
    assert code == 0, f"{block.id} exited {code}:\n{output}"
    assert "Pool stopped" in output, output


@pytest.mark.parametrize("block", _by_mode("excerpt"), ids=lambda b: b.id)
def test_excerpt_is_in_its_file(block: Block) -> None:
    """Each line of the block is a line of the file, in the same order (lines may be left out)."""
    source = iter((ROOT / block.options["excerpt"]).read_text().splitlines())
    for line in block.code.splitlines():
        assert any(line == other for other in source), (
            f"{block.id} is no longer an excerpt of {block.options['excerpt']}: {line!r}"
        )


@pytest.mark.parametrize("block", _by_mode("tested-by"), ids=lambda b: b.id)
def test_block_is_run_by_the_test_it_names(block: Block) -> None:
    runner = ROOT / block.options["tested-by"]
    needle = block.options.get("contains", "")
    assert needle and needle in block.code, f"{block.id}: contains= must quote the block"
    assert needle in runner.read_text(), f"{runner} does not run {needle!r}"


@pytest.mark.slow
@pytest.mark.parametrize("block", _by_mode("schedules"), ids=lambda b: b.id)
def test_schedule_file_loads(block: Block, workdir: Path) -> None:
    (workdir / "schedules.yaml").write_text(block.code)
    result = subprocess.run(
        [str(BIN / "agentexec"), "schedules", "list", block.options["schedules"],
         "--schedules", "schedules.yaml", "--json"],
        cwd=workdir, env=_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for line in block.code.splitlines():
        if line.strip().startswith("- name:"):
            assert line.split(":", 1)[1].strip() in result.stdout


PROJECT_PAGES = sorted({b.page for b in _by_mode("file", "append")})


@pytest.mark.slow
@pytest.mark.parametrize("page", PROJECT_PAGES, ids=lambda p: p.name)
def test_page_project_passes_its_tests(page: Path, tmp_path: Path) -> None:
    """The page's blocks form a distribution: its files, its entry points (from its
    pyproject.toml, as installing it would record them), and tests that must pass."""
    project = tmp_path / "project"
    for block in blocks(page):
        if block.mode in ("file", "append"):
            path = project / block.options[block.mode]
            path.parent.mkdir(parents=True, exist_ok=True)
            previous = path.read_text() + "\n\n" if block.mode == "append" and path.exists() else ""
            path.write_text(previous + block.code)
    meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    dist_info = tmp_path / "site" / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n"
    )
    (dist_info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in points.items())
        for group, points in meta.get("entry-points", {}).items()
    ))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
         "tests"],
        cwd=project, env=_env(PYTHONPATH=f"{tmp_path / 'site'}{os.pathsep}{project}"),
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout, result.stdout[-2000:]
