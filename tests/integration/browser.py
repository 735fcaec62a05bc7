"""Headless Chromium (Debian's ``chromium``) driven over the DevTools protocol, for the tests of
the HTML report: what the page logs as errors, what it tries to fetch, what its DOM holds, and
screenshots at a given width and colour scheme.

The browser gets no network: host names resolve to nothing and every connection goes to a
closed proxy port, so a page that fetched anything would fail (and the test sees the request).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websocket

from tests.integration.servers import _running, free_port

BINARIES = ("chromium", "chromium-browser", "google-chrome")


def chromium_binary() -> str:
    """The browser, or the test is skipped (failed under ``SCM_BATCH_REQUIRE_TOOLS=1``, as
    ``make test`` runs: `make` installs it)."""
    for name in BINARIES:
        if found := shutil.which(name):
            return found
    if os.environ.get("SCM_BATCH_REQUIRE_TOOLS") == "1":
        pytest.fail("chromium is required (SCM_BATCH_REQUIRE_TOOLS=1): apt-get install chromium")
    pytest.skip("no chromium on this machine (make test installs Debian's)")


@dataclass
class Page:
    """One tab, over its DevTools WebSocket: commands answered in order, events kept."""

    socket: websocket.WebSocket
    events: list[dict[str, Any]] = field(default_factory=list)
    _next: int = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        self.socket.send(json.dumps({"id": self._next, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self._next:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    def wait_for(self, event: str, since: int) -> dict[str, Any]:
        """The first ``event`` from the ``since``-th one kept on (one may have come in while a
        command waited for its answer), or the next to come: the socket's timeout bounds it."""
        for kept in self.events[since:]:
            if kept.get("method") == event:
                return kept
        while True:
            message: dict[str, Any] = json.loads(self.socket.recv())
            self.events.append(message)
            if message.get("method") == event:
                return message

    def evaluate(self, expression: str) -> Any:
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in answer:
            raise RuntimeError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def open(self, url: str, *, width: int, height: int, dark: bool = False) -> None:
        """Load ``url`` in a viewport ``width`` by ``height`` CSS pixels (a phone's touch
        screen when narrow), light or dark, and wait until it has loaded."""
        mobile = width < 600
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=2 if mobile else 1,
            mobile=mobile,
        )
        scheme = "dark" if dark else "light"
        self.call(
            "Emulation.setEmulatedMedia",
            features=[{"name": "prefers-color-scheme", "value": scheme}],
        )
        since = len(self.events)
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired", since)

    def screenshot(self, path: Path) -> None:
        """The whole page, not only the viewport."""
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions, and any request that is not the file itself."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails']}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(f"log: {params['entry'].get('text')} {params['entry'].get('url')}")
            elif method == "Network.requestWillBeSent":
                url = params["request"]["url"]
                if not url.startswith(("file://", "data:")):
                    found.append(f"network request: {url}")
        return found


@contextmanager
def headless_chromium() -> Iterator[Page]:
    """A fresh browser (its own profile) and one page with errors, logs and requests watched."""
    binary = chromium_binary()
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        command = [
            binary,
            "--headless=new",
            "--no-sandbox",  # tests may run as root, where Chromium's sandbox refuses to start
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--proxy-server=127.0.0.1:{free_port()}",  # nothing listens there
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "about:blank",
        ]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert process.stdout is not None
        log: list[str] = []
        with _running(process, process.stdout, log, lambda line: "DevTools listening on" in line):
            browser_url = next(line for line in log if "DevTools listening on" in line).split()[-1]
            port = browser_url.removeprefix("ws://").split("/", 1)[0].rsplit(":", 1)[1]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
                targets = json.load(r)
            tab = next(t for t in targets if t["type"] == "page")
            sock = websocket.create_connection(
                tab["webSocketDebuggerUrl"], timeout=60, suppress_origin=True
            )
            try:
                page = Page(sock)
                for domain in ("Page", "Runtime", "Log", "Network"):
                    page.call(f"{domain}.enable")
                yield page
            finally:
                sock.close()


def artifact_dir() -> Path:
    """Where screenshots are kept after the run (``SCM_BATCH_TEST_ARTIFACTS``, or build/)."""
    default = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
    return Path(os.environ.get("SCM_BATCH_TEST_ARTIFACTS", default))
