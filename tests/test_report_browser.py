"""The report of a tiny run of every family, opened in a real browser (Chromium, headless,
networking off) from a file:// URL: no console error, no network request, every figure drawn
at a non-zero size, every player playable, one point per evaluation on the loss curve, and a
screenshot that is not blank.

Needs Debian's ``chromium`` and ``chromium-driver`` (.ci/run installs them) and ``selenium``;
skipped, saying which is missing, without them. ``SEQLAB_SCREENSHOTS=DIR`` also copies each
family's screenshot into DIR (how docs/figures/report-*.png were made).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from seqlab.io import read_jsonl

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
FAMILIES = ["text", "tunes", "synthetic", "seq2seq", "classify", "forecast"]
SIZE = (1100, 1500)  # the window, in CSS pixels

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian package "
                       "chromium: apt-get install chromium)"),
    pytest.mark.skipif(DRIVER is None, reason="chromedriver not installed (Debian package "
                       "chromium-driver: apt-get install chromium-driver)"),
    pytest.mark.usefixtures("single_thread"),
]

# every rendered <img> and outermost <svg>: its size; every <audio>: its duration once loaded
SIZES_JS = """
const shown = [...document.querySelectorAll('img, svg')]
  .filter(e => !e.parentElement.closest('svg'));
return shown.map(e => { const r = e.getBoundingClientRect();
  return [e.tagName, r.width, r.height]; });
"""
DURATIONS_JS = """
const done = arguments[arguments.length - 1];
const players = [...document.querySelectorAll('audio')];
const started = Date.now();
(function poll() {
  const ready = players.every(a => a.readyState >= 1 || a.error);
  if (ready || Date.now() - started > 15000) {
    done(players.map(a => [a.duration, a.error ? a.error.code : 0]));
  } else { setTimeout(poll, 100); }
})();
"""


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--host-resolver-rules=MAP * ~NOTFOUND", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--mute-audio", f"--window-size={SIZE[0]},{SIZE[1]}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
        yield driver
    finally:
        driver.quit()


def requests(driver) -> list[str]:
    """The URLs the page asked for, from the performance log (file: and data: included)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def distinct_colours(png: Path) -> int:
    from PIL import Image

    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    return len(np.unique(pixels, axis=0))


@pytest.mark.parametrize("family", FAMILIES)
def test_the_report_of_every_family_in_a_browser(family, family_runs, family_reports,
                                                browser, tmp_path):
    run, page = family_runs[family], family_reports[family]
    browser.get_log("browser"), browser.get_log("performance")  # start both logs empty
    browser.get(page.resolve().as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    browser.set_script_timeout(30)
    durations = browser.execute_async_script(DURATIONS_JS)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    assert [u for u in requests(browser) if not u.startswith(("file:", "data:"))] == []
    sizes = browser.execute_script(SIZES_JS)
    assert sizes and all(w > 0 and h > 0 for _, w, h in sizes), sizes
    assert all(d > 0 and code == 0 for d, code in durations), durations
    assert len(durations) == (2 if family == "tunes" else 0)
    points = browser.execute_script("return document.querySelectorAll('g#val-loss use').length")
    assert points == sum("val_loss" in r for r in read_jsonl(run / "metrics.jsonl")) > 0
    own = browser.find_elements("css selector", "main > section")[2]  # the family's first
    browser.execute_script("arguments[0].scrollIntoView()", own)
    shot = tmp_path / f"report-{family}.png"
    assert browser.save_screenshot(str(shot)) and distinct_colours(shot) > 100
    if folder := os.environ.get("SEQLAB_SCREENSHOTS"):
        shutil.copy(shot, Path(folder) / shot.name)
