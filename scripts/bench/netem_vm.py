"""Benchmark: the cost of changing netem parameters on many veth ends: one netlink batch, one ``tc -batch``, one tc per end.

The netem link backend changes the delay of every link whose length changed at every tick, so this cost bounds
how many links a tick can update. Run it where sch_netem exists, e.g. inside the test VM::

    scripts/vmtest.sh --timeout 1800 -- python scripts/bench/netem_vm.py --pairs 1500

It makes one namespace ``lnbench-<pid>`` holding ``--pairs`` veth pairs (``a<i>`` <-> ``b<i>``), adds a netem
qdisc to every end (2 x pairs qdiscs, e.g. 3,000), then times, end to end (process start included):

- ``netlink``: what the netem link backend does each tick: one ``RTM_NEWQDISC`` change per end (delay, loss,
  rate, as :meth:`lasernet.net.rtnl.Netlink.netem` builds them) queued on one rtnetlink socket kept
  open in the namespace and sent in one commit (as few datagrams as the socket buffer allows); the median of
  ``--repeats`` updates, each to a new delay, message building included;
- ``batch``: one ``tc -batch`` process holding one ``qdisc change ... netem delay`` line per end;
- ``per-process``: one ``tc qdisc change`` process per end, run one after another. By default only the first
  300 ends are timed and the time scaled to all (``--sample 0`` times all): under QEMU TCG one tc process takes
  ~0.2 s, so 3,000 of them would take ten minutes.

It checks that the change took (reading back every qdisc), prints milliseconds per qdisc and per link (a link
being one pair: two qdiscs) for both ways and their ratio, writes them as JSON to ``$LASERNET_VM_RESULTS`` when
set, and removes the namespace. A benchmark, not a test: it asserts no timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import statistics
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing
from lasernet.net.rtnl import Netlink  # noqa: E402


def run(argv: list[str], stdin: str | None = None) -> str:
    r = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(argv[:6])} ... exited {r.returncode}: {r.stderr.strip()[:500]}")
    return r.stdout


def batch(ns: str, tool: str, lines: list[str]) -> float:
    """Run ``<tool> -n ns -batch FILE`` on the lines; return the wall seconds it took (process start included)."""
    with tempfile.NamedTemporaryFile("w", suffix=".batch") as f:
        f.write("\n".join(lines) + "\n")
        f.flush()
        t = time.perf_counter()
        run([tool, "-n", ns, "-batch", f.name])
        return time.perf_counter() - t


def delays_ms(ns: str) -> dict[str, float]:
    """The netem delay of every root qdisc in the namespace, by device name."""
    out = json.loads(run(["tc", "-n", ns, "-j", "qdisc", "show"]))
    return {q["dev"]: q["options"]["delay"]["delay"] * 1e3 for q in out if q.get("kind") == "netem"}


def check_all(ns: str, ends: list[str], delay_ms: int) -> None:
    got = delays_ms(ns)
    wrong = [e for e in ends if abs(got.get(e, -1) - delay_ms) > 1e-6]
    if wrong:
        sys.exit(f"{len(wrong)} ends do not have delay {delay_ms} ms, e.g. {wrong[:5]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1500, help="veth pairs (qdiscs = 2 x pairs; default 1500)")
    parser.add_argument("--repeats", type=int, default=5, help="netlink updates to time (median; default 5)")
    parser.add_argument("--sample", type=int, default=300,
                        help="time one tc process per end on only this many ends and scale; 0: all (default 300)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    ns = f"lnbench-{os.getpid()}"
    ends = [f"{side}{i}" for i in range(args.pairs) for side in "ab"]
    result: dict = {"kernel": platform.release(), "pairs": args.pairs, "qdiscs": len(ends)}
    run(["ip", "netns", "add", ns])
    try:
        t = time.perf_counter()
        batch(ns, "ip", [f"link add a{i} type veth peer name b{i}" for i in range(args.pairs)]
              + [f"link set {e} up" for e in ends])
        result["setup_veth_s"] = time.perf_counter() - t
        result["setup_netem_add_s"] = batch(ns, "tc", [f"qdisc add dev {e} root netem delay 10ms" for e in ends])
        check_all(ns, ends, 10)
        print(f"{len(ends)} veth ends in {ns}: veth pairs made in {result['setup_veth_s']:.1f} s, "
              f"netem added in {result['setup_netem_add_s']:.1f} s", flush=True)

        # One netlink commit for all ends, on a socket kept open (as the backend keeps one per namespace).
        with Netlink(f"/run/netns/{ns}") as nl:
            index = {name: link.index for name, link in nl.links().items()}
            netlink_s = []
            for r in range(args.repeats):
                delay_s = (20 + r) * 1e-3
                t = time.perf_counter()
                for e in ends:
                    nl.netem(index[e], delay_s=delay_s, loss=0.001, rate_bps=10e9)
                nl.commit()
                netlink_s.append(time.perf_counter() - t)
                check_all(ns, ends, 20 + r)
        netlink_med_s = statistics.median(netlink_s)

        # One tc process for all ends.
        batch_s = batch(ns, "tc", [f"qdisc change dev {e} root netem delay 11ms" for e in ends])
        check_all(ns, ends, 11)

        # One tc process per end.
        timed = ends[:args.sample] if 0 < args.sample < len(ends) else ends
        t = time.perf_counter()
        for e in timed:
            run(["tc", "-n", ns, "qdisc", "change", "dev", e, "root", "netem", "delay", "12ms"])
        per_process_s = (time.perf_counter() - t) * len(ends) / len(timed)
        check_all(ns, timed, 12)

        result.update({
            "netlink_s": netlink_med_s,
            "netlink_runs_s": netlink_s,
            "netlink_ms_per_qdisc": netlink_med_s * 1e3 / len(ends),
            "ratio_per_process_vs_netlink": per_process_s / netlink_med_s,
            "ratio_tc_batch_vs_netlink": batch_s / netlink_med_s,
            "batch_s": batch_s,
            "per_process_s": per_process_s,
            "per_process_timed_ends": len(timed),
            "batch_ms_per_qdisc": batch_s * 1e3 / len(ends),
            "per_process_ms_per_qdisc": per_process_s * 1e3 / len(ends),
            "ratio": per_process_s / batch_s,
        })
        scaled = f" (timed on {len(timed)} ends, scaled)" if len(timed) < len(ends) else ""
        print(f"tc -batch, one process:   {batch_s:8.2f} s for {len(ends)} qdiscs = "
              f"{result['batch_ms_per_qdisc']:.3f} ms per qdisc, {2 * result['batch_ms_per_qdisc']:.3f} ms per link")
        print(f"one tc process per qdisc: {per_process_s:8.2f} s for {len(ends)} qdiscs = "
              f"{result['per_process_ms_per_qdisc']:.3f} ms per qdisc, "
              f"{2 * result['per_process_ms_per_qdisc']:.3f} ms per link{scaled}")
        print(f"one netlink commit:       {netlink_med_s:8.3f} s for {len(ends)} qdiscs = "
              f"{result['netlink_ms_per_qdisc']:.4f} ms per qdisc, {2 * result['netlink_ms_per_qdisc']:.4f} ms per link "
              f"(median of {len(netlink_s)}: " + ", ".join(f"{x:.3f}" for x in netlink_s) + " s)")
        print(f"ratio per-process / batch: {result['ratio']:.1f}x; per-process / netlink: "
              f"{result['ratio_per_process_vs_netlink']:.0f}x; tc -batch / netlink: "
              f"{result['ratio_tc_batch_vs_netlink']:.1f}x")
    finally:
        t = time.perf_counter()
        subprocess.run(["ip", "netns", "del", ns])
        print(f"namespace {ns} removed in {time.perf_counter() - t:.1f} s")
    out_dir = os.environ.get("LASERNET_VM_RESULTS")
    if out_dir:
        Path(out_dir, "bench_netem.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
