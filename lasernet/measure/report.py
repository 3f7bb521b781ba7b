"""A run's report: ``report.html`` (self-contained, PNGs embedded, works offline) from the files of its run directory.

:func:`build_report` reads what a run left (``run.json``, ``summary.json``, ``probes.csv``, ``events.csv``,
``ticks.csv``, ``plan.npz``, ``workload.csv``, ``iperf3.csv``, ``app-metrics.csv``; any may be missing) and writes
``report.html`` and, next to it in ``plots/``, the same figures as PNG files:

* measured vs predicted RTT over time per probe pair (the scenario's probes and the ping mesh);
* links up over time (planned, and as applied by the driver) and the up ISLs' delay distribution over time;
* route changes per tick, link events and each probe pair's path changes;
* iperf3 throughput over time; every application metric the workload recorded;
* Earth observation (:mod:`lasernet.measure.eo`, the ``in-orbit-processing`` experiment's files under
  ``workload/``): per producer the bytes captured over land and downlinked, the age of the data at the ground
  (p50, p99) and the backlog at the end, in a table, a figure and ``eo.csv`` (one row per chunk at the ground);
* an orbital data centre's sunlight and power (:mod:`lasernet.measure.datacentre`, from ``plan.npz``, the
  scenario and ``events.csv``): the share of each plane's satellites in the umbra, penumbra and sunlight, and
  nominal, throttled and off, over time; the compute the power states allow; radiation upsets and manoeuvres
  per plane on a timeline. Without a ``power:`` (or ``upsets:``/``collision:``) section the report says so
  instead of drawing an empty figure;
* a training ring (``scripts/experiments/allreduce.py`` with a compute phase; :mod:`lasernet.measure.training`):
  round time and compute time by power state, the share of time the ring was nominal, throttled and off, a
  figure of its rounds under its members' states, and ``training.csv``;
* maps of the constellation at chosen instants (``workload.report.map_at_s``; default start, middle and end),
  the Earth's night side shaded and satellites in the Earth's shadow drawn dark;
* links to the browser view's screenshots in ``web/`` (saved there by its tests and benchmarks), and the command
  that replays the run in a browser.

:func:`map_figure` draws one map from a scenario (planning the instant if no timeline is given); it is also what
``lasernet show`` uses. Everything here is offline: no root, no network.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import html
import json
from pathlib import Path

import numpy as np

from ..errors import LasernetError
from ..topology import GSL, ISL
from . import datacentre, eo, plots

TRACK_S = 1800.0  # ground tracks span this many seconds around the instant
TRACK_STEP_S = 20.0
MAX_TRACKS = 1000  # ground tracks drawn (every k-th satellite's beyond this): bounds a large map's memory
MAX_RTT_PANELS = 12  # probe pairs drawn in the RTT figure (a 12-station mesh has 66)
MAX_PLANE_ROWS = 12  # planes drawn in the sunlight and power-state figures (evenly spaced beyond)


class ReportError(LasernetError):
    """The directory is not a run directory (the CLI prints it on one line, exit code 2)."""


# --------------------------------------------------------------------------------------------------------------
# Maps

def map_figure(scenario, when: dt.datetime, timeline=None, offset_s: float | None = None, title: str = "",
               applied_up: set[str] | None = None):
    """The constellation of ``scenario`` at ``when``: link states from ``timeline`` at ``offset_s`` if given.

    With ``applied_up`` (names ``a~b`` of the links a run had up then, see :func:`applied_links_at`) the links
    drawn up are those, outages injected by the workload included; the plan still gives the candidates. The
    Earth's night side is shaded from the subsolar point at ``when`` (:func:`lasernet.geometry.subsolar_point_deg`)
    and satellites are drawn sunlit, in the penumbra or in the umbra as the plan's illumination has them then.
    """
    from .. import geometry, skydata
    from ..orbits import build_satellites
    from ..timeline import plan

    if timeline is None:
        timeline, offset_s = plan(scenario, start=when, duration_s=0.0, step_s=1.0), 0.0
    sats = build_satellites(scenario)
    offsets = np.arange(-TRACK_S / 2, TRACK_S / 2 + 1e-9, TRACK_STEP_S)
    tracked = sats if len(sats) <= MAX_TRACKS else sats.subset(np.linspace(0, len(sats) - 1, MAX_TRACKS).astype(int))
    track = tracked.positions_km(skydata.times(when, offsets))
    now, velocity = (v[0] for v in sats.positions_and_velocities(skydata.times(when, np.zeros(1))))
    up, _delay = timeline.state_at(offset_s)
    if applied_up is not None:
        up = np.array([name in applied_up for name in timeline.links.names], dtype=bool)
    links, n_sat = timeline.links, timeline.n_satellites
    isl = links.kind == ISL
    gsl = links.kind == GSL
    pairs = lambda sel: list(zip(links.a[sel].tolist(), links.b[sel].tolist()))  # noqa: E731
    isl_up, isl_down = pairs(isl & up), pairs(isl & ~up)
    on_rf = timeline.on_rf_at(offset_s)
    ground = lambda sel: [(a - n_sat, b) if a >= n_sat else (b - n_sat, a) for a, b in pairs(sel)]  # noqa: E731
    gsl_up, gsl_rf = ground(gsl & up & ~on_rf), ground(gsl & up & on_rf)
    stations = [(g.name, g.lat_deg, g.lon_deg) for g in scenario.ground]
    sun_km = geometry.sun_itrs_km(skydata.times(when, np.zeros(1)))[0]
    subsolar = tuple(float(x) for x in geometry.subsolar_point_deg(sun_km))
    return plots.constellation_map(when, sats.names, now, track, stations, isl_up, isl_down, gsl_up,
                                   title=title or scenario.name, illumination=timeline.illumination_at(offset_s),
                                   subsolar_deg=subsolar, gsl_rf=gsl_rf,
                                   sat_plane=sats.shell * (sats.plane.max() + 1) + sats.plane
                                   if len(sats) and (sats.plane >= 0).all() else None,
                                   sat_velocity_km_s=velocity)


def render_map(scenario, when: dt.datetime, path: str | Path) -> Path:
    """Draw the map of ``scenario`` at ``when`` into the PNG file ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plots.save_png(map_figure(scenario, when), path)
    return path


