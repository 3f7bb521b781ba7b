"""Headless Chromium for the web view's tests, driven over the DevTools protocol (CDP) with aiohttp's client.

:class:`Browser` starts Debian's ``chromium`` headless with its own empty profile directory and a DevTools port
chosen by Chromium (``--remote-debugging-port=0``; the port is read back from ``DevToolsActivePort`` in the
profile), opens one page, and offers what the tests need: ``evaluate(js)`` (the value of an expression in the
page, awaiting a Promise), ``screenshot(path)``, and ``close()``, which stops exactly the Chromium it started
(its process group) and removes the profile. The flags are the ones a closed network needs: without
``--disable-background-networking`` and friends Chromium keeps trying to reach Google's hosts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio", "--window-size=1800,1000")


def available() -> str | None:
    """Why a browser test cannot run here (None: it can)."""
    if not os.path.exists(CHROMIUM):
        return "chromium is not installed (scripts/setup.sh installs Debian's chromium)"
    return None


class Browser:
    def __init__(self, url: str, timeout_s: float = 30.0):
        self.profile = tempfile.mkdtemp(prefix="lasernet-chromium-")
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}",
                                      "--remote-debugging-port=0", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.loop = asyncio.new_event_loop()
        self._id = 0
        try:
            port = self._devtools_port(timeout_s)
            self.loop.run_until_complete(self._connect(port))
            self.call("Page.enable")
            self.call("Runtime.enable")
            self.call("Page.navigate", url=url)
        except BaseException:
            self.close()
            raise

    def _devtools_port(self, timeout_s: float) -> int:
        path = Path(self.profile) / "DevToolsActivePort"
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if path.exists() and path.read_text().strip():
                return int(path.read_text().split()[0])
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode} at start")
            time.sleep(0.1)
        raise RuntimeError(f"chromium did not open its DevTools port within {timeout_s:g} s")

    async def _connect(self, port: int) -> None:
        self.session = aiohttp.ClientSession()
        async with self.session.get(f"http://127.0.0.1:{port}/json/list") as r:
            pages = [p for p in await r.json() if p["type"] == "page"]
        self.ws = await self.session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=1 << 27)

    async def _call(self, method: str, params: dict, timeout_s: float) -> dict:
        self._id += 1
        ident = self._id
        await self.ws.send_str(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), timeout_s)
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"DevTools connection closed ({msg.type})")
            data = json.loads(msg.data)
            if data.get("id") == ident:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return data["result"]

    def call(self, method: str, timeout_s: float = 30.0, **params) -> dict:
        return self.loop.run_until_complete(self._call(method, params, timeout_s))

    def evaluate(self, expression: str, timeout_s: float = 30.0):
        """The JSON value of ``expression`` in the page (a Promise is awaited)."""
        r = self.call("Runtime.evaluate", timeout_s=timeout_s, expression=expression, returnByValue=True,
                      awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails'].get('exception', {}).get('description')}")
        return r["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 20.0, every_s: float = 0.05):
        """Poll ``expression`` until it is truthy; return its value and the wall time it first was."""
        end = time.monotonic() + timeout_s
        while True:
            value = self.evaluate(expression)
            if value:
                return value, time.monotonic()
            if time.monotonic() > end:
                raise TimeoutError(f"{expression} still false after {timeout_s:g} s")
            time.sleep(every_s)

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                self.loop.run_until_complete(self.ws.close())
                self.ws = None
            if getattr(self, "session", None) is not None:
                self.loop.run_until_complete(self.session.close())
                self.session = None
        finally:
            if not self.loop.is_closed():
                self.loop.close()
            with contextlib.suppress(ProcessLookupError):  # its own session: Chromium's helpers, nothing else
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            shutil.rmtree(self.profile, ignore_errors=True)
