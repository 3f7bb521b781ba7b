"""The report's figures, drawn with matplotlib (Agg, no display) from a run's CSV files and plan: one function each.

Every function takes the data it draws (arrays or parsed CSV rows, never a path) and returns a matplotlib
``Figure``; :func:`save_png` writes one. Times on the x axes are emulated seconds since the run's start.

:func:`constellation_map` draws the constellation at one instant on a plain equirectangular lon/lat map (no
cartopy, nothing downloaded): land from a 1-degree mask shipped with lasernet (``lasernet/data/land-1deg.npz``,
made from the GLOBE 1 km land mask by ``scripts/make_landmask.py``), each satellite's ground track around the
instant, inter-satellite links that are up (solid) and candidate ones that are down (dotted), ground stations
and their ground links. Lines that cross the antimeridian are drawn on both sides of it. Given the instant's
subsolar point it shades the night side of the Earth (the Sun's centre below the horizon) and outlines the
terminator; given each satellite's visible solar fraction it draws satellites sunlit, in the penumbra and in the
umbra each in their own style (:data:`SAT_ILLUMINATION_STYLE`). The same map serves 40 satellites and 4,000:
:mod:`lasernet.measure.maplayout` sizes the marks from an ink budget (smaller dots, thinner and fainter ISLs,
ISLs between planes fainter than those along a plane, a sample of the ground tracks, down ISLs only when few)
while the legend keeps the true counts, places labels only where they fit (stations first), and for a formation
too small for a world map adds an inset in its local frame, in metres.

For orbital data centres (:mod:`lasernet.measure.datacentre` computes the numbers): the share of each plane's
satellites in each illumination or power state over time (:func:`state_shares_per_plane`), the compute the power
states allow (:func:`compute_available`) and upsets and manoeuvres per plane on a timeline (:func:`fault_timeline`);
a training ring's rounds and compute phases under its members' power states (:func:`training_rounds`, numbers from
:mod:`lasernet.measure.training`).
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import maplayout  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "data"
COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def save_png(fig, path: Path | None = None, dpi: int = 110) -> bytes:
    """PNG bytes of ``fig`` (also written to ``path`` if given); the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    data = buf.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def rtt_over_time(pairs: dict[str, dict]) -> plt.Figure:
    """Measured vs predicted RTT per probe pair. ``pairs[name]`` has arrays t_s, measured_ms, predicted_ms."""
    n = max(1, len(pairs))
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.4 * n + 0.6), sharex=True, squeeze=False)
    for ax, (name, d) in zip(axes[:, 0], pairs.items()):
        t, meas, pred = d["t_s"], d["measured_ms"], d["predicted_ms"]
        ok = np.isfinite(meas)
        ax.plot(t[ok], meas[ok], ".", ms=3, color=COLORS[0], label="measured")
        ax.plot(t, pred, "-", lw=1.5, color=COLORS[1], label="predicted (light time along the oracle path)")
        lost = ~ok
        if lost.any():
            floor = np.nanmin(np.concatenate([meas[ok], pred[np.isfinite(pred)], [0.0]]))
            ax.plot(t[lost], np.full(lost.sum(), floor), "x", ms=4, color="red", label=f"lost ({lost.sum()})")
        ax.set_ylabel("RTT ms")
        ax.set_title(name, fontsize=10, loc="left")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    axes[-1, 0].set_xlabel("emulated time s")
    fig.tight_layout()
    return fig