# --------------------------------------------------------------------------------------------------------------
# Reading a run directory

def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _float(x: str) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def probe_series(rows: list[dict]) -> dict[str, dict]:
    """probes.csv rows grouped per pair: arrays t_s, measured_ms, predicted_ms, and the path per probe."""
    out: dict[str, dict] = {}
    for r in rows:
        d = out.setdefault(r["pair"], {"t_s": [], "measured_ms": [], "predicted_ms": [], "path": []})
        d["t_s"].append(_float(r["t_s"]))
        d["measured_ms"].append(_float(r["measured_rtt_ms"]))
        d["predicted_ms"].append(_float(r["predicted_rtt_ms"]))
        d["path"].append(r.get("path", ""))
    for d in out.values():
        for key in ("t_s", "measured_ms", "predicted_ms"):
            d[key] = np.asarray(d[key], float)
    return out


def _path_changes(series: dict[str, dict]) -> dict[str, np.ndarray]:
    out = {}
    for name, d in series.items():
        paths = d["path"]
        out[name] = np.array([d["t_s"][k] for k in range(1, len(paths)) if paths[k] != paths[k - 1]])
    return out


def _applied_link_count(events: list[dict], end_s: float) -> tuple[np.ndarray, np.ndarray]:
    t, n, count = [], [], 0
    for r in events:
        if r["kind"] in ("isl", "gsl") and r["event"] in ("up", "down"):
            count += 1 if r["event"] == "up" else -1
            t.append(_float(r["t_s"]))
            n.append(count)
    if t:
        t.append(max(end_s, t[-1]))
        n.append(count)
    return np.asarray(t), np.asarray(n)


