"""A password in a URL never reaches an error, a log line, CLI output or a ``repr``.

Every operator command runs against URLs that hold a password (unsupported schemes, servers
that are down, a wrong password, a database that does not exist, a password the URL parser
chokes on); the output is grepped for the password.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from agentexec._redact import mask_url, redact
from agentexec.cli import main
from agentexec.config import CONF, Config
from agentexec.runtime import build_backends, has_backends, set_backends

SECRET = "s3cretPW9"
HERE = Path(__file__).parent

#: (redis_url, database_url, whether the output names the URL): every case holds SECRET
CASES = [
    (None, f"mysql://user:{SECRET}@127.0.0.1:3306/db", True),  # no adapter for the scheme
    (f"foo://user:{SECRET}@example.invalid/0", "memory://", True),  # no plugin at all
    (f"redis://:{SECRET}@127.0.0.1:1/0", None, True),  # nothing listens there
    (f"redis://:{SECRET}@127.0.0.1:6379/0", "sqlite:///{tmp}/a.db", False),  # wrong password
    (f"redis://:{SECRET}/x@127.0.0.1:6379/0", None, False),  # read in part as a port number
    (None, f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:5432/no_such_db_x", False),
    (None, f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:1/db?sslpassword={SECRET}x", True),
]
COMMANDS = [
    ["status"], ["activity", "list"], ["activity", "show", "abcd1234"], ["dead-letter", "list"],
    ["tail", "--timeout", "0.3"],
]


@pytest.fixture(autouse=True)
def no_process_backends() -> None:
    if has_backends():
        set_backends(None)


@pytest.mark.parametrize(
    "redis_url,database_url,named", CASES,
    ids=["mysql", "unknown-scheme", "redis-down", "redis-wrong-password", "redis-unparsable", "pg-no-db", "pg-down"],
)
def test_cli_errors_never_show_the_password(
    redis_url: str | None, database_url: str | None, named: bool, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, tmp_path: Path,
) -> None:
    if database_url:
        database_url = database_url.format(tmp=tmp_path)
    monkeypatch.setattr(CONF, "redis_url", redis_url)
    monkeypatch.setattr(CONF, "database_url", database_url or f"sqlite:///{tmp_path}/b.db")
    shown = ""
    with caplog.at_level(logging.DEBUG):
        for argv in COMMANDS:
            code = main(argv)
            out = capsys.readouterr()
            shown += out.out + out.err
            assert code != 0 or argv[0] == "tail", (argv, out)
    shown += caplog.text
    assert SECRET not in shown
    assert "s3cret" not in shown.lower()
    if named:
        assert "***" in shown, "the URL is shown, masked"


def test_agentexec_run_with_an_unsupported_url_masks_the_password(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("import agentexec as ax\npool = ax.Pool()\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTEXEC_")}
    env |= {"AGENTEXEC_DATABASE_URL": f"mysql://user:{SECRET}@db.example/app"}
    for argv in (
        [sys.executable, "-m", "agentexec.cli", "run", "app:pool"],
        [sys.executable, "-c", "import app"],  # the exception a program gets
        [sys.executable, "-c", "import agentexec as ax; print(ax.CONF)"],
    ):
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        output = done.stdout + done.stderr
        assert SECRET not in output, output
        assert "mysql://user:***@db.example/app" in output, output


def test_reprs_mask_the_password(redis_server_url: str | None, postgres_server_url: str) -> None:
    urls = {
        "queue": f"redis://:{SECRET}@127.0.0.1:6379/0",
        "results": f"redis://:{SECRET}@127.0.0.1:6379/0",
        "events": postgres_server_url.replace("postgres@", f"postgres:{SECRET}@"),
        "activity": postgres_server_url.replace("postgres@", f"postgres:{SECRET}@"),
    }
    backends = build_backends(urls)  # type: ignore[arg-type]
    text = repr(backends) + repr(Config(redis_url=urls["queue"], database_url=urls["activity"]))
    assert SECRET not in text and text.count("***") >= 6, text


@pytest.mark.parametrize("url,masked", [
    ("redis://:pw12@h:6379/0", "redis://:***@h:6379/0"),
    ("rediss://user:p@ss/wd@h/0", "rediss://user:***@h/0"),
    ("postgresql+asyncpg://u:pw12@h/db?sslpassword=abcd&x=1", "postgresql+asyncpg://u:***@h/db?sslpassword=***&x=1"),
    ("redis://user@h/0", "redis://user@h/0"),
    ("sqlite:///a.db", "sqlite:///a.db"),
])
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert redact(f"failed: {url!r} (x)", [url]) == f"failed: {masked!r} (x)"
