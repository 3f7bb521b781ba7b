"""Run an emulation for the command line: progress while building, signals, the optional CLI, the summary.

``lasernet up`` calls :func:`run`. SIGINT and SIGTERM stop the tick loop and lead to the normal teardown (the
same path as the end of ``--duration``); a crash tears down too. The returned summary holds the run directory,
tick statistics and the probe fidelity (median and p99 of measured - predicted RTT per pair).

``lasernet run`` calls :func:`experiment`: the same run for the workload's duration, then the report
(:func:`lasernet.measure.report.build_report`) built from the run directory after the teardown.
"""

from __future__ import annotations

import json
import signal
import threading

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ..emulation.coordinator import Emulation
from ..emulation.links import BackendUnavailable
from ..emulation.webfeed import WebError
from ..errors import LasernetError as UserError  # a one-line problem: exit 2
from ..routing.daemons import RoutingDaemonError


def run(scenario, *, duration_s=None, speed=1.0, start=None, links="auto", tick_s=0.1, run_dir=None,
        open_cli=False, console=None, routing="auto", keep_awake=None, cluster=None, web=None,
        on_start=None) -> dict:
    """Run ``scenario`` (see the module docstring); ``on_start(emulation)``, if given, is called once it is up,
    before its ticks (an experiment program's hook, e.g. to weight its servers' cgroup)."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM,)}
    if not open_cli:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, lambda *_: stop.set())
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TimeElapsedColumn(), console=console, transient=True)
    tasks: dict[str, int] = {}

    def report(what: str, done: int, total: int) -> None:
        if what not in tasks:
            tasks[what] = progress.add_task(what, total=total)
        progress.update(tasks[what], completed=done, total=total)

    emu = Emulation(scenario, links=links, speed=speed, tick_s=tick_s, start=start, duration_s=duration_s,
                    run_dir=run_dir, progress=report, routing=routing,
                    keep_awake=keep_awake, cluster=cluster, web=web)
    try:
        with progress:
            try:
                emu.start()
            except (BackendUnavailable, RoutingDaemonError, WebError) as exc:  # one line; torn down
                raise UserError(str(exc)) from None
        if on_start is not None:
            on_start(emu)
        if console and emu.cluster_report:
            rep = emu.cluster_report
            console.print(f"lasernet: {len(rep['machines'])} machines: " + ", ".join(
                f"{m['name']} {m['ip']} {m['routers']} routers" for m in rep["machines"])
                + f"; {rep['cross_machine_links']} of {rep['links']} links cross machines")
        if console:
            console.print(f"lasernet: {len(emu.nodes)} nodes up, run {emu.run_id}, results in {emu.run_dir}"
                          + ("" if duration_s is None else f"; running {duration_s:g} s") + (
                              "" if open_cli else " (Ctrl-C stops)"))
        if console and emu.web is not None:
            console.print(f"lasernet: live view at {emu.web.url}", highlight=False)
        if open_cli:
            from .console import ClusterCLI, LasernetCLI

            ticker = threading.Thread(target=emu.run, kwargs={"duration_s": duration_s, "stop": stop},
                                      name="lasernet-ticks", daemon=True)
            ticker.start()
            (ClusterCLI if emu.cluster else LasernetCLI)(emu)
            stop.set()
            ticker.join(timeout=10)
        else:
            emu.run(duration_s, stop=stop)
    finally:
        recorder = emu.recorder
        emu.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary = {"run_dir": str(emu.run_dir), "run_id": emu.run_id}
    if recorder is not None:
        summary.update(recorder.summary)
    if emu.probes is not None:
        summary["probes"] = emu.probes.summary
    if emu.workload_summary:
        summary["workload"] = emu.workload_summary
    (emu.run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def experiment(scenario, *, duration_s=None, report=True, console=None, **options) -> dict:
    """Run ``scenario`` with its workload for ``duration_s`` (default ``workload.duration_s``), then the report."""
    if duration_s is None:
        duration_s = scenario.workload.duration_s
    if duration_s is None:
        raise UserError(f"{scenario.source.name}: workload.duration_s: not set; add it to the scenario or give "
                        f"--duration S")
    summary = run(scenario, duration_s=duration_s, console=console, **options)
    if report:
        from ..measure.report import build_report

        with Progress(TextColumn("report: {task.description}"), TimeElapsedColumn(), console=console,
                      transient=True) as progress:
            task = progress.add_task("reading the run", total=None)
            summary["report"] = str(build_report(summary["run_dir"],
                                                 progress=lambda what: progress.update(task, description=what)))
    return summary