def applied_links_at(events: list[dict], t_s: float) -> set[str]:
    """Names of the links up at ``t_s`` as the driver applied them (events.csv replayed up to ``t_s``)."""
    up: set[str] = set()
    for r in events:
        if r["kind"] in ("isl", "gsl") and r["event"] in ("up", "down") and _float(r["t_s"]) <= t_s:
            (up.add if r["event"] == "up" else up.discard)(r["what"])  # rf/optical rows: the link stays up
    return up


def _plan_arrays(timeline, end_s: float):
    keep = timeline.offsets_s <= end_s + timeline.step_s
    t = timeline.offsets_s[keep]
    up = timeline.up[keep]
    isl, gsl = timeline.links.kind == ISL, timeline.links.kind == GSL
    delay_ms = np.where(up[:, isl], timeline.delay_s[keep][:, isl].astype(float) * 1e3, np.nan)
    pct = np.full((len(t), 5), np.nan)
    has = np.isfinite(delay_ms).any(axis=1)
    if has.any():
        pct[has] = np.nanpercentile(delay_ms[has], [0, 10, 50, 90, 100], axis=1).T
    return t, up[:, isl].sum(axis=1), up[:, gsl].sum(axis=1), pct


def _scenario_of(run_dir: Path, info: dict):
    from ..errors import ScenarioError
    from ..spec.scenario import load_scenario

    for candidate in (info.get("scenario"), run_dir / "scenario.yaml"):
        if candidate and Path(candidate).is_file():
            try:
                return load_scenario(candidate)
            except ScenarioError:
                continue
    return None


# --------------------------------------------------------------------------------------------------------------
# The report

