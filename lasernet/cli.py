"""The ``lasernet`` command: parse arguments, call the library, render results with rich. Nothing else.

Every user error (a bad scenario, a bad option) prints one line naming the file, the field and the fix, and exits
with code 2 without leaving files behind.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from . import api

err_console = Console(stderr=True)
console = Console()


class _Group(click.Group):
    """Turns ScenarioError (and other user errors) into one line on stderr and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except api.ScenarioError as exc:
            err_console.print(Text("error: ", style="bold red") + Text(str(exc)), highlight=False, soft_wrap=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(api.__version__, prog_name="lasernet")
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
@click.option("--events", type=click.Path(dir_okay=False), help="Write link up/down events to this CSV file.")
def plan(scenario, start, duration_s, step_s, output, events):
    """Compute which links are up, their light delay and outage causes over a time window."""
    sc = api.load_scenario(api.resolve_scenario(scenario))
    with _progress() as bar:
        task = bar.add_task(f"planning {sc.name}", total=None)
        timeline = api.plan(sc, start=start, duration_s=duration_s, step_s=step_s,
                            progress=lambda done, total: bar.update(task, completed=done, total=total))
    _render_summary(timeline)
    if output:
        timeline.save(output)
        console.print(f"timeline: {output}")
    if events:
        n = timeline.write_events_csv(events)
        console.print(f"events:   {events} ({n} rows)")


@main.command()
def topologies():
    """List the shipped topologies (scenario names usable in place of a file)."""
    table = Table("name", "description", box=None)
    for name, path in api.shipped_topologies().items():
        table.add_row(name, api.describe(path))
    console.print(table)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=True)


def _render_summary(timeline) -> None:
    s = timeline.summary()
    console.print(f"[bold]{timeline.scenario_name}[/]: {s['satellites']} satellites, {s['stations']} ground stations, "
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
    console.print(table)
    cover = s["coverage"]
    if cover:
        values = sorted(cover.values())
        worst = min(cover, key=cover.get)
        console.print(f"ground coverage (share of time with a ground link up): mean {sum(values) / len(values):.1%}, "
                      f"worst {worst} {cover[worst]:.1%}")


if __name__ == "__main__":  # pragma: no cover
    main()