def links_over_time(t_s: np.ndarray, isl_up: np.ndarray, gsl_up: np.ndarray, delay_ms_pct: np.ndarray,
                    applied: tuple[np.ndarray, np.ndarray] | None = None) -> plt.Figure:
    """Links up (planned; applied by the driver if given) and the up ISLs' one-way delay percentiles over time.

    ``delay_ms_pct`` is (T, 5): the 0th, 10th, 50th, 90th and 100th percentiles at each step.
    """
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True)
    a1.step(t_s, isl_up, where="post", label="ISLs up (plan)", color=COLORS[0])
    a1.step(t_s, gsl_up, where="post", label="ground links up (plan)", color=COLORS[2])
    if applied is not None and len(applied[0]):
        a1.step(applied[0], applied[1], where="post", ls="--", color="black", lw=1, label="all links up (applied)")
    a1.set_ylabel("links up")
    a1.grid(alpha=0.3)
    a1.legend(fontsize=8)
    ok = np.isfinite(delay_ms_pct[:, 2])
    a2.fill_between(t_s[ok], delay_ms_pct[ok, 0], delay_ms_pct[ok, 4], alpha=0.15, color=COLORS[0], label="min-max")
    a2.fill_between(t_s[ok], delay_ms_pct[ok, 1], delay_ms_pct[ok, 3], alpha=0.35, color=COLORS[0], label="p10-p90")
    a2.plot(t_s[ok], delay_ms_pct[ok, 2], color=COLORS[0], label="median")
    a2.set_ylabel("ISL one-way delay ms")
    a2.set_xlabel("emulated time s")
    a2.grid(alpha=0.3)
    a2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def route_changes(route_t: np.ndarray, route_n: np.ndarray, link_t: np.ndarray, link_up: np.ndarray,
                  path_changes: dict[str, np.ndarray]) -> plt.Figure:
    """Routes changed per tick, link up/down events as applied, and when each probe pair's path changed."""
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(10, 5), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    if len(route_t):
        a1.vlines(route_t, 0, route_n, color=COLORS[0], lw=1.5, label="routes changed in a tick")
        a1.set_yscale("symlog")
    for t, up in zip(link_t, link_up):
        a1.axvline(t, color="green" if up else "red", alpha=0.25, lw=0.8)
    a1.plot([], [], color="green", alpha=0.5, label="link up")
    a1.plot([], [], color="red", alpha=0.5, label="link down")
    a1.set_ylabel("route changes")
    a1.grid(alpha=0.3)
    a1.legend(fontsize=8)
    for k, (name, times) in enumerate(path_changes.items()):
        a2.plot(times, np.full(len(times), k), "|", ms=14, mew=2, color=COLORS[k % len(COLORS)])
    a2.set_yticks(range(len(path_changes)), list(path_changes), fontsize=8)
    a2.set_ylim(-0.7, max(len(path_changes), 1) - 0.3)
    a2.set_title("probe path changes", fontsize=9, loc="left")
    a2.set_xlabel("emulated time s")
    a2.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def throughput(flows: dict[str, tuple[np.ndarray, np.ndarray]]) -> plt.Figure:
    """iperf3 throughput over time per flow: ``flows[name] = (t_s, bits_per_second)``."""
    fig, ax = plt.subplots(figsize=(10, 3.2))
    for name, (t, bps) in flows.items():
        ax.step(t, bps / 1e6, where="pre", label=name)
    ax.set_ylabel("throughput Mbit/s")
    ax.set_xlabel("emulated time s")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def app_metric(name: str, series: dict[str, tuple[np.ndarray, np.ndarray]], bin_s: float) -> plt.Figure:
    """One application metric over time: every value per node (points), and the median and p99 per time bin."""
    fig, ax = plt.subplots(figsize=(10, 3.2))
    all_t, all_v = [], []
    for k, (node, (t, v)) in enumerate(series.items()):
        ax.plot(t, v, ".", ms=3, alpha=0.6, color=COLORS[k % len(COLORS)], label=node)
        all_t.append(t)
        all_v.append(v)
    t, v = np.concatenate(all_t), np.concatenate(all_v)
    if len(t) > 10 and bin_s > 0:
        edges = np.arange(np.floor(t.min() / bin_s) * bin_s, t.max() + bin_s, bin_s)
        idx = np.digitize(t, edges) - 1
        mids, p50, p99 = [], [], []
        for b in range(len(edges) - 1):
            sel = v[idx == b]
            mids.append(edges[b] + bin_s / 2)  # an empty bin breaks the lines: no value is drawn across it
            p50.append(np.median(sel) if len(sel) else np.nan)
            p99.append(np.percentile(sel, 99) if len(sel) else np.nan)
        ax.plot(mids, p50, "-", color="black", lw=1.5, label=f"median per {bin_s:g} s")
        ax.plot(mids, p99, "--", color="black", lw=1, label=f"p99 per {bin_s:g} s")
    ax.set_title(name, fontsize=10, loc="left")
    ax.set_xlabel("emulated time s")
    ax.grid(alpha=0.3)
    if len(series) <= 12:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def eo_pipeline(produced: dict[str, np.ndarray], backlog: dict[str, np.ndarray], ground: list[dict],
                mode: str) -> plt.Figure:
    """Earth observation (:mod:`lasernet.measure.eo`): per producer its capture intervals (bars at the top of the
    first panel) and backlog over time (lines, MB); the bytes at the ground, cumulative per source; each chunk's
    age at arrival (capture end to arrival). ``produced[node]`` rows are (seq, start_s, end_s, bytes),
    ``backlog[node]`` rows (t_s, bytes), ``ground`` the chunks as :func:`lasernet.measure.eo.read_run` gives."""
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    ax = axes[0]
    nodes = list(produced)
    top = max([b[:, 1].max() / 1e6 for b in backlog.values() if len(b)] + [1.0])
    for k, node in enumerate(nodes + [n for n in backlog if n not in produced]):
        color = COLORS[k % len(COLORS)]
        b = backlog.get(node)
        if b is not None and len(b):
            ax.step(b[:, 0], b[:, 1] / 1e6, where="post", color=color, lw=1.2,
                    label=f"{node} backlog" + ("" if node in produced else " (compute)"))
        rows = produced.get(node)
        if rows is not None and len(rows):
            y = top * (1.08 + 0.06 * k)
            ax.hlines(np.full(len(rows), y), rows[:, 1], rows[:, 2], color=color, lw=4)
    ax.set_ylabel("backlog MB")
    ax.set_title(f"{mode}: capture over land (bars) and backlog onboard", fontsize=10, loc="left")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax = axes[1]
    for k, node in enumerate(sorted({r["source"] for r in ground})):
        got = [r for r in ground if r["source"] == node]
        t = np.array([r["arrival_s"] for r in got])
        ax.step(t, np.cumsum([r["bytes"] for r in got]) / 1e6, where="post", color=COLORS[nodes.index(node)
                if node in nodes else k % len(COLORS)], label=node)
    ax.set_ylabel("at the ground MB")
    ax.set_title("bytes downlinked (cumulative per source)", fontsize=10, loc="left")
    if ground:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax = axes[2]
    for k, node in enumerate(nodes):
        got = [r for r in ground if r["source"] == node]
        ax.plot([r["arrival_s"] for r in got], [r["arrival_s"] - r["capture_end_s"] for r in got], ".", ms=4,
                color=COLORS[k % len(COLORS)], label=node)
    ax.set_ylabel("age at arrival s")
    ax.set_xlabel("emulated time s")
    ax.set_title("age of each chunk at the ground (capture end to arrival)", fontsize=10, loc="left")
    for a in axes:
        a.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------------------