def build_report(run_dir: str | Path, progress=None) -> Path:
    """Write ``report.html`` and ``plots/*.png`` for the run in ``run_dir``; return the HTML's path."""
    from ..timeline import Timeline

    run_dir = Path(run_dir)
    if not (run_dir / "run.json").exists() and not (run_dir / "events.csv").exists():
        raise ReportError(f"{run_dir}: not a lasernet run directory (no run.json or events.csv); give the "
                          f"directory `lasernet run` or `lasernet up` printed")
    step = progress or (lambda what: None)
    info = _load_json(run_dir / "run.json")
    summary = _load_json(run_dir / "summary.json")
    plots_dir = run_dir / "plots"
    plots_dir.mkdir(exist_ok=True)
    figures: list[tuple[str, str, bytes | None]] = []  # (section, caption, png; None: a note in place of a figure)

    def add(section, caption, fig, name):
        figures.append((section, caption, plots.save_png(fig, plots_dir / f"{name}.png")))

    ticks = _rows(run_dir / "ticks.csv")
    end_s = max((_float(r["t_s"]) for r in ticks), default=0.0)
    step("probes")
    series = probe_series(_rows(run_dir / "probes.csv"))
    if series:
        shown = dict(list(series.items())[:MAX_RTT_PANELS])
        more = "" if len(shown) == len(series) else f" The first {len(shown)} of {len(series)} pairs (all in the table)."
        add("RTT", "Measured (points) vs predicted (line) round-trip time per probe pair; x: lost probes." + more,
            plots.rtt_over_time(shown), "rtt")
    events = _rows(run_dir / "events.csv")
    timeline = Timeline.load(run_dir / "plan.npz") if (run_dir / "plan.npz").exists() else None
    step("links")
    if timeline is not None:
        t, isl_n, gsl_n, pct = _plan_arrays(timeline, end_s)
        figure = plots.links_over_time(t, isl_n, gsl_n, pct, _applied_link_count(events, end_s))
        add("Links", "Links up over time (plan; dashed: as applied by the driver) and the one-way delay of the "
                     "ISLs that are up.", figure, "links")
    route = [(_float(r["t_s"]), _float(r["detail"])) for r in events if r["kind"] == "route"]
    link_ev = [(_float(r["t_s"]), r["event"] == "up") for r in events if r["kind"] in ("isl", "gsl")
               and r["event"] in ("up", "down") and _float(r["t_s"]) > 0.5]
    add("Routes", "Routes changed per tick (log scale), link up/down events after the start, and when each probe "
                  "pair's path changed.",
        plots.route_changes(np.array([r[0] for r in route]), np.array([r[1] for r in route]),
                            np.array([e[0] for e in link_ev]), np.array([e[1] for e in link_ev]),
                            _path_changes(series)), "routes")
    flows: dict[str, tuple] = {}
    for r in _rows(run_dir / "iperf3.csv"):
        f = flows.setdefault(r["flow"], ([], []))
        f[0].append(_float(r["t_s"]))
        f[1].append(_float(r["bits_per_second"]))
    if flows:
        step("iperf3")
        add("Throughput", "iperf3 throughput per reporting interval.",
            plots.throughput({k: (np.array(v[0]), np.array(v[1])) for k, v in flows.items()}), "iperf3")
    metrics: dict[str, dict[str, tuple[list, list]]] = {}
    for r in _rows(run_dir / "app-metrics.csv"):
        s = metrics.setdefault(r["metric"], {}).setdefault(r["node"], ([], []))
        s[0].append(_float(r["t_s"]))
        s[1].append(_float(r["value"]))
    metric_stats = {}
    for k, (metric, per_node) in enumerate(sorted(metrics.items())):
        step(f"metric {metric}")
        arrays = {n: (np.array(v[0]), np.array(v[1])) for n, v in per_node.items()}
        values = np.concatenate([v for _, v in arrays.values()])
        metric_stats[metric] = {"n": len(values), "p50": float(np.median(values)),
                                "p99": float(np.percentile(values, 99)), "max": float(values.max())}
        span = max(float(np.ptp(np.concatenate([t for t, _ in arrays.values()]))), 1.0)
        add("Application metrics", f"{metric} (recorded by the workload).",
            plots.app_metric(metric, arrays, bin_s=max(1.0, round(span / 20))), f"metric-{k}")
    eo_rows = []
    eo_run = eo.read_run(run_dir)
    if eo_run is not None:
        step("earth observation")
        eo.write_csv(eo_run, run_dir / "eo.csv")
        eo_rows = _eo_rows(eo.summary(eo_run))
        add("Earth observation", "Capture over land (bars) and backlog onboard per producer (and at the compute "
                                 "node), bytes at the ground per source, and each chunk's age at arrival "
                                 "(capture end to arrival; one row per chunk in eo.csv).", eo.figure(eo_run), "eo")
    scenario = _scenario_of(run_dir, info)
    if timeline is not None:
        step("sunlight and power")
        _datacentre_figures(add, lambda section, text: figures.append((section, text, None)), timeline, scenario,
                            events, end_s)
    training_rows = []
    if timeline is not None:
        step("training")
        training_rows = _training_section(add, run_dir, timeline, events, end_s)
    if scenario is not None and timeline is not None:
        at = list(scenario.workload.map_at_s) or sorted({0.0, round(end_s / 2, 1), round(end_s, 1)})
        for s in at:
            s = min(s, float(timeline.offsets_s[-1]))
            step(f"map at {s:g} s")
            when = timeline.start_utc + dt.timedelta(seconds=s)
            applied = applied_links_at(events, s) if s <= end_s and events else None
            add("Maps", f"The constellation at t = {s:g} s: ISLs up (solid) and down (dotted) "
                        f"{'as the run applied them' if applied is not None else 'as planned'}, ground links, "
                        f"ground tracks over {TRACK_S / 60:g} minutes.",
                map_figure(scenario, when, timeline, s, title=f"{scenario.name}, t = {s:g} s", applied_up=applied),
                f"map-{s:g}s")
    step("html")
    path = run_dir / "report.html"
    tmp = path.with_name("report.html.part")
    tmp.write_text(_html(run_dir, info, summary, series, _rows(run_dir / "workload.csv"), metric_stats, figures,
                         end_s, _ground_segment_rows(timeline, events), eo_rows, training_rows,
                         _hijack_rows(run_dir)))
    tmp.replace(path)
    return path


