"""The browser view's web server: one page, its scripts, and a WebSocket carrying scene, links and frames.

Served with aiohttp (a maintained asyncio HTTP and WebSocket library), never a socket loop of ours. Paths:

* ``/``: the page (``static/index.html``); ``/static/...``: its script and style, shipped inside the lasernet
  package (plain JavaScript drawing on a canvas: nothing is fetched from elsewhere, at run time or ever);
* ``/land.json``: the land mask lasernet's static maps use (1 degree, rows from 90 S), run-length coded;
* ``/ws``: the WebSocket. The server sends ``scene`` (:class:`lasernet.web.scene.Scene`), then ``links``
  (the link list's additions) and ``frame`` messages; the page sends questions with an ``id`` and gets an
  ``answer`` with the same id: ``{"type": "node", "name"}`` (its forwarding table; with daemons its
  neighbours), ``{"type": "path", "a", "b"}`` (the oracle path and its RTT), and in a replay
  ``{"type": "seek", "t_s"}`` (the frame at exactly that emulated instant).

Two sources feed it. **Live** (``--live-fd``, started by :class:`lasernet.emulation.webfeed.WebFeed`): the driver
sends the link list's additions and frames' arrays over a socketpair; the server adds the satellites' places
and pushes each new frame to every page (a page that has not taken the last one yet gets only the newest). It
exits when the socketpair closes, i.e. with the run, and runs at nice 10: it yields the CPU to the run it shows.
**Replay** (``lasernet web RUN_DIR``, :func:`serve_replay`):
frames come from :class:`lasernet.web.scene.ReplayRun` at the instants the page asks for; play, pause, speed
and seek are the page's, which asks for the frame at its playback time several times a second.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import itertools
import json
import logging
import os
import socket
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
from aiohttp import WSMsgType, web

from .scene import LinkList, ReplayRun, Scene, node_routes, path_message, replay_routes

STATIC = Path(__file__).resolve().parent / "static"
log = logging.getLogger(__name__)
STRICT_JSON = functools.partial(json.dumps, allow_nan=False)  # a browser's JSON.parse refuses NaN and Infinity


def land_runs() -> dict:
    """The static maps' 1-degree land mask (:func:`lasernet.measure.plots.land_mask`) as runs per row:
    ``{"rows": [[start, length, start, length, ...], ...]}``, row 0 the band 90-89 S, column 0 180-179 W."""
    from ..measure.plots import land_mask

    mask = land_mask()
    rows = []
    for row in mask:
        edges = np.flatnonzero(np.diff(np.concatenate(([0], row.astype(np.int8), [0]))))
        starts, ends = edges[0::2], edges[1::2]
        rows.append(np.column_stack((starts, ends - starts)).ravel().tolist())
    return {"rows": rows, "width": int(mask.shape[1]), "height": int(mask.shape[0])}


class Hub:
    """The pages connected and what they are sent (both sources share it)."""

    def __init__(self, scene: Scene, live: bool, duration_s: float | None, speed: float):
        self.scene, self.live, self.duration_s, self.speed = scene, live, duration_s, speed
        self.links = LinkList()
        self.frame: dict | None = None
        self.frame_seq = 0
        self.changed = asyncio.Event()
        self.answer_ids = itertools.count(1)

    def scene_message(self) -> dict:
        return self.scene.message(self.live, self.duration_s, self.speed)


class LiveSource:
    """Frames and answers from the driver over the socketpair (see the module docstring)."""

    def __init__(self, conn: Connection, hub_factory):
        self.conn = conn
        self._send_lock = threading.Lock()
        self._waiting: dict[int, asyncio.Future] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        first = conn.recv()  # {"type": "nodes"}: the driver's node names (the scene's order)
        self.hub: Hub = hub_factory(first["names"], first["n_satellites"])

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        threading.Thread(target=self._read, name="lasernet-web-feed", daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                message = self.conn.recv()
                if message["type"] == "frame":
                    frame = self._frame(message)
                    self.loop.call_soon_threadsafe(self._publish, frame)
                elif message["type"] == "answer":
                    self.loop.call_soon_threadsafe(self._resolve, message)
        except (EOFError, OSError):
            self.loop.call_soon_threadsafe(self.loop.stop)  # the run is over: so is its page

    def _frame(self, m: dict) -> dict:
        hub = self.hub
        if m["new_links"]:
            hub.links.extend(m["new_links"], hub.scene.n_satellites)
        return hub.scene.frame(m["t_s"], m["up"], m["delay_s"], m["illumination"], hub.links.version)

    def _publish(self, frame: dict) -> None:
        hub = self.hub
        hub.frame = frame
        hub.frame_seq += 1
        hub.changed.set()
        hub.changed = asyncio.Event()

    def _resolve(self, message: dict) -> None:
        future = self._waiting.pop(message.get("id"), None)
        if future is not None and not future.done():
            future.set_result(message)

    async def ask(self, question: dict) -> dict:
        ident = next(self.hub.answer_ids)
        future = self.loop.create_future()
        self._waiting[ident] = future
        with self._send_lock:
            self.conn.send({**question, "id": ident})
        try:
            return await asyncio.wait_for(future, timeout=10.0)
        except asyncio.TimeoutError:
            self._waiting.pop(ident, None)
            return {"error": "the run did not answer within 10 s"}

    async def node(self, name: str, t_s: float | None) -> dict:
        return await self.ask({"kind": "node", "name": name})

    async def path(self, a: str, b: str, t_s: float | None) -> dict:
        return await self.ask({"kind": "path", "a": a, "b": b})


class ReplaySource:
    """Frames and answers computed from a finished run's directory (see the module docstring)."""

    def __init__(self, replay: ReplayRun):
        self.replay = replay
        self.hub = Hub(replay.scene, False, replay.duration_s, replay.speed)
        self.hub.links = replay.links
        self._routes: tuple[float, object] | None = None

    def start(self, loop) -> None:
        self.hub.frame = self.replay.frame(0.0)

    def _routes_at(self, t_s: float):
        if self._routes is None or self._routes[0] != t_s:
            self._routes = (t_s, replay_routes(self.replay, t_s))
        return self._routes[1]

    async def node(self, name: str, t_s: float | None) -> dict:
        names = self.replay.scene.node_names
        t = float(t_s or 0.0)
        routes = await asyncio.to_thread(self._routes_at, t)
        return {"name": name, "routes": node_routes(routes, names, names.index(name)), "routes_from": "oracle",
                "t_s": t}

    async def path(self, a: str, b: str, t_s: float | None) -> dict:
        names = self.replay.scene.node_names
        t = float(t_s or 0.0)
        routes = await asyncio.to_thread(self._routes_at, t)
        return {**path_message(routes, names, names.index(a), names.index(b)), "t_s": t}

    async def seek(self, t_s: float) -> dict:
        t = min(max(float(t_s), 0.0), self.replay.duration_s)
        return await asyncio.to_thread(self.replay.frame, t)


