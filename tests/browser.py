"""A headless Debian Chromium for the page tests (plan page, usage page), driven by Selenium through Debian's
chromedriver: open a file as a person would, keep what the console logged and every request the page made.

One browser per test module (``Browser`` is a context manager; start it in a module fixture); ``CHROMIUM_MISSING``
is the reason to skip with when this machine has no Chromium (CI installs it: .ci/apt-packages.txt)."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM_MISSING = None if CHROMIUM and CHROMEDRIVER else \
    "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
# Without the background-networking flags Chromium reaches for the network at start (updates, sync, QUIC probes).
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000")


@dataclass(frozen=True)
class Visit:
    """What opening a page did: the URLs it requested (the page itself first) and what its console logged."""
    url: str
    requests: tuple[str, ...]
    console: tuple[dict, ...]

    @property
    def other_requests(self) -> list[str]:
        """Every request but the page's own load: a self-contained page makes none."""
        return [u for u in self.requests if u != self.url]


class Browser:
    """Chromium under chromedriver, with a fresh profile, recording the console and the network (Chrome's
    performance log: every Network.requestWillBeSent)."""

    def __init__(self) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="gigafactory-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self._profile.name}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        self.driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.driver.quit()
        self._profile.cleanup()

    def open(self, path: Path) -> Visit:
        """Load ``path`` (a file:// URL) and return what the load did."""
        self.driver.get_log("performance")              # drop what an earlier page left
        self.driver.get_log("browser")
        url = Path(path).resolve().as_uri()
        self.driver.get(url)
        requests = []
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            # The fresh profile's new-tab page loads its own chrome:// resources: the browser's, not the page's.
            if message["method"] == "Network.requestWillBeSent" and \
                    not message["params"].get("documentURL", "").startswith("chrome://"):
                requests.append(message["params"]["request"]["url"])
        return Visit(url, tuple(requests), tuple(self.driver.get_log("browser")))

    def screenshot(self, path: Path, full_page: bool = True) -> None:
        """A PNG of the page (its whole height with ``full_page``, up to 16,000 pixels)."""
        if full_page:
            width, height = self.driver.execute_script(
                "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            self.driver.set_window_size(max(width, 1400), min(height + 120, 16000))
        self.driver.save_screenshot(str(path))

    def script(self, source: str, *args: object) -> object:
        return self.driver.execute_script(source, *args)