def _datacentre_figures(add, note, timeline, scenario, events: list[dict], end_s: float) -> None:
    """The orbital data centre's figures (:mod:`lasernet.measure.datacentre`): shadow per plane, power states per
    plane, compute available, upsets and manoeuvres; a note instead of each figure the plan has no data for."""
    from ..geometry import ILLUMINATION
    from ..power import POWER_STATES

    span_s = end_s if end_s > 0 else float(timeline.offsets_s[-1])  # no ticks: the whole plan
    keep = timeline.offsets_s <= span_s + timeline.step_s * 0.5
    t = timeline.offsets_s[keep]
    labels, plane = datacentre.plane_index(timeline)
    shown = np.unique(np.linspace(0, len(labels) - 1, min(len(labels), MAX_PLANE_ROWS)).astype(int))
    some = "" if len(shown) == len(labels) else f" {len(shown)} of the {len(labels)} planes, evenly spaced."
    section = "Sunlight and power"
    if timeline.illumination is None:
        note(section, "The plan holds no illumination (saved before lasernet planned it): no sunlight figure.")
    else:
        shares = datacentre.plane_shares(timeline.illumination_state[keep], plane, len(labels), len(ILLUMINATION))
        add(section, "Earth's shadow: the share of each plane's satellites in the umbra, the penumbra and sunlight "
                     "over time (plan)." + some,
            plots.state_shares_per_plane(t, [labels[p] for p in shown], shares[:, shown], ILLUMINATION,
                                         plots.ILLUMINATION_COLORS, "illumination"), "sunlight")
    has_power = datacentre.modelled(timeline)
    if not has_power.any():
        note(section, "The scenario has no power: section: no battery, power state or compute figure (every "
                      "satellite is nominal, CPU quota 1).")
    else:
        sats = np.flatnonzero(has_power)
        shares = datacentre.plane_shares(timeline.power_state[keep][:, sats], plane[sats], len(labels),
                                         len(POWER_STATES))
        powered = [p for p in shown if np.isfinite(shares[0, p, 0])]
        add(section, "Power states: the share of each plane's satellites (those with a power model) nominal, "
                     "throttled and off over time (plan; the CPU quota their servers get follows it)." + some,
            plots.state_shares_per_plane(t, [labels[p] for p in powered], shares[:, powered], POWER_STATES,
                                         plots.POWER_COLORS, "power state"), "power-states")
        weights, unit = datacentre.compute_weights(timeline, scenario)
        available = datacentre.compute_allowed(timeline.cpu_quota[keep], weights)
        planned = datacentre.server_cpus_planned(timeline, scenario)
        applied = datacentre.server_cpus_applied(timeline, scenario, events, span_s) if end_s > 0 else \
            (np.zeros(0), np.zeros(0))  # a run that never ticked applied nothing
        servers = None if planned is None else (planned[keep], applied)
        what = ("the power group's compute_w plus server_w per attached server" if unit == "W" else
                "one per satellite with a power model (the scenario did not load)")
        add(section, f"Compute available: the sum over satellites of their compute at full quota ({what}) times "
                     f"the CPU quota factor of their power state (1 nominal, throttle_factor throttled, 0 off)"
                     + ("; below, the satellites' servers' CPUs, planned and (dashed, once the run ticked) as the "
                        "driver applied them (events.csv)." if servers is not None else "."),
            plots.compute_available(t, available, unit, float(weights.sum()), servers), "compute")
    faults = datacentre.fault_events(timeline, plane, events, span_s)
    if timeline.upsets is None and timeline.conjunctions is None:
        note(section, "The scenario has no upsets: or collision: section: no radiation upsets or manoeuvres.")
    elif not faults["planned"] and not len(faults["applied"][0]):
        note(section, f"No radiation upset or collision-avoidance manoeuvre in the first {span_s:g} s.")
    else:
        add(section, "Radiation upsets and collision-avoidance manoeuvres over time, per plane (plan; rings: "
                     "server restarts the driver applied).",
            plots.fault_timeline(labels, faults["planned"], faults["applied"], span_s, datacentre.FAULT_CAUSES),
            "faults")


