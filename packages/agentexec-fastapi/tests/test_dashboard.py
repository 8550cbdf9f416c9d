"""The dashboard in a real browser (headless Chromium through Selenium and the system's
chromedriver): it loads, shows a running task's progress bar move as the stream feeds it,
cancels the task with its button and shows CANCELED. Screenshots go to a temp dir."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cp_support import WAIT, ControlPlane

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        hint = "no Chromium here (Debian: apt-get install chromium chromium-driver; .ci/run does)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but {hint}")
        pytest.skip(hint)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,900", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


def _until(check: Any, what: str, driver: Any) -> Any:
    deadline = time.monotonic() + WAIT
    while True:
        try:
            found = check()
        except Exception:  # an element replaced while read (the table re-renders)
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"dashboard: {what} not within {WAIT}s; page:\n{driver.page_source[:3000]}")
        time.sleep(0.05)


@pytest.mark.parametrize("control_plane", ["sqlite"], indirect=True)
def test_dashboard_shows_progress_and_cancels(control_plane: ControlPlane, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    shots = tmp_path / "screenshots"
    shots.mkdir()
    browser.get(f"{control_plane.url}/api/agentexec/")
    _until(lambda: browser.find_element(By.ID, "live").text == "live", "the live stream", browser)
    with control_plane.client() as client:
        agent_id = client.post("/api/agentexec/tasks/steps",
                               json={"context": {"steps": 400, "delay": 0.1}}).json()["agent_id"]
    row = f'tr[data-agent-id="{agent_id}"]'

    def progress() -> int:
        bar = browser.find_element(By.CSS_SELECTOR, f"{row} [role=progressbar]")
        return int(bar.get_attribute("aria-valuenow"))

    first = _until(lambda: progress() or None, "the task's progress", browser)
    _until(lambda: progress() > first, "the progress bar moving", browser)
    browser.save_screenshot(str(shots / "running.png"))
    assert browser.find_element(By.CSS_SELECTOR, f"{row} td .status").text == "RUNNING"

    browser.find_element(By.CSS_SELECTOR, f"{row} button.cancel").click()
    _until(lambda: browser.find_element(By.CSS_SELECTOR, row).get_attribute("data-status") == "CANCELED",
           "CANCELED", browser)
    assert browser.find_element(By.CSS_SELECTOR, f"{row} td .status").text == "CANCELED"
    assert not browser.find_element(By.CSS_SELECTOR, f"{row} button.cancel").is_displayed()

    # its timeline, from the activity's detail
    browser.find_element(By.CSS_SELECTOR, f"{row} td.id").click()
    _until(lambda: "Task cancelled: canceled from the dashboard" in browser.find_element(By.ID, "timeline").text,
           "the timeline", browser)
    browser.save_screenshot(str(shots / "canceled.png"))
    for name in ("running.png", "canceled.png"):
        data = (shots / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5_000, name
