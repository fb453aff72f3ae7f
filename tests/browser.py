"""Headless Chromium for the dashboard's tests and its screenshot: the system's Chromium (Debian
`chromium`) driven through Selenium by the system's driver (Debian `chromium-driver`), never a
browser build downloaded at run time.

`python -m tests.browser docs/dashboard.png` starts a real server, fills it with a few sessions
of a training run and takes the README's screenshot of the dashboard.
"""

from __future__ import annotations

import random
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from tests.live_server import LiveServer

CHROMIUM_NAMES = ("chromium", "chromium-browser")
DRIVER_NAMES = ("chromedriver", "chromium-driver")
MISSING = ("no system Chromium and chromedriver on PATH (Debian: apt-get install -y chromium "
           "chromium-driver, which `make test` runs)")
#: Long enough for a slow shared machine; the page polls every 2 s.
WAIT_SECONDS = 30


def chromium_paths() -> tuple[str, str] | None:
    """The browser and its driver, or None when either is not installed."""
    browser = next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    driver = next(filter(None, map(shutil.which, DRIVER_NAMES)), None)
    return (browser, driver) if browser and driver else None


def start_chromium(width: int = 1400, height: int = 900) -> webdriver.Chrome:
    """Headless Chromium whose console messages `console_errors` can read."""
    paths = chromium_paths()
    if paths is None:
        raise RuntimeError(MISSING)
    browser, driver = paths
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", f"--window-size={width},{height}",
                     "--hide-scrollbars", "--force-color-profile=srgb"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


def console_errors(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """The page's console errors (script errors and failed loads) since the last call."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def wait_for(driver: webdriver.Chrome, condition: Any, message: str) -> Any:
    """Wait until `condition(driver)` is truthy (the page polls; this is not a timing check)."""
    return WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.1).until(condition, message)


@contextmanager
def served(env: dict[str, str] | None = None) -> Iterator[str]:
    """A real uvicorn on the in-memory store: its URL."""
    server = LiveServer({"TALLY_REDIS_URL": "", **(env or {})}).start()
    try:
        yield server.url
    finally:
        server.stop()


# ---- the screenshot's training run ---------------------------------------------------------

def _binary_batch(rng: random.Random, skill: float, size: int = 64) -> dict[str, Any]:
    """Labels and scores of a classifier that gets better with `skill` (0..1)."""
    y_true = [rng.randint(0, 1) for _ in range(size)]
    y_pred = [min(1.0, max(0.0, rng.gauss(0.5 + (t - 0.5) * skill, 0.25))) for t in y_true]
    return {"y_true": y_true, "y_pred": y_pred}


def seed_training_run(url: str, epochs: int = 6) -> None:
    """Two runs of a binary classifier: AUC, precision, recall and a loss per split, with
    `epochs` closed epochs each, and a multi-class F1 (a tensor result)."""
    rng = random.Random(7)
    with httpx.Client(base_url=url, timeout=30) as client:
        for run, speed in (("run41", 0.08), ("run42", 0.12)):
            metrics = {f"{run}.train.auc": ("AUC", {}), f"{run}.val.auc": ("AUC", {}),
                       f"{run}.val.precision": ("Precision", {}),
                       f"{run}.val.recall": ("Recall", {}),
                       f"{run}.train.loss": ("BinaryCrossentropy", {})}
            for name, (metric, config) in metrics.items():
                client.put(f"/v1/sessions/{name}",
                           json={"metric": metric, "config": config}).raise_for_status()
            for epoch in range(epochs + 1):
                skill = min(0.95, 0.2 + speed * epoch)
                for name in metrics:
                    for _ in range(3):
                        batch = _binary_batch(rng, skill - (0.05 if ".val." in name else 0))
                        client.post(f"/v1/sessions/{name}/update",
                                    json=batch).raise_for_status()
                    if epoch < epochs:
                        client.post(f"/v1/sessions/{name}/reset").raise_for_status()
        _seed_f1(client, rng)


def _seed_f1(client: httpx.Client, rng: random.Random) -> None:
    name = "run42.val.f1_per_class"
    client.put(f"/v1/sessions/{name}", json={"metric": "F1Score"}).raise_for_status()
    for _ in range(4):
        labels = [rng.randint(0, 2) for _ in range(48)]
        y_true = [[1.0 if c == label else 0.0 for c in range(3)] for label in labels]
        y_pred = [[0.7 if c == label else 0.15 for c in range(3)] if rng.random() < 0.8
                  else [rng.random() for _ in range(3)] for label in labels]
        client.post(f"/v1/sessions/{name}/update",
                    json={"y_true": y_true, "y_pred": y_pred}).raise_for_status()


def _train_a_little_more(url: str, driver: webdriver.Chrome) -> None:
    """A few batches while the page watches, so that it shows results changing."""
    rng = random.Random(11)
    changing = ("run42.train.auc", "run42.train.loss", "run42.val.auc")
    for name in changing:
        httpx.post(f"{url}/v1/sessions/{name}/update", json=_binary_batch(rng, 0.9),
                   timeout=30).raise_for_status()
    script = ("return [...document.querySelectorAll('a.row.session .seen')]"
              ".filter(s => !s.textContent.startsWith('before')).length")
    wait_for(driver, lambda d: d.execute_script(script) == len(changing),
             "the page seeing the new batches")


def take_screenshot(path: Path) -> None:
    with served() as url:
        seed_training_run(url)
        driver = start_chromium(1400, 860)
        try:
            driver.get(f"{url}/#/s/run42.val.auc")
            wait_for(driver, lambda d: d.find_elements("css selector", "svg.chart circle.closed"),
                     "the chart of run42.val.auc")
            _train_a_little_more(url, driver)
            driver.save_screenshot(str(path))
        finally:
            driver.quit()


if __name__ == "__main__":
    take_screenshot(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/dashboard.png"))