def _training_section(add, run_dir: Path, timeline, events: list[dict], end_s: float) -> list[list]:
    """A training ring's figure and the rows of its table (:mod:`lasernet.measure.training`), and
    ``training.csv`` in the run directory; no rows when the run has no ring with a compute phase."""
    from ..power import POWER_STATES
    from . import training

    result = training.analyse(run_dir, timeline, events, end_s if end_s > 0 else None)
    if result is None:
        return []
    training.write_csv(result, run_dir / "training.csv")
    ring, keep = result["ring"], timeline.offsets_s <= result["end_s"] + timeline.step_s * 0.5
    r = ring.rounds
    compute = {m: (ring.compute[m][0], ring.compute[m][1], *result["member_compute"][m]) for m in ring.members}
    where = ", ".join(f"{m} on {sat}" for m, sat in zip(ring.members, ring.routers))
    add("Training", f"The ring of {ring.command} ({where}): each member's planned power state and the ring's "
                    "(the lowest); each round's time (compute phase plus all-reduce, member 0's rounds.csv) at its "
                    "start, coloured by the ring's state then; each member's compute phase (app-metrics.csv) by "
                    "its own satellite's state. Hollow: the state changed before the round or phase ended.",
        plots.training_rounds(timeline.offsets_s[keep], ring.members, result["planned"][keep],
                              (r["t_start_s"], r["round_s"], result["round_state"], result["steady"]), compute,
                              POWER_STATES), "training")
    fmt = lambda x: "-" if not np.isfinite(x) else f"{x:.3f}"  # noqa: E731
    rows = []
    by = {(row["kind"], row["state"]): row for row in result["rows"]}
    for state in ("nominal", "throttled", "off"):
        rnd, cmp_, own = by[("round", state)], by[("round-compute", state)], by[("compute", state)]
        phases = (f"{own['n']} phases, p50 {fmt(own['p50_s'])} s, p90 {fmt(own['p90_s'])} s, "
                  f"CPU share {fmt(own['cpu_share_p50'])}")
        rows.append([f"rounds started {state} (steady)", rnd["n"], fmt(rnd["p50_s"]), fmt(rnd["p90_s"]),
                     fmt(cmp_["p50_s"]), phases])
    ch = by[("round-changed", "")]
    rows.append(["rounds during which the ring's state changed", ch["n"], fmt(ch["p50_s"]), fmt(ch["p90_s"]),
                 "", ""])
    for state in ("nominal", "throttled", "off"):
        t = by[("time", state)]
        rows.append([f"time the ring was {state}", "", "", "", "",
                     f"{t['share_planned']:.1%} planned, {t['share_applied']:.1%} applied"])
    return rows


