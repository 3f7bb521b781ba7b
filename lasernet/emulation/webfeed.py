"""The live run's side of the browser view: start the web server, hand it frames, answer its questions.

``lasernet up --web [HOST:]PORT`` serves a page while the run is up (:mod:`lasernet.web.server`). The server is
a process of its own, so that encoding frames for browsers never takes the driver's CPU or its interpreter lock
in a tick; the two talk over a socketpair with :mod:`multiprocessing.connection`'s framing (pickled messages,
both ends ours).

What a tick costs the driver: :meth:`WebFeed.publish` is called every tick and, at most every ``frame_s`` wall
seconds, copies the applied state of the links (by slot: the order in which the driver created them, which is
the view's link list) and the satellites' illumination into a slot. A thread of its own sends the latest slot's
contents (frames the server has not taken yet are replaced, never queued) and answers the server's questions:
a node's forwarding table and (with routing daemons) its neighbours, the oracle path between two nodes. The
answers read the driver's current tables while ticks go on (in background-routing mode a tick changes its table
in place, so a node's table may mix two ticks' routes: a view, not a measurement).

The server writes its messages to ``web.log`` in the run directory. Its PID goes into the run's state file as a
helper, so that ``lasernet down`` stops it after a SIGKILL of the driver; it also exits by itself when the
socketpair closes.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection

import numpy as np

log = logging.getLogger(__name__)

FRAME_S = 0.2  # wall seconds between frames: 5 frames per second at most
START_TIMEOUT_S = 20.0

#: The command that lists a node's routing neighbours, per (protocol, daemon suite shell).
NEIGHBOUR_COMMANDS = {("ospf", "vtysh"): ("show ip ospf neighbor",), ("isis", "vtysh"): ("show isis neighbor",),
                      ("bgp", "vtysh"): ("show bgp summary",), ("babel", "vtysh"): ("show babel neighbor",),
                      ("ospf", "birdc"): ("show ospf neighbors",), ("bgp", "birdc"): ("show protocols",),
                      ("babel", "birdc"): ("show babel neighbors",)}


class WebError(RuntimeError):
    """The web server did not start (its own message, e.g. the port is taken)."""


def parse_bind(text: str, option: str = "--web") -> tuple[str, int]:
    """``[HOST:]PORT`` -> (host, port); the host defaults to 127.0.0.1 (the page is for this machine unless
    asked). Raises :class:`~lasernet.errors.OptionError` naming ``option``."""
    from ..errors import OptionError

    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise OptionError(option, f"must be [HOST:]PORT with PORT 0-65535 (0: any free port), got {text!r}")
    return host, int(port)


class WebFeed:
    """The web server of one live run (see the module docstring)."""

    def __init__(self, emulation, bind: tuple[str, int], frame_s: float = FRAME_S):
        self.emu = emulation
        self.bind = bind
        self.frame_s = frame_s
        self.url: str | None = None
        self.process: subprocess.Popen | None = None
        self.log_path = None
        self._conn: Connection | None = None
        self._pending = None  # the latest frame not sent yet
        self._sent_links = 0
        self._last_publish = -1e9
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.frames_sent = 0

    def start(self) -> "WebFeed":
        emu = self.emu
        ours, theirs = socket.socketpair()
        argv = [sys.executable, "-m", "lasernet.web.server", "--live-fd", str(theirs.fileno()),
                "--scenario", str(emu.scenario.source), "--start", emu.start_utc.isoformat(),
                "--bind", f"{self.bind[0]}:{self.bind[1]}", "--speed", repr(emu.speed),
                "--run-dir", str(emu.run_dir)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [_package_root(),
                                                                        os.environ.get("PYTHONPATH")])))
        self.log_path = emu.run_dir / "web.log"
        with self.log_path.open("wb") as log_file:  # the server's messages (and a traceback if it fails)
            self.process = subprocess.Popen(argv, pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL,
                                            stdout=log_file, stderr=subprocess.STDOUT)
        theirs.close()
        if emu.state is not None:
            emu.state.add_helpers([self.process.pid])
        self._conn = Connection(ours.detach())
        self._conn.send({"type": "nodes", "names": list(emu.node_names), "n_satellites": emu.n_satellites})
        if not self._conn.poll(START_TIMEOUT_S):
            self.stop()
            raise WebError(f"the web server did not start within {START_TIMEOUT_S:g} s")
        try:
            hello = self._conn.recv()
        except EOFError:
            self.stop()
            err = self.log_path.read_text(errors="replace").strip().splitlines()
            raise WebError(err[-1] if err else "the web server exited at start") from None
        self.url = hello["url"]
        self._thread = threading.Thread(target=self._loop, name="lasernet-web", daemon=True)
        self._thread.start()
        return self

    # ---------------------------------------------------------------------------------------------- per tick
    def publish(self, t_s: float, illumination: np.ndarray | None) -> None:
        """Called every tick: at most every ``frame_s`` wall seconds, keep a copy of the applied link state."""
        now = time.monotonic()
        if now - self._last_publish < self.frame_s:
            return
        self._last_publish = now
        applied = self.emu.applied
        n = len(applied.links)
        valid = applied.valid[:n]
        up_index = np.flatnonzero(valid & applied.up[:n])
        new = [(link.a, link.b) for link in applied.links[self._sent_links:n]]
        self._pending = {"type": "frame", "t_s": t_s, "new_links": new, "n_links": n, "up": up_index,
                         "delay_s": applied.delay_s[up_index].astype(np.float32),
                         "illumination": None if illumination is None else np.asarray(illumination, np.float32)}
        self._sent_links = n
        self._wake.set()

    # ---------------------------------------------------------------------------------------------- the thread
    def _loop(self) -> None:
        conn = self._conn
        while not self._stop.is_set():
            try:
                if conn.poll(0.05):
                    self._answer(conn.recv())
                if self._wake.is_set():
                    self._wake.clear()
                    frame, self._pending = self._pending, None
                    if frame is not None:
                        conn.send(frame)
                        self.frames_sent += 1
            except (EOFError, OSError):
                if not self._stop.is_set():
                    log.warning("the web server went away; the run goes on without it")
                return

    def _answer(self, request: dict) -> None:
        try:
            answer = self.answer(request)
        except Exception as exc:  # a question the run cannot answer must not stop the feed
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        self._conn.send({"type": "answer", "id": request.get("id"), **answer})

    def answer(self, request: dict) -> dict:
        """The answer to one of the page's questions: ``{"kind": "path", "a", "b"}`` or ``{"kind": "node",
        "name"}`` (its routes; with routing daemons on one machine, the daemon's own neighbour list)."""
        from ..web.scene import node_routes

        emu = self.emu
        if request["kind"] == "path":
            nodes, delay = emu.path(request["a"], request["b"])
            return {"path": nodes, "rtt_ms": round(2e3 * delay, 3) if np.isfinite(delay) else None}
        if request["kind"] == "node":
            name = request["name"]
            i = emu.router_index(name)
            answer = {"name": name, "routes": [] if emu.routes is None else node_routes(emu.routes, emu.node_names,
                                                                                       i),
                      "routes_from": ("oracle (reference)" if emu.scenario.routing.uses_daemons else "oracle")
                      + (", background: next hops only" if emu.oracle_process is not None else "")}
            if emu.scenario.routing.uses_daemons and emu.daemons is not None and not emu.cluster:
                shell = emu.daemons.suite.shell
                command = NEIGHBOUR_COMMANDS.get((emu.scenario.routing.protocol, shell))
                if command:
                    answer["neighbours"] = emu.daemons.shell(name, *command)
                    answer["neighbours_command"] = " ".join(command)
            return answer
        raise ValueError(f"unknown question {request['kind']!r}")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self.process is not None:
            try:
                self.process.wait(timeout=3)  # it exits when the socketpair closes
            except subprocess.TimeoutExpired:
                self.process.terminate()
                try:
                    self.process.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.process = None


def _package_root() -> str:
    """The directory holding the ``lasernet`` package this driver runs (the server must import the same one)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