# Orbital data centres: shadow, power, compute, faults (numbers from lasernet.measure.datacentre)

#: Colours of the illumination states (lasernet.geometry.ILLUMINATION) and power states (lasernet.power).
ILLUMINATION_COLORS = {"umbra": "#1a1a2e", "penumbra": "#8c8c8c", "sunlit": "#f5b700"}
POWER_COLORS = {"off": "#d62728", "throttled": "#ff7f0e", "nominal": "#2ca02c"}
FAULT_STYLE = {"upset": dict(marker="x", color="#9467bd"), "upset-saa": dict(marker="x", color="#d62728"),
               "conjunction": dict(marker="^", color="#1f77b4")}


def state_shares_per_plane(t_s: np.ndarray, planes: list[str], shares: np.ndarray, states: tuple[str, ...],
                           colors: dict[str, str], what: str) -> plt.Figure:
    """One row per plane: the share of its satellites in each state over time, stacked (first state at the
    bottom). ``shares`` is (T, P, K) for the P ``planes`` and K ``states``; ``what`` names the states' kind."""
    n = max(1, len(planes))
    fig, axes = plt.subplots(n, 1, figsize=(10, 0.9 * n + 1.2), sharex=True, squeeze=False)
    for p, ax in enumerate(axes[:, 0]):
        ax.stackplot(t_s, np.nan_to_num(shares[:, p, :]).T * 100, colors=[colors[s] for s in states],
                     step="post", labels=states, linewidth=0)
        ax.set_ylim(0, 100)
        ax.set_yticks([0, 50, 100])
        ax.set_ylabel(planes[p] if planes else "", rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.margins(x=0)
    axes[0, 0].set_title(f"{what}: share of each plane's satellites, %", fontsize=10, loc="left")
    axes[0, 0].legend(fontsize=8, loc="upper right", ncol=len(states), bbox_to_anchor=(1, 1.9))
    axes[-1, 0].set_xlabel("emulated time s")
    fig.tight_layout(h_pad=0.2)
    return fig


def training_rounds(t_s: np.ndarray, members: list[str], member_state: np.ndarray,
                    rounds: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                    compute: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                    states: tuple[str, ...]) -> plt.Figure:
    """A training ring under its power states (numbers from :mod:`lasernet.measure.training`): one band per
    member and one for the ring (their lowest) coloured by planned power state over ``t_s``; below, each
    round's time at its start, coloured by the ring's state then (``rounds`` = t_start_s, round_s, state
    codes, steady; hollow: the state changed while it ran), and each member's compute phases
    (``compute[m]`` = t_s, compute_s, state codes of its own satellite, steady)."""
    fig, axes = plt.subplots(3, 1, figsize=(10, 7.2), sharex=True, gridspec_kw={"height_ratios": [1.2, 2, 2]})
    a0, a1, a2 = axes
    labels = members + ["ring"]
    for j in range(member_state.shape[1]):
        for c, name in enumerate(states):
            on = member_state[:, j] == c
            a0.fill_between(t_s, j - 0.4, j + 0.4, where=on, step="post", color=POWER_COLORS[name], lw=0,
                            label=name if j == 0 else None)
    a0.set_yticks(range(len(labels)), labels, fontsize=8)
    a0.set_ylim(len(labels) - 0.5, -0.5)
    a0.set_title("power state (plan) of each member's satellite and of the ring", fontsize=10, loc="left")
    a0.legend(fontsize=8, loc="upper right", ncol=len(states), bbox_to_anchor=(1, 1.45))
    t0, wall, at, steady = rounds
    for c, name in enumerate(states):
        for ok, face in ((True, POWER_COLORS[name]), (False, "none")):
            sel = (at == c) & (steady == ok)
            if sel.any():
                a1.scatter(t0[sel], wall[sel], s=18, facecolors=face, edgecolors=POWER_COLORS[name],
                           label=f"{name}{'' if ok else ', changed during the round'} ({sel.sum()})")
    a1.set_ylabel("round s (wall)")
    a1.set_ylim(bottom=0)
    a1.grid(alpha=0.3)
    a1.legend(fontsize=7, loc="upper left")
    markers = "osD^v<>p"
    for k, (m, (t, cs, st, ok)) in enumerate(compute.items()):
        colors = np.array([POWER_COLORS[states[c]] for c in st]) if len(st) else np.zeros(0)
        if len(t):
            a2.scatter(t[ok], cs[ok], s=14, c=colors[ok], marker=markers[k % len(markers)], label=m)
            a2.scatter(t[~ok], cs[~ok], s=14, facecolors="none", edgecolors=colors[~ok],
                       marker=markers[k % len(markers)])
    a2.set_ylabel("compute s (wall)")
    a2.set_ylim(bottom=0)
    a2.grid(alpha=0.3)
    a2.legend(fontsize=7, loc="upper left", ncol=len(compute))
    a2.set_xlabel("emulated time s")
    fig.tight_layout()
    return fig


def compute_available(t_s: np.ndarray, available: np.ndarray, unit: str, configured: float,
                      servers: tuple[np.ndarray, tuple[np.ndarray, np.ndarray]] | None = None) -> plt.Figure:
    """Compute the power states allow over time (plan; ``configured`` is all of it at quota 1) and, with
    ``servers`` = (planned CPUs (T,), (t_s, CPUs) as applied), the satellites' servers' CPUs."""
    rows = 2 if servers is not None else 1
    fig, axes = plt.subplots(rows, 1, figsize=(10, 2.8 * rows + 0.4), sharex=True, squeeze=False)
    a1 = axes[0, 0]
    scale, label = (1e3, "kW") if unit == "W" else (1.0, unit)
    a1.step(t_s, available / scale, where="post", color=COLORS[2], label="available (plan)")
    a1.axhline(configured / scale, color="black", ls=":", lw=1, label=f"configured ({configured / scale:g} {label})")
    a1.set_ylim(0, max(configured / scale, 1e-9) * 1.08)
    a1.set_ylabel(f"compute {label}")
    a1.grid(alpha=0.3)
    a1.legend(fontsize=8, loc="lower left")
    if servers is not None:
        planned, (at_s, applied) = servers
        a2 = axes[1, 0]
        a2.step(t_s, planned, where="post", color=COLORS[0], label="servers' CPUs (plan)")
        if len(at_s):
            a2.step(at_s, applied, where="post", ls="--", color="black", lw=1, label="servers' CPUs (applied)")
        a2.set_ylim(0, max(float(np.max(planned, initial=0)), float(np.max(applied, initial=0)), 1e-9) * 1.08)
        a2.set_ylabel("CPUs")
        a2.grid(alpha=0.3)
        a2.legend(fontsize=8, loc="lower left")
    axes[-1, 0].set_xlabel("emulated time s")
    fig.tight_layout()
    return fig


def fault_timeline(planes: list[str], planned: dict[str, tuple[np.ndarray, np.ndarray]],
                   applied: tuple[np.ndarray, np.ndarray], end_s: float, labels: dict[str, str]) -> plt.Figure:
    """Upsets and manoeuvres over time, one row per plane: ``planned[cause] = (t_s, plane index)``; ``applied``
    (t_s, plane index) are the server restarts the driver applied, drawn as rings on the same rows."""
    fig, ax = plt.subplots(figsize=(10, min(0.28 * max(len(planes), 4) + 1.4, 14)))
    for cause, (t, p) in planned.items():
        style = FAULT_STYLE.get(cause, dict(marker="o", color="grey"))
        ax.scatter(t, p, s=30, linewidths=1.2, label=f"{labels.get(cause, cause)} ({len(t)})", zorder=3, **style)
    if len(applied[0]):
        ax.scatter(applied[0], applied[1], s=70, facecolors="none", edgecolors="black", linewidths=0.8,
                   label=f"server restarted (applied, {len(applied[0])})", zorder=2)
    ax.set_yticks(range(len(planes)), planes, fontsize=7 if len(planes) > 20 else 8)
    ax.set_ylim(len(planes) - 0.5, -0.5)
    ax.set_xlim(0, max(end_s, 1.0))
    ax.set_xlabel("emulated time s")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------------------
# The map

def land_mask() -> np.ndarray:
    """(180, 360) bool, True over land; row 0 is 89.5 degrees south, column 0 is 179.5 degrees west."""
    with np.load(DATA / "land-1deg.npz") as z:
        return np.unpackbits(z["land"], axis=1, count=int(z["cols"])).astype(bool)


def lonlat_deg(pos_km: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Geocentric longitude and latitude (degrees) of Earth-fixed positions (..., 3)."""
    x, y, z = pos_km[..., 0], pos_km[..., 1], pos_km[..., 2]
    return np.degrees(np.arctan2(y, x)), np.degrees(np.arctan2(z, np.hypot(x, y)))


def _segments(lon_a, lat_a, lon_b, lat_b):
    """Straight lon/lat segments; one crossing the antimeridian becomes two, one on each side."""
    out = []
    for x0, y0, x1, y1 in zip(lon_a, lat_a, lon_b, lat_b):
        if abs(x1 - x0) <= 180:
            out.append(((x0, y0), (x1, y1)))
        else:
            shift = 360 if x1 < x0 else -360
            out.append(((x0, y0), (x1 + shift, y1)))
            out.append(((x0 - shift, y0), (x1, y1)))
    return out


#: How the map draws a satellite in each illumination state (scatter keywords); without illumination, SAT_STYLE.
SAT_STYLE = dict(color="#1f3b73")
SAT_ILLUMINATION_STYLE = {"sunlit": dict(color=ILLUMINATION_COLORS["sunlit"], edgecolors="#1f3b73"),
                          "penumbra": dict(color=ILLUMINATION_COLORS["penumbra"], edgecolors="black"),
                          "umbra": dict(color="black", edgecolors="white")}
NIGHT_RGBA = (0.05, 0.05, 0.25, 0.28)  # the night side's shading over the land mask
NIGHT_GRID_DEG = 0.5


def night_shading(ax, subsolar_lat_deg: float, subsolar_lon_deg: float) -> None:
    """Shade the night side (the Sun's centre below the horizon), outline the terminator and mark the subsolar
    point (gid ``subsolar``), on a grid of ``NIGHT_GRID_DEG`` cells."""
    from ..geometry import solar_elevation_deg

    step = NIGHT_GRID_DEG
    lat = np.arange(-90 + step / 2, 90, step)
    lon = np.arange(-180 + step / 2, 180, step)
    elevation = solar_elevation_deg(lat[:, None], lon[None, :], subsolar_lat_deg, subsolar_lon_deg)
    rgba = np.zeros(elevation.shape + (4,))
    rgba[elevation < 0] = NIGHT_RGBA
    ax.imshow(rgba, origin="lower", extent=(-180, 180, -90, 90), interpolation="nearest", zorder=0.5)
    ax.contour(lon, lat, elevation, levels=[0.0], colors="#1a1a2e", linewidths=0.6, alpha=0.6, zorder=0.6)
    ax.plot([subsolar_lon_deg], [subsolar_lat_deg], marker="o", ms=9, color="#f5b700", markeredgecolor="black",
            ls="none", zorder=4.5, gid="subsolar", label="subsolar point, night shaded")


#: Styles of the map's marks beyond the satellites' (SAT_STYLE, SAT_ILLUMINATION_STYLE).
ISL_UP_COLOR = "#1f77b4"
ISL_ACROSS_COLOR = "#5f9e6e"  # up ISLs between planes, when the map knows the planes
ISL_DOWN_COLOR = "#d62728"
TRACK_COLOR = "#9bb4d0"
GSL_COLOR = "#ff7f0e"
GSL_RF_COLOR = "#9467bd"
SAT_LABEL_PT = 5.0  # font sizes, points
STATION_LABEL_PT = 7.0
STATION_MARKER_PT2 = 40.0
LABEL_EM = 0.62  # a label's width per character, in units of its font size (DejaVu Sans, digits and lower case)


def _points(ax, x, y) -> tuple[np.ndarray, np.ndarray]:
    """Data coordinates of ``ax`` to display points (the units of maplayout's boxes)."""
    xy = ax.transData.transform(np.column_stack([x, y])) * 72.0 / ax.figure.dpi
    return xy[:, 0], xy[:, 1]


def _bbox_pt(artist, renderer) -> np.ndarray:
    b = artist.get_window_extent(renderer)
    return np.array([b.x0, b.y0, b.x1, b.y1]) * 72.0 / artist.figure.dpi


def _label(ax, names, x, y, fontsize: float, marker_pt: float, priority=None, obstacles=(), zorder: float = 7,
           **style) -> np.ndarray:
    """Annotate the points (data coordinates) whose labels fit (:func:`maplayout.place_labels`); returns the boxes
    placed (display points, NaN rows for labels left out) so that later labels can avoid them. ``marker_pt``: the
    points' markers' size, which the labels keep clear of."""
    px, py = _points(ax, x, y)
    widths = np.array([LABEL_EM * fontsize * len(n) for n in names])
    bounds = _bbox_pt(ax, None)
    obstacles = np.concatenate([np.asarray(o, dtype=float).reshape(-1, 4) for o in obstacles] or [np.empty((0, 4))])
    boxes = maplayout.place_labels(px, py, widths, 1.2 * fontsize, priority=priority, obstacles=obstacles,
                                   bounds=bounds, gap=marker_pt / 2 + 1.0)
    for name, xd, yd, x0, y0, box in zip(names, x, y, px, py, boxes):
        if np.isfinite(box[0]):
            ax.annotate(name, (xd, yd), xytext=(box[0] - x0, box[1] - y0), textcoords="offset points",
                        fontsize=fontsize, ha="left", va="bottom", zorder=zorder, annotation_clip=False, **style)
    return boxes


def constellation_map(when: dt.datetime, sat_names, sat_pos_km: np.ndarray, track_pos_km: np.ndarray,
                      stations: list[tuple[str, float, float]], isl_up: list[tuple[int, int]],
                      isl_down: list[tuple[int, int]], gsl_up: list[tuple[int, int]], title: str = "",
                      illumination: np.ndarray | None = None,
                      subsolar_deg: tuple[float, float] | None = None,
                      gsl_rf: list[tuple[int, int]] = (), sat_plane: np.ndarray | None = None,
                      sat_velocity_km_s: np.ndarray | None = None) -> plt.Figure:
    """The constellation at ``when``.

    ``sat_pos_km`` (N, 3) are Earth-fixed positions at the instant, ``track_pos_km`` (K, N', 3) around it (of N'
    satellites, a sample of them if N' < N); ``stations`` are (name, lat_deg, lon_deg); link lists hold
    (satellite, satellite) indices for ISLs and (station, satellite) indices for ground links (``gsl_rf``: those up
    on their station's RF fallback, dashed). With ``illumination`` (N,), the visible solar fraction of each
    satellite, satellites are drawn by state (:data:`SAT_ILLUMINATION_STYLE`, one scatter each with gid
    ``satellites-<state>``); with ``subsolar_deg`` (lat, lon), the night side is shaded (:func:`night_shading`).
    With ``sat_plane`` (N,), a key per satellite equal within one orbital plane, up ISLs between planes are drawn
    in their own colour.

    Marks shrink and fade with the constellation's size (:func:`lasernet.measure.maplayout.map_scale`); the legend
    always gives the true counts. Labels are drawn where they fit, stations first. A formation
    (:func:`lasernet.measure.maplayout.is_formation`) gets an inset (gid ``formation``) in its local frame, in
    metres: along-track and cross-track with ``sat_velocity_km_s`` (N, 3; inertial, Earth-fixed axes), else east
    and north.
    """
    from matplotlib.collections import LineCollection

    from ..geometry import ILLUMINATION, illumination_state

    n_sat = len(sat_names)
    fig, ax = plt.subplots(figsize=(12, 6.4))
    ax.set_xlim(-180, 180)
    ax.set_ylim(-90, 90)
    ax.set_xticks(range(-180, 181, 30))
    ax.set_yticks(range(-90, 91, 30))
    ax.set_xlabel("longitude deg")
    ax.set_ylabel("latitude deg")
    ax.set_aspect("equal")
    ax.grid(alpha=0.25)
    stamp = when.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    ax.set_title(f"{title} at {stamp}" if title else stamp, fontsize=11)
    fig.tight_layout()
    ax.apply_aspect()  # the layout is final from here: marks and labels are sized in display points
    pt_per_deg = (_bbox_pt(ax, None)[2] - _bbox_pt(ax, None)[0]) / 360.0

    ax.imshow(land_mask(), origin="lower", extent=(-180, 180, -90, 90), cmap="Greys", vmin=0, vmax=4,
              interpolation="nearest", zorder=0)
    if subsolar_deg is not None:
        night_shading(ax, *subsolar_deg)
    lon, lat = lonlat_deg(sat_pos_km)
    up = np.array(isl_up, dtype=int).reshape(-1, 2)
    down = np.array(isl_down, dtype=int).reshape(-1, 2)
    formation = maplayout.is_formation(sat_pos_km)
    scale = maplayout.map_scale(
        n_sat, len(up), len(down), pt_per_deg=pt_per_deg,
        mean_link_deg=maplayout.mean_length_deg(lon[up[:, 0]], lat[up[:, 0]], lon[up[:, 1]], lat[up[:, 1]]),
        area_deg2=maplayout.occupied_deg2(lon, lat))

    n_tracks = 0
    if len(track_pos_km):
        tlon, tlat = lonlat_deg(track_pos_km)
        k = tlon.shape[1]
        wanted = 1 if formation else scale.tracks
        cols = np.arange(k) if wanted is None or wanted >= k else np.linspace(0, k - 1, wanted).round().astype(int)
        segs = []
        for n in cols:
            segs += _segments(tlon[:-1, n], tlat[:-1, n], tlon[1:, n], tlat[1:, n])
        ax.add_collection(LineCollection(segs, colors=TRACK_COLOR, linewidths=0.5 if len(cols) > 50 else 0.8,
                                         zorder=1, gid="tracks"))
        n_tracks = len(cols)
    if len(down) and scale.down_isls:
        a, b = down.T
        ax.add_collection(LineCollection(_segments(lon[a], lat[a], lon[b], lat[b]), colors=ISL_DOWN_COLOR,
                                         linewidths=0.7, linestyles=":", alpha=0.6, zorder=2, gid="isl-down"))
    across = np.zeros(len(up), dtype=bool)
    if sat_plane is not None and len(up):
        plane = np.asarray(sat_plane)
        across = plane[up[:, 0]] != plane[up[:, 1]]
    for sel, color, alpha, gid in ((~across, ISL_UP_COLOR, scale.isl_alpha, "isl-up"),
                                   (across, ISL_ACROSS_COLOR, scale.isl_across_alpha, "isl-up-across")):
        if sel.any():
            a, b = up[sel].T
            ax.add_collection(LineCollection(_segments(lon[a], lat[a], lon[b], lat[b]), colors=color,
                                             linewidths=scale.isl_width_pt, alpha=alpha, zorder=3, gid=gid))
    edge_pt = 0.6 if scale.marker_pt2 >= 9 else 0.0  # an edge round a 1.4-point dot would be all the dot
    marker = dict(s=scale.marker_pt2, alpha=scale.marker_alpha if scale.marker_alpha < 1 else None, zorder=4)
    # the legend shows every mark at the small-map size (proxies: a 1.4-point dot would not be seen there)
    if illumination is None:
        ax.scatter(lon, lat, linewidths=edge_pt, gid="satellites", **marker, **SAT_STYLE)
    else:
        state = illumination_state(illumination)
        for code, name in enumerate(ILLUMINATION):
            sel = state == code
            ax.scatter(lon[sel], lat[sel], linewidths=edge_pt, gid=f"satellites-{name}", **marker,
                       **SAT_ILLUMINATION_STYLE[name])
            ax.scatter([], [], s=maplayout.MARKER_MAX_PT2, linewidths=0.6, label=f"satellite {name} ({int(sel.sum())})",
                       **SAT_ILLUMINATION_STYLE[name])

    # the legend, then the labels around it (it is an obstacle to them)
    ax.plot([], [], color=ISL_UP_COLOR, label=f"ISL up ({len(up)})")
    if across.any():
        ax.plot([], [], color=ISL_ACROSS_COLOR, label=f"  of which between planes ({int(across.sum())})")
    ax.plot([], [], color=ISL_DOWN_COLOR, ls=":",
            label=f"ISL down ({len(down)}{'' if scale.down_isls or not len(down) else ', not drawn'})")
    ax.plot([], [], color=GSL_COLOR, label=f"ground link up ({len(gsl_up)})")
    if len(gsl_rf):
        ax.plot([], [], color=GSL_RF_COLOR, ls="--", label=f"ground link on RF ({len(gsl_rf)})")
    if n_tracks:
        ax.plot([], [], color=TRACK_COLOR, label="ground tracks" if n_tracks >= n_sat
                else f"ground tracks ({n_tracks} of {n_sat} satellites)")
    legend = ax.legend(fontsize=8, loc="lower left")
    renderer = fig.canvas.get_renderer()
    taken = [_bbox_pt(legend, renderer)]
    if subsolar_deg is not None:
        taken.append(maplayout.marker_boxes(*_points(ax, [subsolar_deg[1]], [subsolar_deg[0]]), 9.0))

    if formation:
        taken.append(_formation_inset(ax, sat_names, sat_pos_km, up, down, sat_velocity_km_s, illumination))
    if stations:
        slat = np.array([s[1] for s in stations])
        slon = np.array([s[2] for s in stations])
        for links, color, ls in ((gsl_up, GSL_COLOR, "-"), (gsl_rf, GSL_RF_COLOR, "--")):
            if len(links):
                g, n = np.array(links).T
                ax.add_collection(LineCollection(_segments(slon[g], slat[g], lon[n], lat[n]), colors=color,
                                                 linewidths=1.4, linestyles=ls, zorder=3))
        ax.scatter(slon, slat, marker="^", s=STATION_MARKER_PT2, color=GSL_COLOR, edgecolor="black", zorder=6,
                   gid="stations")
        taken.append(maplayout.marker_boxes(*_points(ax, slon, slat), np.sqrt(STATION_MARKER_PT2)))
        taken.append(_label(ax, [s[0] for s in stations], slon, slat, STATION_LABEL_PT, np.sqrt(STATION_MARKER_PT2),
                            obstacles=taken,
                            gid="station-labels"))
    if not formation and scale.sat_labels:
        sat_boxes = maplayout.marker_boxes(*_points(ax, lon, lat), np.sqrt(scale.marker_pt2))
        _label(ax, list(sat_names), lon, lat, SAT_LABEL_PT, np.sqrt(scale.marker_pt2), obstacles=taken + [sat_boxes],
               zorder=5)
    return fig


def _formation_inset(ax, sat_names, sat_pos_km, up, down, velocity_km_s, illumination):
    """The formation in its local frame (metres) in an inset of ``ax`` (gid ``formation``), in the corner of the
    map farthest from it, with a line to where it is; returns the inset's box (display points)."""
    from matplotlib.collections import LineCollection

    from ..geometry import ILLUMINATION, illumination_state

    frame = maplayout.local_frame_m(sat_pos_km, velocity_km_s=velocity_km_s)
    x, y, z = frame.positions_m.T
    lon0, lat0 = lonlat_deg(frame.centre_km)
    corners = {(0.62, 0.52): (120.0, 45.0), (0.02, 0.52): (-120.0, 45.0), (0.62, 0.04): (120.0, -45.0)}
    (left, bottom), _ = max(corners.items(), key=lambda kv: np.hypot(kv[1][0] - lon0, kv[1][1] - lat0))
    inset = ax.inset_axes([left, bottom, 0.36, 0.44], zorder=8)
    inset.set_gid("formation")
    inset.set_facecolor((1, 1, 1, 0.93))
    for sel, style, gid in ((down, dict(colors=ISL_DOWN_COLOR, linestyles=":", alpha=0.7), "formation-isl-down"),
                            (up, dict(colors=ISL_UP_COLOR), "formation-isl-up")):
        if len(sel):
            a, b = sel.T
            inset.add_collection(LineCollection(np.stack([np.column_stack([x[a], y[a]]),
                                                          np.column_stack([x[b], y[b]])], axis=1),
                                                linewidths=0.8, zorder=2, gid=gid, **style))
    if illumination is None:
        colors = [SAT_STYLE["color"]] * len(x)
    else:
        colors = [SAT_ILLUMINATION_STYLE[ILLUMINATION[c]]["color"] for c in illumination_state(illumination)]
    inset.scatter(x, y, s=18, c=colors, edgecolors="#1f3b73", linewidths=0.5, zorder=3, gid="formation-satellites")
    inset.set_aspect("equal", adjustable="datalim")
    inset.margins(0.12)
    inset.set_xlabel(f"{frame.axis_names[0]} m", fontsize=7, labelpad=1)
    inset.set_ylabel(f"{frame.axis_names[1]} m", fontsize=7, labelpad=1)
    inset.tick_params(labelsize=6, pad=1)
    inset.grid(alpha=0.3)
    inset.set_title(f"{len(x)} satellites within {maplayout.extent_km(sat_pos_km) * 1000:,.0f} m; "
                    f"{frame.axis_names[2]} {np.ptp(z):,.1f} m apart at most", fontsize=7, pad=2)
    inset.apply_aspect()
    boxes = maplayout.marker_boxes(*_points(inset, x, y), np.sqrt(18.0))
    _label(inset, list(sat_names), x, y, SAT_LABEL_PT, np.sqrt(18.0), obstacles=[boxes], zorder=5)
    ax.plot([lon0], [lat0], marker="s", ms=9, mfc="none", mec="black", mew=1.2, ls="none", zorder=7,
            gid="formation-here")
    corner = (left + (0.0 if left > 0.5 else 0.36), bottom + (0.0 if bottom > 0.3 else 0.44))
    ax.annotate("", (lon0, lat0), xytext=corner, textcoords="axes fraction", zorder=7,
                arrowprops=dict(arrowstyle="-", color="black", lw=0.8, shrinkA=0, shrinkB=5))
    return _bbox_pt(inset, ax.figure.canvas.get_renderer())