def _table(header: list[str], rows: list[list], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for k, row in enumerate(rows):
        cls = f' class="{classes[k]}"' if classes and classes[k] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _ground_segment_rows(timeline, events: list[dict]) -> list[list]:
    """Rows of the report's ground segment table: per diversity group the share of the plan's steps served, its
    switches and each station's share; the link-steps on RF by what blocked the laser; and the switches between
    optical and RF the run applied (events.csv). Empty for a plan without RF terminals or diversity groups."""
    if timeline is None:
        return []
    rows = []
    for name, site in timeline.site_summary().items():
        shares = ", ".join(f"{k} {v:.1%}" for k, v in site["share_by_station"].items())
        applied = sum(1 for r in events if r["kind"] == "site" and r["what"] == name)
        rows.append([f"site {name}", f"served {site['served']:.1%} of the plan's steps, {site['switches']} switches; "
                                     f"{shares}" + (f"; {applied} changes applied by the run" if applied else "")])
    rf = timeline.rf_summary()
    if rf:
        causes = ", ".join(f"{k} {v}" for k, v in rf["link_steps_by_optical_cause"].items()) or "none"
        rows.append(["RF fallback (plan)", f"{rf['link_steps']} link-steps on RF ({causes}); "
                                           f"{sum(rf['switches_to_rf_by_cause'].values())} switches to RF, "
                                           f"{rf['returns_to_optical']} back to optical"])
        applied = [r for r in events if r["kind"] == "gsl" and r["event"] in ("rf", "optical")]
        rows.append(["RF fallback (applied)", f"{sum(r['event'] == 'rf' for r in applied)} switches to RF, "
                                              f"{sum(r['event'] == 'optical' for r in applied)} back to optical"])
    return rows


def _eo_rows(s: dict) -> list[list]:
    """Rows of the report's Earth observation table (:func:`lasernet.measure.eo.summary`): one per producer and
    the total."""
    mb = lambda b: "-" if b is None else f"{b / 1e6:.2f}"  # noqa: E731
    sec = lambda x: "-" if x is None else f"{x:.1f}"  # noqa: E731
    rows = [[node, s["mode"], f"{p['captured_s']:.0f}", mb(p["produced_bytes"]), mb(p["downlinked_bytes"]),
             p["downlinked_chunks"], sec(p["age_p50_s"]), sec(p["age_p99_s"]), mb(p["backlog_end_bytes"])]
            for node, p in s["producers"].items()]
    rows.append(["all", s["mode"], "", mb(s["produced_bytes"]), mb(s["downlinked_bytes"]), s["downlinked_chunks"],
                 sec(s["age_p50_s"]), sec(s["age_p99_s"]),
                 mb(s["backlog_end_bytes"]) + (f" (+{mb(s['compute_backlog_end_bytes'])} at the compute node)"
                                               if s["compute_backlog_end_bytes"] else "")])
    return rows


def _hijack_rows(run_dir: Path) -> list[list]:
    """The row of the report's BGP hijack table from ``hijack.json`` (scripts/experiments/hijack.py writes it
    into each variant's run directory); none without it."""
    path = run_dir / "hijack.json"
    if not path.exists():
        return []
    h = json.loads(path.read_text())
    probes = h.get("probes", {}).values()
    per_pair = [p["diverted_s"] for p in h.get("diverted_s", {}).values()]
    again = h.get("all_delivered_again_s")
    return [[h.get("variant", ""), ", ".join(f"{k}={v}" for k, v in h.get("routing", {}).items()) or "-",
             h["pairs"], f"{100 * h['share_diverted_max']:.0f}%", f"{100 * h['share_diverted_mean']:.0f}%",
             h["pairs_ever_diverted"], f"{max(per_pair, default=0):.1f}",
             f"{sum(p['at_rogue'] for p in probes)} of {sum(p['sent'] for p in probes)}",
             "-" if again is None else f"{again:.1f}"]]


def _html(run_dir, info, summary, series, jobs, metric_stats, figures, end_s, ground_rows=(), eo_rows=(),
          training_rows=(), hijack_rows=()) -> str:
    e = html.escape
    parts = [f"<h1>lasernet run {e(info.get('scenario_name', run_dir.name))}</h1>"]
    versions = info.get("versions", {})
    overview = [["run directory", str(run_dir.resolve())], ["scenario", info.get("scenario", "")],
                ["seed", info.get("seed", "")], ["start (UTC)", info.get("start_utc", "")],
                ["emulated duration s", f"{end_s:.1f}"], ["speed", info.get("speed", "")],
                ["link backend", info.get("links", "")],
                ["plan events SHA-256", info.get("plan_events_sha256", "")],
                ["versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v)]]
    ticks = summary.get("ticks")
    if ticks:
        overview.append(["ticks", f"{ticks['count']}, cost p50 {ticks['p50_ms']:.2f} ms, p99 {ticks['p99_ms']:.2f} "
                                  f"ms, overruns {ticks['overruns']}"])
    parts.append("<h2>Run</h2>" + _table(["", ""], overview))
    if ground_rows:
        parts.append("<h2>Ground segment</h2>" + _table(["", ""], ground_rows))
    if series:
        rows = []
        for name, d in series.items():
            ok = np.isfinite(d["measured_ms"]) & np.isfinite(d["predicted_ms"])
            diff = d["measured_ms"][ok] - d["predicted_ms"][ok]
            rows.append([name, len(d["t_s"]), int(np.sum(~np.isfinite(d["measured_ms"]))),
                         f"{np.median(d['measured_ms'][ok]):.3f}" if ok.any() else "-",
                         f"{np.median(diff):+.3f}" if ok.any() else "-",
                         f"{np.percentile(diff, 99):+.3f}" if ok.any() else "-"])
        parts.append("<h2>Probe fidelity</h2>" + _table(
            ["pair", "probes", "lost", "median RTT ms", "median measured - predicted ms", "p99 ms"], rows))
    if jobs:
        failed = [j for j in jobs if j["status"] == "failed"]
        title = f"<h2>Workload ({len(jobs)} jobs, {len(failed)} failed)</h2>"
        parts.append(title + _table(["node", "command", "start s", "end s", "status", "exit code", "stderr file"],
                                    [[j["node"], j["command"], j["start_s"], j["end_s"], j["status"], j["exit_code"],
                                      j["stderr"]] for j in jobs],
                                    ["failed" if j["status"] == "failed" else "" for j in jobs]))
    if eo_rows:
        parts.append("<h2>Earth observation: data at the ground</h2>" + _table(
            ["producer", "mode", "captured over land s", "produced MB", "downlinked MB", "chunks at the ground",
             "age p50 s", "age p99 s", "backlog at the end MB"], eo_rows))
    if hijack_rows:
        parts.append("<h2>BGP hijack</h2>" + _table(
            ["variant", "defences", "pairs", "diverted at worst", "diverted on average", "pairs ever diverted",
             "longest a pair was diverted s", "probes at the rogue (of those sent in the attack)",
             "all delivered again after the withdrawal s"], hijack_rows)
            + '<p class="note">From every router\'s kernel FIB towards the victim\'s address, sampled during the run '
              "(hijack.csv), and the probes' listeners on the victim and the rogue (hijack.json).</p>")
    if training_rows:
        parts.append("<h2>Training by power state</h2>" + _table(
            ["", "rounds", "round p50 s", "round p90 s", "member 0's compute p50 s",
             "every member's compute phases by its own state (steady)"], training_rows)
            + '<p class="note">Round and compute times are wall seconds; states are the plan\'s at the round\'s '
              "start (the ring's: the lowest of its members'); steady: the state held until it ended. Time "
              "shares are over the run's emulated span (training.csv).</p>")
    if metric_stats:
        parts.append("<h2>Application metrics</h2>" + _table(
            ["metric", "values", "median", "p99", "max"],
            [[m, s["n"], f"{s['p50']:.4g}", f"{s['p99']:.4g}", f"{s['max']:.4g}"] for m, s in metric_stats.items()]))
    section = None
    for name, caption, png in figures:
        if name != section:
            parts.append(f"<h2>{e(name)}</h2>")
            section = name
        if png is None:  # a note where a figure has no data
            parts.append(f'<p class="note">{e(caption)}</p>')
            continue
        data = base64.b64encode(png).decode()
        parts.append(f'<figure><img alt="{e(caption)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{e(caption)}</figcaption></figure>")
    shots = sorted((run_dir / "web").glob("*.png")) if (run_dir / "web").is_dir() else []
    if shots:  # screenshots of the browser view (lasernet up --web), linked rather than embedded: they are large
        parts.append("<h2>Browser view</h2><ul>" + "".join(
            f'<li><a href="web/{e(p.name)}">{e(p.name)}</a></li>' for p in shots)
            + "</ul><p class=\"note\">Replay the run in a browser with <code>lasernet web "
            + e(str(run_dir)) + "</code>.</p>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:90%}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#eee}"
             "tr.failed td{background:#fdd}img{max-width:100%}figcaption{color:#555;font-size:90%}"
             "p.note{color:#555;font-style:italic}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>lasernet report</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
