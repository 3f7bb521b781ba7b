"""The ``lasernet`` command: parse arguments, call the library, render results with rich. Nothing else.

Every :class:`~lasernet.errors.LasernetError` (a bad scenario file, a bad option, no run to act on) prints one
line naming the file and field or the option, and the fix, and exits with code 2 without leaving files behind:
options are checked, and output paths tried, before any work. The live presentation of a run sits beside the
commands: :mod:`.runner` (progress, signals, the summary) and :mod:`.console` (Mininet's CLI with lasernet's
commands).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from .. import (LasernetError, OptionError, __version__, describe, load_scenario, parse_time, plan as plan_window,
               resolve_scenario, shipped_topologies)
from ..timeline import check_window

err_console = Console(stderr=True)
stdout = Console()  # not "console": lasernet.cli.console is the submodule


class _Group(click.Group):
    """Turns a LasernetError (a bad scenario, a bad option, ...) and click's own usage errors (an option that is
    not a number, a missing argument) into one line on stderr and exit code 2."""

    def main(self, *args, **kwargs):
        kwargs.pop("standalone_mode", None)
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as exc:
            where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
            _one_line(exc.format_message() + where)
            sys.exit(2)
        except click.ClickException as exc:
            _one_line(exc.format_message())
            sys.exit(exc.exit_code)
        except click.Abort:
            _one_line("aborted")
            sys.exit(1)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LasernetError as exc:
            _one_line(str(exc))
            sys.exit(2)


def _one_line(message: str) -> None:
    err_console.print(Text("error: ", style="bold red") + Text(message), highlight=False, soft_wrap=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lasernet")
def main():
    """lasernet: laser inter-satellite networks, from orbital geometry to an emulated network.

    SCENARIO is a scenario YAML file or the name of a shipped topology (see `lasernet topologies`).
    """


@main.command()
@click.argument("scenario")
@click.option("--start", metavar="ISO", help="Window start, e.g. 2026-01-01T00:00:00Z (default: scenario epoch).")
@click.option("--duration", "duration_s", type=float, metavar="S", help="Window length in seconds.")
@click.option("--step", "step_s", type=float, metavar="S", help="Sampling step in seconds.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the timeline to this .npz file.")
@click.option("--events", type=click.Path(dir_okay=False), help="Write link up/down events (and satellites' "
              "sunlight, power states, upsets and manoeuvres) to this CSV file.")
@click.option("--power", "power_csv", type=click.Path(dir_okay=False), help="Write each satellite's illumination, "
              "battery SoC, power state and CPU quota per step to this CSV file (the scenario's power: section).")
def plan(scenario, start, duration_s, step_s, output, events, power_csv):
    """Compute which links are up, their light delay and outage causes over a time window."""
    sc = load_scenario(resolve_scenario(scenario))
    start, duration_s, step_s = check_window(sc, start, duration_s, step_s, names={
        "start": "--start", "duration_s": "--duration", "step_s": "--step"})
    for option, path in (("--output", output), ("--events", events), ("--power", power_csv)):
        _check_writable(option, path)
    with _progress() as bar:
        task = bar.add_task(f"planning {sc.name}", total=None)
        timeline = plan_window(sc, start=start, duration_s=duration_s, step_s=step_s,
                            progress=lambda done, total: bar.update(task, completed=done, total=total))
    if not sc.policy.empty:  # a residency rule its plan can never meet is refused before anything is written
        from ..routing.policy import check_plan

        check_plan(timeline, sc.source.name)
    _render_summary(timeline)
    if output:
        timeline.save(output)
        stdout.print(f"timeline: {output}")
    if events:
        n = timeline.write_events_csv(events)
        stdout.print(f"events:   {events} ({n} rows)")
    if power_csv:
        n = timeline.write_power_csv(power_csv)
        stdout.print(f"power:    {power_csv} ({n} rows)")


def _live_options(command):
    """The options `lasernet up` and `lasernet run` share: clock, link backend and where results go."""
    for option in reversed([
        click.option("--speed", type=float, default=1.0, show_default=True, help="Emulated seconds per wall second."),
        click.option("--start", metavar="ISO", help="Emulated start time (default: scenario epoch)."),
        click.option("--links", type=click.Choice(["auto", "netem", "delayline"]), default="auto", show_default=True,
                     help="Link backend."),
        click.option("--tick", "tick_s", type=float, default=0.1, show_default=True,
                     help="Tick period, wall seconds."),
        click.option("--run-dir", type=click.Path(file_okay=False),
                     help="Where results go (default ./runs/<run-id>)."),
        click.option("--cluster", metavar="HOST:PORT", help="Spread the routers over the machines of the Ray "
                     "cluster whose head is HOST:PORT (run on the head; see the README's Cluster section)."),
        click.option("--web", metavar="[HOST:]PORT", help="Serve a live view of the run in a browser at "
                     "http://HOST:PORT/ (HOST default 127.0.0.1: this machine only; PORT 0: any free port)."),
    ]):
        command = option(command)
    return command


@main.command()
@click.argument("scenario")
@click.option("--duration", "duration_s", type=float, metavar="S", help="Run this many wall seconds (default: "
              "until Ctrl-C).")
@_live_options
@click.option("--cli", "open_cli", is_flag=True,
              help="Open a prompt while running: Mininet's CLI with links, path, orbit (on a cluster: those, "
                   "nodes and NODE COMMAND).")
@click.option("--routing", type=click.Choice(["auto", "tick", "background"]), default="auto", show_default=True,
              help="Oracle routes computed in every tick (exact) or in a background process (large networks; "
                   "routes lag one computation). auto: background above 400 nodes. (Routing daemons are chosen "
                   "by the scenario's routing: section.)")
@click.option("--keep-awake/--no-keep-awake", default=None,
              help="Keep every CPU out of idle halt while up (one SCHED_IDLE spinner per CPU): on a VM, wake-ups "
                   "then take ~20 us instead of up to milliseconds, and delays stay true to the plan. Default: on, "
                   "unless LASERNET_KEEP_AWAKE=0.")
def up(scenario, duration_s, speed, start, links, tick_s, run_dir, cluster, web, open_cli, routing, keep_awake):
    """Emulate SCENARIO live: a Mininet network of routers whose links follow the orbit.

    Routes come from the oracle, or from real routing daemons on every router (OSPF, IS-IS, Babel, BGP with FRR
    or BIRD) when the scenario has a routing: section; their convergence goes to the run directory.
    """
    from . import runner

    _check_live_options(duration_s, speed, tick_s)
    _require_root("lasernet up")
    sc = load_scenario(resolve_scenario(scenario))
    if start is not None and parse_time(start) is None:
        raise OptionError("--start", f"must be an ISO 8601 UTC time like 2026-01-01T00:00:00Z, got {start!r}")
    summary = runner.run(sc, duration_s=duration_s, speed=speed, start=parse_time(start) if start else None,
                         links=links, tick_s=tick_s, run_dir=run_dir, open_cli=open_cli, console=err_console,
                         routing=routing, keep_awake=keep_awake, cluster=cluster, web=_web_option(web))
    _render_run(summary)
    _render_workload(summary.get("workload") or {})


@main.command(name="run")
@click.argument("scenario")
@click.option("--duration", "duration_s", type=float, metavar="S", help="Run this many wall seconds (default: the "
              "scenario's workload.duration_s).")
@_live_options
@click.option("--routing", type=click.Choice(["auto", "tick", "background"]), default="auto", show_default=True,
              help="As for `lasernet up`.")
@click.option("--no-report", is_flag=True, help="Skip report.html (build it later with `lasernet report`).")
def run_(scenario, duration_s, speed, start, links, tick_s, run_dir, cluster, web, routing, no_report):
    """Run an experiment: emulate SCENARIO, run its workload, collect, write report.html, tear down.

    Exits 1 if a workload command failed (each failure is listed with its node and exit code).
    """
    from . import runner

    _check_live_options(duration_s, speed, tick_s)
    _require_root("lasernet run")
    sc = load_scenario(resolve_scenario(scenario))
    if start is not None and parse_time(start) is None:
        raise OptionError("--start", f"must be an ISO 8601 UTC time like 2026-01-01T00:00:00Z, got {start!r}")
    summary = runner.experiment(sc, duration_s=duration_s, report=not no_report, speed=speed,
                                start=parse_time(start) if start else None, links=links, tick_s=tick_s,
                                run_dir=run_dir, console=err_console, routing=routing, cluster=cluster,
                                web=_web_option(web))
    _render_run(summary)
    failed = _render_workload(summary.get("workload") or {})
    if summary.get("report"):
        stdout.print(f"report: {summary['report']}")
    if failed:
        sys.exit(1)


def _web_option(web: str | None) -> str | None:
    """Check ``--web`` before anything is built (one line naming the option, exit 2)."""
    if web is not None:
        from ..emulation.webfeed import parse_bind

        parse_bind(web)
    return web


@main.command()
@click.argument("run_dir", type=click.Path())
@click.option("--bind", "bind", default="127.0.0.1:8765", show_default=True, metavar="[HOST:]PORT",
              help="Where to serve the page (PORT 0: any free port).")
def web(run_dir, bind):
    """Replay a finished run in a browser: the map with play, pause, speed and seek, node tables and oracle
    paths computed on the replayed state (no root; Ctrl-C stops)."""
    from ..emulation.webfeed import parse_bind
    from ..web.scene import ReplayRun
    from ..web.server import ReplaySource, serve

    host, port = parse_bind(bind, "--bind")
    source = ReplaySource(ReplayRun(run_dir))
    try:
        serve(source, host, port, on_url=lambda url: stdout.print(f"web: {url} (replaying {run_dir}; Ctrl-C "
                                                                   f"stops)", highlight=False))
    except OSError as exc:
        raise OptionError("--bind", f"cannot serve on {bind}: {exc.strerror or exc}") from None


@main.command()
@click.argument("run_dir", type=click.Path())
def report(run_dir):
    """Rebuild RUN_DIR/report.html (and RUN_DIR/plots/*.png) from the files of a finished run; no root needed."""
    from ..measure.report import build_report

    with Progress(TextColumn("report: {task.description}"), TimeElapsedColumn(), console=err_console,
                  transient=True) as bar:
        task = bar.add_task("reading the run", total=None)
        path = build_report(run_dir, progress=lambda what: bar.update(task, description=what))
    stdout.print(f"report: {path}")


@main.command()
@click.argument("scenario")
@click.option("--at", "at", metavar="ISO", help="The instant, e.g. 2026-01-01T00:10:00Z (default: scenario epoch).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="map.png", show_default=True,
              help="PNG file to write.")
def show(scenario, at, output):
    """Draw a map of SCENARIO at one instant: satellites (sunlit, penumbra, umbra), ground tracks, ISLs, ground
    links, the Earth's night side (offline, no root)."""
    from ..measure.report import render_map

    sc = load_scenario(resolve_scenario(scenario))
    when, _, _ = check_window(sc, at, 0.0, 1.0, names={"start": "--at"})
    if not output.lower().endswith(".png"):
        raise OptionError("--output", f"must be a .png file, got {output!r}")
    _check_writable("--output", output)
    with _progress() as bar:
        bar.add_task(f"drawing {sc.name}", total=None)
        path = render_map(sc, when, output)
    stdout.print(f"map: {path}")


def _query_options(command):
    """The options `lasernet path` and `lasernet routes` share: the instant, the run it belongs to, the output."""
    for option in reversed([
        click.option("--at", "at", metavar="TIME", default="0", show_default=True,
                     help="Emulated time: seconds since the run's start, or an ISO 8601 UTC time like "
                          "2026-01-01T00:10:00Z."),
        click.option("--start", metavar="ISO", help="The run's start (default: the scenario epoch), as for "
                                                    "`lasernet up --start`."),
        click.option("--step", "step_s", type=float, metavar="S", help="Plan step in seconds (default: the "
                                                                       "scenario's plan.step_s)."),
        click.option("--plan", "plan_file", metavar="FILE", help="Query a plan `lasernet plan -o FILE` saved, "
                                                                 "in place of SCENARIO (--at counts from its start)."),
        click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text."),
    ]):
        command = option(command)
    return command


QUERY_NAMES = {"at": "--at", "start": "--start", "step_s": "--step", "source": "A", "destination": "B",
               "node": "NODE"}


@main.command(name="path")
@click.argument("args", nargs=-1, metavar="[SCENARIO] A B")
@_query_options
def path_(args, at, start, step_s, plan_file, as_json):
    """Print the oracle's shortest-delay path from node A to node B at emulated time --at (offline, no root).

    The link state is the one a run of SCENARIO from --start has at that time (or that of the saved --plan);
    prints the nodes, the hop count and the one-way light time. Between two sites a residency rule of the
    scenario's policy: governs, the path keeps to the nodes the rule allows, and a second line says what the path
    would be without the rule (the delay cost of sovereignty). Exits 1 if B cannot be reached from A.
    """
    from ..routing import query

    st, (a, b) = _query_state(args, ("A", "B"), at, start, step_s, plan_file)
    p = query.path(st, a, b, names=QUERY_NAMES)
    when = f"{_iso_s(st.at_utc)} ({st.t_s:g} s)"
    under = f" under residency rule {p.rule}" if p.rule else ""
    if as_json:
        free = p.unconstrained
        click.echo(json.dumps({"source": a, "destination": b, "at_utc": _iso_s(st.at_utc), "t_s": st.t_s,
                               "path": list(p.nodes), "hops": p.hops, "one_way_ms": _ms(p.one_way_s),
                               "rule": p.rule,
                               "unconstrained": None if free is None else {
                                   "path": list(free.nodes), "hops": free.hops, "one_way_ms": _ms(free.one_way_s)},
                               "sovereignty_cost_ms": None if p.sovereignty_cost_s is None else
                               _ms(p.sovereignty_cost_s)}))
    elif p.nodes:
        stdout.print(f"{a} -> {b} at {when}{under}: {p.hops} hops, one-way {p.one_way_s * 1e3:.6f} ms",
                     highlight=False, soft_wrap=True)
        stdout.print(" ".join(p.nodes), highlight=False, soft_wrap=True)
    else:
        stdout.print(f"{a} -> {b} at {when}{under}: no path (unreachable)", highlight=False, soft_wrap=True)
    if p.rule and not as_json:
        stdout.print(_without_rule(p), highlight=False, soft_wrap=True)
    if not p.nodes:
        sys.exit(1)


def _without_rule(p) -> str:
    """The line `lasernet path` prints under a governed pair's path: the path without the rule, and the cost."""
    free = p.unconstrained
    if free is None:
        return "without the rule: the same path" if p.nodes else "without the rule: unreachable too"
    where = f"{free.hops} hops, one-way {free.one_way_s * 1e3:.6f} ms: {' '.join(free.nodes)}"
    if not p.nodes:
        return f"without the rule: {where} (reachable only through nodes the rule forbids)"
    return f"without the rule: {where} (sovereignty costs {p.sovereignty_cost_s * 1e3:.6f} ms)"


@main.command()
@click.argument("args", nargs=-1, metavar="[SCENARIO] NODE")
@_query_options
def routes(args, at, start, step_s, plan_file, as_json):
    """Print NODE's forwarding table at emulated time --at: next hop, hops, one-way light time (offline, no root).

    One row per other node, by destination name, from the oracle over the link state a run of SCENARIO from
    --start has at that time (or that of the saved --plan); towards a site a residency rule governs with NODE, the
    route keeps to the nodes the rule allows (its rule column says which).
    """
    from ..routing import query

    st, (node,) = _query_state(args, ("NODE",), at, start, step_s, plan_file)
    rows = query.table(st, node, names=QUERY_NAMES)
    if as_json:
        click.echo(json.dumps({"node": node, "at_utc": _iso_s(st.at_utc), "t_s": st.t_s, "routes": [
            {"destination": r.destination, "next_hop": r.next_hop, "hops": r.hops, "one_way_ms": _ms(r.one_way_s),
             "rule": r.rule} for r in rows]}))
        return
    reachable = sum(r.next_hop is not None for r in rows)
    stdout.print(f"{node} at {_iso_s(st.at_utc)} ({st.t_s:g} s): {reachable} of {len(rows)} destinations "
                 f"reachable", highlight=False, soft_wrap=True)
    ruled = any(r.rule for r in rows)  # a residency rule governs some pairs: say which
    table = Table("destination", "next hop", "hops", "one-way ms", *(("rule",) if ruled else ()), box=None)
    for r in rows:
        table.add_row(r.destination, r.next_hop or "-", "-" if r.hops is None else str(r.hops),
                      "unreachable" if r.next_hop is None else f"{r.one_way_s * 1e3:.6f}",
                      *((r.rule or "",) if ruled else ()))
    stdout.print(table)


def _query_state(args, wanted: tuple[str, ...], at, start, step_s, plan_file):
    """The link state a query asks for (a scenario's run, or a saved plan) and the node names it was given."""
    from ..routing import query

    usage = f"SCENARIO {' '.join(wanted)}, or --plan FILE {' '.join(wanted)}"
    if plan_file is not None:
        if len(args) == len(wanted) + 1:
            raise OptionError("--plan", f"takes the place of SCENARIO ({args[0]!r}); give one of them")
        if len(args) != len(wanted):
            raise click.UsageError(f"expected {usage}, got {len(args)} arguments")
        for option, value in (("--start", start), ("--step", step_s)):
            if value is not None:
                raise OptionError(option, "a saved --plan has its own start and step; leave it out")
        return query.saved_state(query.load_plan(plan_file, option="--plan"), at, option="--at"), args
    if len(args) != len(wanted) + 1:
        raise click.UsageError(f"expected {usage}, got {len(args)} arguments")
    sc = load_scenario(resolve_scenario(args[0]))
    if not err_console.is_terminal:  # a pipe gets the answer alone
        return query.plan_at(sc, at, start=start, step_s=step_s, names=QUERY_NAMES), args[1:]
    with _progress() as bar:
        task = bar.add_task(f"planning {sc.name} up to --at", total=None)
        st = query.plan_at(sc, at, start=start, step_s=step_s, names=QUERY_NAMES,
                           progress=lambda done, total: bar.update(task, completed=done, total=total))
    return st, args[1:]


def _iso_s(moment) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(seconds: float) -> float | None:
    import math

    return seconds * 1e3 if math.isfinite(seconds) else None


@main.command()
@click.argument("run_id", required=False)
@click.option("--all", "everything", is_flag=True, help="Every run on this machine.")
def down(run_id, everything):
    """Remove exactly what a run created (namespaces, interfaces, processes); idempotent."""
    from ..emulation import state

    _require_root("lasernet down")
    runs = state.list_runs() if everything else [r for r in [state.find_run(run_id)] if r]
    if not runs:
        stdout.print("no lasernet run to take down" + (f" matching {run_id!r}" if run_id else ""))
        return
    for run in runs:
        removed = state.teardown(run)
        stdout.print(f"down: {run['run_id']}: stopped {removed['processes']} processes in its namespaces, "
                      f"driver {removed['driver']}, relay {removed['relay']}, {removed['files']} files, "
                      f"{removed['cgroups']} cgroups")
        if run.get("cluster"):  # every machine's share, removed on that machine through Ray
            from ..emulation import cluster

            try:
                lines = cluster.down(run)
            except LasernetError as exc:  # the cluster is gone: what of it is on this machine goes here
                lines = [f"{exc}"]
                for m in run["cluster"].get("machines", []):
                    share = state.find_run(m["run_id"])
                    if share is not None:
                        state.teardown(share)
                        lines.append(f"{m['name']} ({m['ip']}): its state file is on this machine: removed here")
            for line in lines:
                stdout.print(f"down: {run['run_id']}: {line}")


@main.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.argument("node")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--run", "run_id", help="Run id (default: the newest run).")
def exec_(node, command, run_id):
    """Run COMMAND inside NODE's namespace of a running emulation: lasernet exec sat-0-1 -- ip route.

    With routing daemons, `vtysh` (FRR) and `birdc` (BIRD) reach NODE's own daemons: the option naming its
    socket is added (lasernet exec sat-3-7 -- vtysh -c 'show ip ospf neighbor').
    """
    import os

    pid = _node_pid(node, run_id)
    if _run(run_id).get("cluster"):
        _cluster_exec(_run(run_id), node, list(command))
    routing = _run(run_id).get("routing") or {}
    command = list(command)
    if routing.get("dir") and command and command[0] == routing.get("shell"):
        from ..routing.daemons import make_shell_args

        command[1:1] = make_shell_args(routing, node)
    if _run(run_id).get("cgroups"):  # a server: run inside its cgroup (limits, power state), as its shell does
        from ..net.cgroups import join_group

        join_group(_run(run_id)["cgroups"], node, os.getpid())
    os.execvp("mnexec", ["mnexec", "-a", str(pid), *command])


@main.command()
@click.argument("a")
@click.argument("b")
@click.option("-c", "--count", default=5, show_default=True)
@click.option("--run", "run_id", help="Run id (default: the newest run).")
def ping(a, b, count, run_id):
    """Ping node B's loopback from node A in a running emulation."""
    import os

    run = _run(run_id)
    if b not in run["nodes"]:
        raise LasernetError(f"{run['run_id']}: unknown node {b!r}")
    pid = _node_pid(a, run_id)
    if run.get("cluster"):
        _cluster_exec(run, a, ["ping", "-c", str(count), run["nodes"][b]["loopback"]])
    os.execvp("mnexec", ["mnexec", "-a", str(pid), "ping", "-c", str(count), run["nodes"][b]["loopback"]])


@main.command()
@click.argument("target", metavar="NODE[:INTERFACE]")
@click.option("-f", "--filter", "filter_text", default="", metavar="FILTER",
              help="tcpdump filter expression, e.g. 'udp port 7000' (default: every packet).")
@click.option("-w", "--write", "output", required=True, type=click.Path(dir_okay=False), metavar="FILE.pcap",
              help="The pcap file to write (nanosecond stamps); FILE.pcap.json gets the node, interface, filter "
                   "and the mapping from its stamps to the run's emulated time.")
@click.option("--duration", "duration_s", type=float, metavar="S", help="Stop after S wall seconds (default: "
              "Ctrl-C, or the end of the run).")
@click.option("--run", "run_id", help="Run id (default: the newest run).")
def capture(target, filter_text, output, duration_s, run_id):
    """Capture packets on NODE's INTERFACE (default: any, every interface) of a running emulation into a pcap file.

    tcpdump runs in NODE's network namespace; Ctrl-C (or --duration, or the run going down) stops it and the file
    is complete. Emulated seconds of a packet: speed * (stamp - wall0_unix_ns / 1e9), from FILE.pcap.json.
    Not on a cluster run (--cluster) yet.
    """
    import datetime as dt
    import signal
    import subprocess
    import time

    from ..emulation.capture import clock_mapping, read_counts, tcpdump_argv

    _require_root("lasernet capture")
    # Ctrl-C stops it even when it was started in the background, which starts it with SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    node, _, interface = target.partition(":")
    interface = interface or "any"
    run = _run(run_id)
    if run.get("cluster"):
        raise LasernetError(f"{run['run_id']}: capture is not supported on a cluster run yet")
    pid = _node_pid(node, run_id)
    if interface != "any":
        have = _interfaces(pid)
        if interface not in have:
            raise LasernetError(f"{run['run_id']}: node {node} has no interface {interface!r} (it has "
                                f"{', '.join(have)}); name one, or leave :INTERFACE out for any")
    if duration_s is not None and not duration_s > 0:
        raise OptionError("--duration", f"must be a number > 0, got {duration_s:g}")
    _check_writable("--write", output)
    clock = run.get("clock") or {}
    mapping = None
    if clock.get("wall0_monotonic") is not None:
        mapping = clock_mapping(clock["wall0_monotonic"], clock["speed"], dt.datetime.fromisoformat(clock["start_utc"]))
    def emulated_now():
        return None if mapping is None else mapping["speed"] * (time.monotonic() - clock["wall0_monotonic"])

    log_path = Path(output + ".log")
    started_s = emulated_now()  # no packet in the file can be older: tcpdump starts after this
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(["nsenter", "-t", str(pid), "-n", "--", *tcpdump_argv(interface, output, filter_text)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_file,
                                start_new_session=True)  # Ctrl-C reaches it through us, once
    try:
        while proc.poll() is None and b"listening on" not in log_path.read_bytes():
            time.sleep(0.02)
        if proc.poll() is not None:  # a bad filter, an interface gone: tcpdump's own words, one line
            lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
            log_path.unlink(missing_ok=True)
            raise LasernetError(f"{run['run_id']}: tcpdump on {node}:{interface}: "
                                + (lines[-1] if lines else f"exited with {proc.returncode}"))
        Path(output + ".json").write_text(json.dumps({  # listening_s: when its "listening" line was seen (polled)
            "run_id": run["run_id"], "node": node, "interface": interface, "filter": filter_text,
            "started_s": started_s, "listening_s": emulated_now(), "clock": mapping}, indent=1))
        err_console.print(f"capturing on {node}:{interface} into {output} (Ctrl-C stops)", highlight=False,
                          soft_wrap=True)
        proc.wait(timeout=duration_s)
    except (KeyboardInterrupt, subprocess.TimeoutExpired):
        pass
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # as SIGINT for tcpdump, but never inherited ignored
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    counts = read_counts(log_path.read_text(errors="replace"))
    stdout.print(f"capture: {output}: {counts.get('captured', 0)} packets, {counts.get('dropped_by_kernel', 0)} "
                 f"dropped by the kernel", highlight=False, soft_wrap=True)


def _interfaces(pid: int) -> list[str]:
    """The interfaces of the network namespace process ``pid`` is in (/proc/PID/net/dev is that namespace's)."""
    try:
        lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    except OSError:
        return []
    return sorted(line.split(":", 1)[0].strip() for line in lines)


@main.command()
@click.option("--run", "run_id", help="Run id (default: the newest run).")
@click.option("--role", help="Only nodes of this role (satellite, ground-station, data-centre, city, server).")
def nodes(run_id, role):
    """List a running emulation's nodes: name, role, loopback address (identity) and shell PID."""
    run = _run(run_id)
    machines = (run.get("cluster") or {}).get("machines")
    table = Table("node", "role", "index", "loopback", "pid", *(["machine"] if machines else []), box=None)
    for name, info in run["nodes"].items():
        if role and info.get("role") != role:
            continue
        where = [f"{machines[info['machine']]['name']} {machines[info['machine']]['ip']}"] if machines else []
        table.add_row(name, info.get("role", ""), str(info.get("index", "")), info.get("loopback", ""),
                      str(info.get("pid", "")), *where)
    stdout.print(table)


@main.command()
@click.argument("run_id", required=False)
def status(run_id):
    """Show running emulations: scenario, nodes, links, emulated time, tick health."""
    import json

    from ..emulation import state
    from ..net.procs import same_process

    runs = state.list_runs() if run_id is None else [r for r in [state.find_run(run_id)] if r]
    if not runs:
        stdout.print("no lasernet run on this machine")
        return
    table = Table("run", "scenario", "driver", "nodes", "links up", "t (s)", "last tick ms", "overruns", box=None)
    for run in runs:
        drv = run.get("driver", {})
        alive = same_process(drv.get("pid"), drv.get("start"))
        st = {}
        path = Path(run["run_dir"]) / "status.json"
        if path.exists():
            try:
                st = json.loads(path.read_text())
            except ValueError:
                st = {}
        table.add_row(run["run_id"], run["scenario_name"], f"pid {drv.get('pid')} " + ("up" if alive else "GONE"),
                      str(len(run.get("nodes", {}))), f"{st.get('links_up', '-')}/{st.get('links_created', '-')}",
                      f"{st.get('t_s', 0):.1f}", f"{st.get('last_tick_ms', 0):.1f}", str(st.get("overruns", "-")))
    stdout.print(table)
    for run in runs:  # cluster runs: each machine, and the substrate's one-way delay between them
        cl = run.get("cluster")
        if not cl:
            continue
        st = {}
        path = Path(run["run_dir"]) / "status.json"
        if path.exists():
            try:
                st = json.loads(path.read_text()).get("cluster", {})
            except ValueError:
                pass
        nodes = cl.get("nodes", {})
        share = {m["name"]: sum(1 for n in nodes.values() if n["machine"] == k) for k, m in enumerate(cl["machines"])}
        stdout.print(f"{run['run_id']}: cluster {cl['address']}: " + ", ".join(
            f"{m['name']} {m['ip']} ({share[m['name']]} nodes)" for m in cl["machines"])
            + (f"; {st.get('cross_machine_links')} cross-machine links, substrate one-way ms "
               f"{st.get('substrate_one_way_ms')}, {st.get('below_substrate_links')} links below it" if st else ""))


def _check_writable(option: str, path: str | None) -> None:
    """Raise naming ``option`` unless a file can be written at ``path`` (tried with a temporary file, removed).

    Checked before any work, so that a long plan does not end in an error; directories are not created."""
    import os
    import tempfile

    if path is None:
        return
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise OptionError(option, f"{path} is a directory; give a file name")
    if not parent.is_dir():
        raise OptionError(option, f"directory {str(parent)!r} does not exist; create it first or write elsewhere")
    try:
        if target.exists():
            with target.open("r+b"):
                pass
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".check", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OptionError(option, f"cannot write {path} ({exc.strerror or exc}); choose a writable path") from None


def _check_live_options(duration_s, speed, tick_s) -> None:
    """The numbers `up` and `run` take must be finite and positive; the error names the option."""
    import math

    for option, value in (("--duration", duration_s), ("--speed", speed), ("--tick", tick_s)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise OptionError(option, f"must be a finite number > 0, got {value:g}")


def _require_root(what: str) -> None:
    import os

    if os.geteuid() != 0:
        raise LasernetError(f"{what}: needs root (network namespaces); run it with sudo")


def _run(run_id):
    from ..emulation import state

    run = state.find_run(run_id)
    if run is None:
        raise LasernetError("lasernet: no running emulation" + (f" matching {run_id!r}" if run_id else "")
                                + "; start one with `lasernet up`")
    if run.get("cluster"):  # a cluster run: its nodes are on the machines, listed in the coordinator's state
        run["nodes"] = run["cluster"].get("nodes", {})
    return run


def _cluster_exec(run: dict, node: str, argv: list[str]):
    """``exec``/``ping`` on a cluster run: run in the node's namespace on its machine (through Ray), exit with it."""
    from ..emulation import cluster

    code, out, err = cluster.exec_in_node(run, node, argv)
    sys.stdout.write(out)
    sys.stderr.write(err)
    sys.exit(code)


def _node_pid(node: str, run_id) -> int:
    run = _run(run_id)
    info = run["nodes"].get(node)
    if info is None:
        some = ", ".join(list(run["nodes"])[:5])
        raise LasernetError(f"{run['run_id']}: unknown node {node!r} (nodes include {some})")
    return int(info["pid"])


def _render_run(summary: dict) -> None:
    stdout.print(f"run directory: {summary['run_dir']}")
    ticks = summary.get("ticks")
    if ticks:
        stdout.print(f"ticks: {ticks['count']}, cost p50 {ticks['p50_ms']:.2f} ms, p99 {ticks['p99_ms']:.2f} ms, "
                      f"max {ticks['max_ms']:.2f} ms, overruns {ticks['overruns']}")
    routing = summary.get("routing")
    if routing:
        conv, fmt = routing.get("convergence_s") or {}, lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
        stdout.print(f"routing: {routing['protocol']} ({routing['daemon']}), initial convergence "
                      f"{fmt(routing.get('initial_convergence_s'))} s; {routing['changes']} link changes, convergence "
                      f"median {fmt(conv.get('median'))} s, p95 {fmt(conv.get('p95'))} s, "
                      f"{routing['unconverged_changes']} unconverged, {routing['probes_lost_in_changes']} probes "
                      f"lost in them; ground path stretch median {fmt(routing.get('ground_stretch_median'))}")
    cap = summary.get("capture")
    if cap:
        stdout.print(f"capture: {cap['files']} pcap files in {summary['run_dir']}/capture, {cap['packets']} packets, "
                     f"{cap['dropped_by_kernel']} dropped by the kernel" + "".join(
                         f"; failed: {line}" for line in cap.get("failed", [])), highlight=False, soft_wrap=True)
    probes = summary.get("probes") or {}
    if probes:
        table = Table("probe pair", "probes", "lost", "measured - predicted RTT: median ms", "p99 ms",
                      title="probe fidelity", title_justify="left")
        for name, st in probes.items():
            if name == "all":
                continue
            table.add_row(name, str(st.get("sent", st.get("n", 0))), str(st.get("lost", "-")),
                          f"{st['median_ms']:+.3f}" if "median_ms" in st else "-",
                          f"{st['p99_ms']:+.3f}" if "p99_ms" in st else "-")
        stdout.print(table)


def _render_workload(workload: dict) -> list:
    """Print the workload's job counts and every failed job (node, command, exit code); return the failures."""
    if not workload:
        return []
    counts = ", ".join(f"{n} {s}" for s, n in workload.get("by_status", {}).items() if n)
    stdout.print(f"workload: {workload.get('jobs', 0)} jobs ({counts or 'none'})")
    for name, flow in (workload.get("iperf3") or {}).items():
        stdout.print(f"iperf3 {name}: {flow['received_bps'] / 1e6:.2f} Mbit/s received over {flow['intervals']} "
                      f"intervals" + (f" ({flow['error']})" if flow.get("error") else ""))
    failed = workload.get("failed") or []
    for job in failed:
        err_console.print(Text("failed: ", style="bold red") + Text(
            f"{job['command']} on {job['node']} exited with {job['exit_code']}"
            + (f": {job['stderr']}" if job.get("stderr") else "")), highlight=False, soft_wrap=True)
    return failed


@main.command()
def topologies():
    """List the shipped topologies (scenario names usable in place of a file)."""
    table = Table("name", "description", box=None)
    for name, path in shipped_topologies().items():
        table.add_row(name, describe(path))
    stdout.print(table)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=True)


def _render_summary(timeline) -> None:
    s = timeline.summary()
    stdout.print(f"[bold]{timeline.scenario_name}[/]: {s['satellites']} satellites, {s['stations']} ground stations, "
                  f"{s['steps']} steps of {s['step_s']:g} s from {timeline.start_utc:%Y-%m-%d %H:%M:%S} UTC")
    table = Table("", "ISL", "GSL", title="links over the window", title_justify="left")
    fmt = lambda x: "-" if x is None else f"{x:.3g}"  # noqa: E731
    rows = [("links (candidates)", lambda k: str(k["links"])),
            ("up min / mean / max", lambda k: f"{k['up_min']} / {k['up_mean']:.1f} / {k['up_max']}"),
            ("delay ms p50 / p99 / max", lambda k: " / ".join(fmt(k["delay_ms"][p]) for p in (50, 99, 100))),
            ("down events by cause", lambda k: ", ".join(f"{c} {n}" for c, n in sorted(
                k["down_events_by_cause"].items(), key=lambda x: -x[1])) or "-"),
            ("down link-steps by cause", lambda k: ", ".join(f"{c} {n}" for c, n in sorted(
                k["down_link_steps_by_cause"].items(), key=lambda x: -x[1])) or "-")]
    for label, cell in rows:
        table.add_row(label, cell(s["isl"]), cell(s["gsl"]))
    stdout.print(table)
    cover = s["coverage"]
    if cover:
        values = sorted(cover.values())
        worst = min(cover, key=cover.get)
        stdout.print(f"ground coverage (share of time with a ground link up): mean {sum(values) / len(values):.1%}, "
                      f"worst {worst} {cover[worst]:.1%}")
    rf = s["gsl"].get("rf")
    if rf:
        causes = ", ".join(f"{c} {n}" for c, n in sorted(rf["link_steps_by_optical_cause"].items(),
                                                        key=lambda x: -x[1])) or "-"
        stdout.print(f"RF fallback: {rf['link_steps']} link-steps on RF ({causes}); "
                     f"{sum(rf['switches_to_rf_by_cause'].values())} switches to RF, {rf['returns_to_optical']} "
                     f"back to optical")
    for name, site in (s.get("sites") or {}).items():
        shares = ", ".join(f"{k} {v:.1%}" for k, v in site["share_by_station"].items()) or "-"
        stdout.print(f"site {name}: served {site['served']:.1%} of the time, {site['switches']} switches "
                     f"between stations ({shares})")
    pw = s.get("power")
    if pw:
        share = pw["state_share"]
        causes = ", ".join(f"{c} {n}" for c, n in sorted(pw["changes_by_cause"].items(), key=lambda x: -x[1])) or "-"
        stdout.print(f"power ({pw['satellites']} satellites): SoC min {pw['soc_min']:.1%}, median at end "
                     f"{pw['soc_end_median']:.1%}; satellite-time nominal {share['nominal']:.1%}, throttled "
                     f"{share['throttled']:.1%}, off {share['off']:.1%}; ever throttled {pw['ever']['throttled']}, "
                     f"ever off {pw['ever']['off']}; state changes: {causes}"
                     + (f"; unserved bus energy {pw['deficit_wh']:.3g} Wh" if pw["deficit_wh"] > 0 else ""))
    faults = s.get("faults") or {}
    if "upsets" in faults:
        u = faults["upsets"]
        stdout.print(f"upsets: {u['count']} ({u['in_saa']} in the South Atlantic Anomaly; the rates expected "
                     f"{u['expected']:.3g}), at most {u['max_per_satellite']} on one satellite; time over the SAA "
                     f"{u['saa_time_share']:.1%}")
    n_sat = timeline.n_satellites
    for name, members, allowed in zip(timeline.residency, timeline.residency_members, timeline.residency_allowed):
        stdout.print(f"residency rule {name}: traffic between {int(members.sum())} sites kept on "
                     f"{int(allowed[:n_sat].sum())} of {n_sat} satellites and {int(allowed[n_sat:].sum())} ground "
                     f"sites; `lasernet path` shows its paths and their cost")
    if "conjunctions" in faults:
        c = faults["conjunctions"]
        closest = "-" if c["closest_screened_m"] is None else \
            f"{c['closest_screened_m']:.3g} m ({' / '.join(c['closest_pair'])})"
        stdout.print(f"conjunctions below the threshold: {c['below_threshold']}, manoeuvres {c['manoeuvres']}; "
                     f"closest approach screened {closest}")
