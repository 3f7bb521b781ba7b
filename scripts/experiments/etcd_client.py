"""An etcd client on the ground: timed PUTs and linearizable GETs, and (client 0) the cluster's leader over time.

Run by a workload command on ground nodes; ``SERVERS`` names the etcd members (comma-separated node names, their
addresses come from ``LASERNET_NODES``). Client ``LASERNET_INDEX`` k talks to member k mod n, as a client pinned
to one endpoint does; etcd forwards writes to the leader, so a PUT costs the client's path to its member plus a
Raft round from the leader to a quorum. Requests go every 1/``RATE_HZ`` s through etcd's JSON gateway (v3 API
over HTTP, no extra library) on one kept-alive connection (so a request's latency holds no TCP handshake; after
an error the next request reconnects, and that one does), each with a ``TIMEOUT_S`` timeout.

Outputs, in the job's working directory: ``requests.csv`` (``t_s,op,endpoint,latency_ms,ok,error``),
``latency-windows.csv`` (per ``WINDOW_S`` window and op: count, errors, p50/p90/p99 latency), and from client 0
``leader.csv`` (``t_s,leader,term``: every leader change seen by polling each member's status every 0.5 s).
Metrics for the report (``put_latency_ms``, ``get_latency_ms``, ``request_errors``, ``raft_term``,
``leader_changes``) go through :class:`lasernet.measure.appmetrics.Metrics`. SIGTERM ends it cleanly (exit 0).
"""

import base64
import csv
import http.client
import json
import os
import signal
import sys
import threading
import time

import numpy as np

from lasernet.measure.appmetrics import Metrics

STOP = threading.Event()


class Endpoint:
    """One etcd member's JSON gateway over a kept-alive HTTP connection (reopened after any error)."""

    def __init__(self, ip: str, timeout_s: float):
        self.ip, self.timeout_s, self.conn = ip, timeout_s, None

    def call(self, path: str, body: dict) -> dict:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.ip, 2379, timeout=self.timeout_s)
        try:
            self.conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            resp = self.conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                raise OSError(f"HTTP {resp.status}")
            return json.loads(data or b"{}")
        except BaseException:
            self.conn.close()
            self.conn = None
            raise


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def watch_leader(servers: dict, metrics: Metrics, timeout_s: float) -> None:
    """Poll every member's status; write leader.csv whenever the leader (or term) seen changes."""
    endpoints = {name: Endpoint(ip, timeout_s) for name, ip in servers.items()}
    names_by_id: dict[str, str] = {}
    last = None
    changes = 0
    with open("leader.csv", "w", newline="", buffering=1) as f:
        w = csv.writer(f)
        w.writerow(["t_s", "leader", "term"])
        while not STOP.wait(0.5):
            seen = []
            for name, endpoint in endpoints.items():
                try:
                    st = endpoint.call("/v3/maintenance/status", {})
                except (OSError, ValueError):
                    continue
                names_by_id[st["header"]["member_id"]] = name
                seen.append((int(st.get("raftTerm", 0)), st.get("leader", "")))
            if not seen:
                continue
            term, leader_id = max(seen)
            leader = names_by_id.get(leader_id, leader_id) or "(none)"
            if last is not None and leader != last[0]:
                changes += 1
            if (leader, term) != last:
                w.writerow([f"{metrics.now_s():.3f}", leader, term])
                last = (leader, term)
            metrics.record("raft_term", term)
            metrics.record("leader_changes", changes)


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: STOP.set())
    nodes = json.load(open(os.environ["LASERNET_NODES"]))
    names = [n for n in os.environ["SERVERS"].split(",") if n]
    servers = {n: nodes[n]["ip"] for n in names}
    index = int(os.environ.get("LASERNET_INDEX", "0"))
    endpoint = names[index % len(names)]
    rate_hz = float(os.environ.get("RATE_HZ", "5"))
    timeout_s = float(os.environ.get("TIMEOUT_S", "3"))
    window_s = float(os.environ.get("WINDOW_S", "10"))
    me = os.environ.get("LASERNET_NODE", "client")
    metrics = Metrics()
    if index == 0:
        threading.Thread(target=watch_leader, args=(servers, metrics, 1.0), daemon=True).start()
    conn = Endpoint(servers[endpoint], timeout_s)
    rows = []
    seq = 0
    next_at = time.monotonic()
    with open("requests.csv", "w", newline="", buffering=1) as f:
        w = csv.writer(f)
        w.writerow(["t_s", "op", "endpoint", "latency_ms", "ok", "error"])
        while not STOP.is_set():
            for op, path, body in (("put", "/v3/kv/put", {"key": b64(f"{me}/{seq % 100}"), "value": b64(str(seq))}),
                                   ("get", "/v3/kv/range", {"key": b64(f"{me}/{seq % 100}")})):
                t_s = metrics.now_s()
                start = time.monotonic()
                error = ""
                try:
                    conn.call(path, body)
                except (OSError, ValueError, http.client.HTTPException) as exc:
                    error = str(exc) if str(exc).startswith("HTTP") else type(exc).__name__
                latency_ms = (time.monotonic() - start) * 1e3
                rows.append((t_s, op, latency_ms, not error))
                w.writerow([f"{t_s:.3f}", op, endpoint, f"{latency_ms:.3f}", int(not error), error])
                if error:
                    metrics.record("request_errors", 1, t_s)
                else:
                    metrics.record(f"{op}_latency_ms", latency_ms, t_s)
            seq += 1
            next_at += 1.0 / rate_hz
            STOP.wait(max(0.0, next_at - time.monotonic()))
    write_windows(rows, window_s)
    return 0


def write_windows(rows, window_s: float) -> None:
    with open("latency-windows.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_start_s", "t_end_s", "op", "requests", "errors", "p50_ms", "p90_ms", "p99_ms"])
        if not rows:
            return
        t = np.array([r[0] for r in rows])
        for lo in np.arange(np.floor(t.min() / window_s) * window_s, t.max() + 1e-9, window_s):
            for op in ("put", "get"):
                sel = [r for r in rows if lo <= r[0] < lo + window_s and r[1] == op]
                ok = np.array([r[2] for r in sel if r[3]])
                pct = [f"{np.percentile(ok, p):.3f}" if len(ok) else "" for p in (50, 90, 99)]
                w.writerow([f"{lo:g}", f"{lo + window_s:g}", op, len(sel), sum(not r[3] for r in sel), *pct])


if __name__ == "__main__":
    sys.exit(main())
