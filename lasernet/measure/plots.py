"""The report's figures, drawn with matplotlib (Agg, no display) from a run's CSV files and plan: one function each.

Every function takes the data it draws (arrays or parsed CSV rows, never a path) and returns a matplotlib
``Figure``; :func:`save_png` writes one. Times on the x axes are emulated seconds since the run's start.

:func:`constellation_map` draws the constellation at one instant on a plain equirectangular lon/lat map (no
cartopy, nothing downloaded): land from a 1-degree mask shipped with lasernet (``lasernet/data/land-1deg.npz``,
made from the GLOBE 1 km land mask by ``scripts/make_landmask.py``), each satellite's ground track around the
instant, inter-satellite links that are up (solid) and candidate ones that are down (dotted), ground stations
and their ground links. Lines that cross the antimeridian are drawn on both sides of it.
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

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


def constellation_map(when: dt.datetime, sat_names, sat_pos_km: np.ndarray, track_pos_km: np.ndarray,
                      stations: list[tuple[str, float, float]], isl_up: list[tuple[int, int]],
                      isl_down: list[tuple[int, int]], gsl_up: list[tuple[int, int]], title: str = "",
                      gsl_rf: list[tuple[int, int]] = ()) -> plt.Figure:
    """The constellation at ``when``.

    ``sat_pos_km`` (N, 3) are Earth-fixed positions at the instant, ``track_pos_km`` (K, N, 3) around it;
    ``stations`` are (name, lat_deg, lon_deg); link lists hold (satellite, satellite) indices for ISLs and
    (station, satellite) indices for ground links (``gsl_rf``: those up on their station's RF fallback, dashed).
    """
    from matplotlib.collections import LineCollection

    fig, ax = plt.subplots(figsize=(12, 6.4))
    ax.imshow(land_mask(), origin="lower", extent=(-180, 180, -90, 90), cmap="Greys", vmin=0, vmax=4,
              interpolation="nearest", zorder=0)
    lon, lat = lonlat_deg(sat_pos_km)
    if len(track_pos_km):
        tlon, tlat = lonlat_deg(track_pos_km)
        segs = []
        for n in range(tlon.shape[1]):
            segs += _segments(tlon[:-1, n], tlat[:-1, n], tlon[1:, n], tlat[1:, n])
        ax.add_collection(LineCollection(segs, colors="#9bb4d0", linewidths=0.5, zorder=1))
    if isl_down:
        a, b = np.array(isl_down).T
        ax.add_collection(LineCollection(_segments(lon[a], lat[a], lon[b], lat[b]), colors="#d62728",
                                         linewidths=0.7, linestyles=":", alpha=0.6, zorder=2))
    if isl_up:
        a, b = np.array(isl_up).T
        ax.add_collection(LineCollection(_segments(lon[a], lat[a], lon[b], lat[b]), colors="#1f77b4",
                                         linewidths=1.0, zorder=3))
    ax.scatter(lon, lat, s=14, color="#1f3b73", zorder=4)
    if len(sat_names) <= 100:
        for name, x, y in zip(sat_names, lon, lat):
            ax.annotate(name, (x, y), fontsize=5, xytext=(2, 2), textcoords="offset points", zorder=5)
    if stations:
        slat = np.array([s[1] for s in stations])
        slon = np.array([s[2] for s in stations])
        if gsl_up:
            g, n = np.array(gsl_up).T
            ax.add_collection(LineCollection(_segments(slon[g], slat[g], lon[n], lat[n]), colors="#ff7f0e",
                                             linewidths=1.4, zorder=3))
        if len(gsl_rf):
            g, n = np.array(gsl_rf).T
            ax.add_collection(LineCollection(_segments(slon[g], slat[g], lon[n], lat[n]), colors="#9467bd",
                                             linewidths=1.4, linestyles="--", zorder=3))
        ax.scatter(slon, slat, marker="^", s=40, color="#ff7f0e", edgecolor="black", zorder=6)
        if len(stations) <= 40:
            for name, y, x in stations:
                ax.annotate(name, (x, y), fontsize=7, xytext=(3, -9), textcoords="offset points", zorder=7)
    ax.plot([], [], color="#1f77b4", label=f"ISL up ({len(isl_up)})")
    ax.plot([], [], color="#d62728", ls=":", label=f"ISL down ({len(isl_down)})")
    ax.plot([], [], color="#ff7f0e", label=f"ground link up ({len(gsl_up)})")
    if len(gsl_rf):
        ax.plot([], [], color="#9467bd", ls="--", label=f"ground link on RF ({len(gsl_rf)})")
    ax.plot([], [], color="#9bb4d0", label="ground tracks")
    ax.legend(fontsize=8, loc="lower left")
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
    return fig