def make_app(source) -> web.Application:
    hub = source.hub
    land = json.dumps(land_runs())

    async def index(request):
        return web.FileResponse(STATIC / "index.html")

    async def land_json(request):
        return web.Response(text=land, content_type="application/json")

    async def websocket(request):
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=1 << 22)
        ws.send_json = functools.partial(ws.send_json, dumps=STRICT_JSON)  # NaN or inf raises, never sent
        await ws.prepare(request)
        await ws.send_json(hub.scene_message())
        sent_links = 0

        async def send_links():
            nonlocal sent_links
            if hub.links.version > sent_links:
                await ws.send_json(hub.links.message(sent_links))
                sent_links = hub.links.version

        async def push():  # live: every new frame, the newest only
            seen = -1
            while not ws.closed:
                if hub.frame is not None and hub.frame_seq != seen:
                    seen = hub.frame_seq
                    await send_links()
                    await ws.send_json(hub.frame)
                await hub.changed.wait()

        pusher = asyncio.ensure_future(push()) if hub.live else None
        if not hub.live:
            await send_links()
            await ws.send_json(hub.frame)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                q = json.loads(msg.data)
                kind, ident = q.get("type"), q.get("id")
                try:
                    if kind == "seek" and not hub.live:
                        answer = await source.seek(q["t_s"])
                        await send_links()
                        await ws.send_json({**answer, "id": ident})
                        continue
                    if kind == "node":
                        answer = await source.node(q["name"], q.get("t_s"))
                    elif kind == "path":
                        answer = await source.path(q["a"], q["b"], q.get("t_s"))
                    else:
                        answer = {"error": f"unknown question {kind!r}"}
                except (KeyError, ValueError) as exc:
                    answer = {"error": f"{type(exc).__name__}: {exc}"}
                answer = {k: v for k, v in answer.items() if k not in ("type", "id")}  # the run's own ids
                try:
                    await ws.send_json({"type": "answer", "id": ident, "question": kind, **answer})
                except ValueError as exc:  # not JSON (NaN): say so rather than leave the page waiting
                    await ws.send_json({"type": "answer", "id": ident, "question": kind, "error": str(exc)})
        finally:
            if pusher is not None:
                pusher.cancel()
        return ws

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/land.json", land_json)
    app.router.add_get("/ws", websocket)
    app.router.add_static("/static/", STATIC)
    return app


def serve(source, host: str, port: int, on_url=None) -> None:
    """Run the server until its loop stops (live: the run ended; replay: Ctrl-C)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    runner = web.AppRunner(make_app(source), access_log=None)
    loop.run_until_complete(runner.setup())
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))  # bound here, so that port 0 (any free port) is known before anyone connects
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    site = web.SockSite(runner, sock)
    loop.run_until_complete(site.start())
    bound = sock.getsockname()[:2]
    url = f"http://{'[' + bound[0] + ']' if ':' in bound[0] else bound[0]}:{bound[1]}/"
    source.start(loop)
    if on_url:
        on_url(url)
    try:
        loop.run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        loop.run_until_complete(runner.cleanup())
        loop.close()


def serve_replay(run_dir: str | Path, host: str, port: int, on_url=None) -> None:
    """``lasernet web RUN_DIR``: replay a finished run."""
    serve(ReplaySource(ReplayRun(run_dir)), host, port, on_url)


def main(argv=None) -> None:
    """``python -m lasernet.web.server --live-fd FD ...``: the live server a run starts (see the module docstring)."""
    from ..spec.scenario import load_scenario

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--live-fd", type=int, required=True)
    p.add_argument("--scenario", required=True)
    p.add_argument("--start", required=True)
    p.add_argument("--bind", default="127.0.0.1:0")
    p.add_argument("--speed", type=float, default=1.0)
    p.add_argument("--run-dir")
    args = p.parse_args(argv)
    os.nice(10)  # the view yields the CPU to the run it shows: a tick never waits for a frame being encoded
    scenario = load_scenario(args.scenario)
    start = dt.datetime.fromisoformat(args.start)
    conn = Connection(args.live_fd)

    def hub(names, n_satellites):
        return Hub(Scene(scenario, start, names, n_satellites), True, None, args.speed)

    source = LiveSource(conn, hub)
    host, _, port = args.bind.rpartition(":")
    try:
        serve(source, host, int(port), on_url=lambda url: conn.send({"type": "hello", "url": url}))
    except OSError as exc:  # e.g. the port is taken: the driver reads the last line of stderr
        print(f"--web {args.bind}: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
