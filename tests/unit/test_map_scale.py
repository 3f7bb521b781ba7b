"""Maps that scale: labels that never overlap, a formation's local frame in true metres, and a world map whose ink
stays bounded at Starlink's 1,584 satellites while its legend still counts every link.

The references are independent of :mod:`lasernet.measure.maplayout`: boxes are compared pairwise here, distances
come from the km positions with numpy's norm, and the map's ink is measured from the artists matplotlib was given
(segment length in display points x line width x alpha, marker area x alpha, per 10-degree cell of the map).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

import lasernet
from lasernet.measure import maplayout
from lasernet.measure.report import map_figure
from lasernet.topology import ISL

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"
WHEN = "2026-01-01T00:00:00Z"


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# --------------------------------------------------------------------------------------------------------------
# Labels

def test_placed_labels_never_overlap_each_other_or_obstacles_and_stay_in_bounds():
    rng = np.random.default_rng(7)
    x, y = rng.uniform(0, 400, 300), rng.uniform(0, 200, 300)
    widths, heights = rng.uniform(10, 40, 300), np.full(300, 6.0)
    obstacles = np.array([[100, 50, 160, 90], [300, 120, 340, 190]], dtype=float)
    bounds = (0.0, 0.0, 400.0, 200.0)
    boxes = maplayout.place_labels(x, y, widths, heights, obstacles=obstacles, bounds=bounds)
    placed = boxes[np.isfinite(boxes[:, 0])]
    assert 20 < len(placed) < 300  # a crowd: some fit, some do not
    for a, b in itertools.combinations(placed, 2):
        assert not _overlap(a, b)
    for a in placed:
        assert not any(_overlap(a, o) for o in obstacles)
        assert bounds[0] <= a[0] and a[2] <= bounds[2] and bounds[1] <= a[1] and a[3] <= bounds[3]
    np.testing.assert_allclose(placed[:, 2] - placed[:, 0], widths[np.isfinite(boxes[:, 0])])


def test_a_label_left_out_had_no_free_position_and_one_alone_is_always_placed():
    rng = np.random.default_rng(3)
    x, y = rng.uniform(20, 380, 200), rng.uniform(10, 190, 200)
    widths, heights, bounds = np.full(200, 30.0), np.full(200, 6.0), (0.0, 0.0, 400.0, 200.0)
    boxes = maplayout.place_labels(x, y, widths, heights, bounds=bounds)
    placed = boxes[np.isfinite(boxes[:, 0])]
    for i in np.flatnonzero(~np.isfinite(boxes[:, 0])):  # greedy is maximal: every position was blocked
        for c in maplayout.label_candidates(x[i], y[i], widths[i], heights[i]):
            inside = bounds[0] <= c[0] and c[2] <= bounds[2] and bounds[1] <= c[1] and c[3] <= bounds[3]
            assert not inside or any(_overlap(c, p) for p in placed)
        alone = maplayout.place_labels(x[i:i + 1], y[i:i + 1], widths[i:i + 1], heights[i:i + 1], bounds=bounds)
        assert np.isfinite(alone).all()  # it fits in an empty map: only the others kept it out
    # far apart, every label fits and the first position (north-east of the point) is taken
    far = maplayout.place_labels([10, 200, 390], [10, 100, 190], 20, 6)
    assert np.isfinite(far).all() and (far[:, 0] > [10, 200, 390]).all()
    # a label wider than the map does not fit anywhere
    assert not np.isfinite(maplayout.place_labels([50], [50], [500], [6], bounds=bounds)).any()


def test_labels_go_by_priority_when_two_want_the_same_place():
    boxes = maplayout.place_labels([0, 0], [0, 0], [30, 30], [6, 6], priority=[1, 0],
                                   bounds=(-2.0, -2.0, 40.0, 10.0))  # room for one label, north-east
    assert np.isnan(boxes[0]).all() and np.isfinite(boxes[1]).all()


# --------------------------------------------------------------------------------------------------------------
# The local frame of a formation

@pytest.mark.parametrize("with_velocity", [True, False])
def test_local_frame_keeps_every_distance_and_its_axes_are_orthonormal(with_velocity):
    rng = np.random.default_rng(11)
    centre = np.array([4000.0, -3000.0, 4500.0])
    pos_km = centre + rng.normal(0, 0.6, (81, 3))
    velocity = np.array([-5.1, 1.2, 4.0]) if with_velocity else None
    frame = maplayout.local_frame_m(pos_km, velocity_km_s=velocity)
    axes = frame.axes
    np.testing.assert_allclose(axes @ axes.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(axes) == pytest.approx(1.0)  # right-handed
    np.testing.assert_allclose(axes[2], centre / np.linalg.norm(centre), atol=1e-3)  # third axis: up / radial
    if with_velocity:
        assert frame.axis_names == ("along-track", "cross-track", "radial")
        assert np.dot(axes[0], velocity) > 0.99 * np.linalg.norm(velocity - np.dot(velocity, axes[2]) * axes[2])
    else:
        assert frame.axis_names == ("east", "north", "up")
        assert axes[1][2] > 0  # north points to the pole
    i, j = np.triu_indices(len(pos_km), 1)
    true_m = np.linalg.norm(pos_km[i] - pos_km[j], axis=1) * 1000.0
    ours_m = np.linalg.norm(frame.positions_m[i] - frame.positions_m[j], axis=1)
    np.testing.assert_allclose(ours_m, true_m, rtol=1e-6)
    np.testing.assert_allclose(frame.positions_m.mean(axis=0), 0.0, atol=1e-6)  # from the centroid


def test_formation_test_tells_a_cluster_from_a_constellation():
    rng = np.random.default_rng(2)
    cluster = np.array([7000.0, 0.0, 0.0]) + rng.normal(0, 1.0, (81, 3))
    assert maplayout.is_formation(cluster)
    assert not maplayout.is_formation(cluster[:1])  # one satellite is no formation
    assert not maplayout.is_formation(np.array([[7000.0, 0, 0], [0, 7000.0, 0]]))
    assert maplayout.extent_km(cluster) >= np.max(np.linalg.norm(cluster[:, None] - cluster[None], axis=-1))


# --------------------------------------------------------------------------------------------------------------
# The shipped constellations' maps

@pytest.fixture(scope="module")
def shell1():
    sc = lasernet.load_scenario(TOPOLOGIES / "starlink-shell1.yaml")
    when = lasernet.parse_time(WHEN)
    tl = lasernet.plan(sc, start=when, duration_s=0)
    fig = map_figure(sc, when, tl, 0.0)
    yield sc, tl, fig
    import matplotlib.pyplot as plt

    plt.close(fig)


def _ink_per_cell(ax, cell_deg: float = 10.0) -> tuple[np.ndarray, float]:
    """Alpha-weighted area (points^2) the ISL and track lines and the satellite markers of ``ax`` cover in each
    ``cell_deg`` cell of the map, and a cell's area in points^2."""
    from matplotlib.collections import LineCollection, PathCollection

    ink = np.zeros((int(180 / cell_deg), int(360 / cell_deg)))
    to_pt = 72.0 / ax.figure.dpi

    def add(lon, lat, amount):
        i = np.clip(((np.asarray(lat) + 90) // cell_deg).astype(int), 0, ink.shape[0] - 1)
        j = np.clip(((np.asarray(lon) + 180) // cell_deg).astype(int), 0, ink.shape[1] - 1)
        np.add.at(ink, (i, j), amount)

    for c in ax.collections:
        gid = c.get_gid() or ""
        alpha = 1.0 if c.get_alpha() is None else c.get_alpha()
        if isinstance(c, LineCollection) and (gid.startswith("isl") or gid == "tracks"):
            seg = np.array([s for s in c.get_segments()])  # (M, 2, 2) lon/lat
            a, b = (ax.transData.transform(seg[:, k]) * to_pt for k in (0, 1))
            mid = seg.mean(axis=1)
            add(mid[:, 0], mid[:, 1], np.linalg.norm(b - a, axis=1) * c.get_linewidths()[0] * alpha)
        elif isinstance(c, PathCollection) and gid.startswith("satellites") and len(c.get_offsets()):
            off = np.asarray(c.get_offsets())
            add(off[:, 0], off[:, 1], np.full(len(off), c.get_sizes()[0] * alpha))
    cell_pt = cell_deg * (ax.transData.transform([[1, 0]]) - ax.transData.transform([[0, 0]]))[0, 0] * to_pt
    return ink, cell_pt ** 2


def test_shell1_map_ink_per_cell_is_bounded_and_the_legend_counts_every_link(shell1):
    sc, tl, fig = shell1
    ax = fig.axes[0]
    ink, cell_pt2 = _ink_per_cell(ax)
    coverage = ink / cell_pt2
    print(f"shell1 map: ink per 10-degree cell, at most {coverage.max():.2f} of the cell, "
          f"mean over occupied cells {coverage[coverage > 0].mean():.2f}")
    # drawn at the small-map size (1-point lines, 16-point^2 dots, every track) the same marks cover the median
    # occupied cell once and the densest (the band's edges, where the planes turn) three times over. Bounded, the
    # median cell is a fifth ink and none more than 60%: the land, the night side and the stations show through
    assert coverage.max() < 0.6
    assert np.median(coverage[coverage > 0]) < 0.25
    isl_up = int((tl.up[0] & (tl.links.kind == ISL)).sum())
    assert isl_up > 3000
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"ISL up ({isl_up})" in labels
    drawn = sum(len(c.get_segments()) for c in ax.collections if (c.get_gid() or "").startswith("isl-up"))
    assert drawn >= isl_up  # thinned by width and alpha, not dropped (antimeridian links are two segments)
    sats = [c for c in ax.collections if (c.get_gid() or "").startswith("satellites-")]
    assert sum(len(c.get_offsets()) for c in sats) == len(tl.illumination[0]) == 1584


def test_shell1_map_labels_stations_where_they_fit_and_no_satellite(shell1):
    sc, tl, fig = shell1
    ax = fig.axes[0]
    texts = [t for t in ax.texts if t.get_text()]
    names = {g.name for g in sc.ground}
    station_labels = [t for t in texts if t.get_text() in names]
    assert 30 <= len(station_labels) <= len(names)  # most of the 100 cities, not those crowded out
    assert not [t for t in texts if t.get_text().startswith("sat-")]
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in station_labels]
    overlapping = sum(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))
    assert overlapping == 0, f"{overlapping} pairs of station labels overlap as rendered"


def test_suncatcher_map_has_an_inset_in_metres_spanning_the_formation():
    from lasernet import skydata
    from lasernet.orbits import build_satellites

    sc = lasernet.load_scenario(TOPOLOGIES / "suncatcher.yaml")
    when = lasernet.parse_time(WHEN)
    tl = lasernet.plan(sc, start=when, duration_s=0)
    fig = map_figure(sc, when, tl, 0.0)
    ax = fig.axes[0]
    (inset,) = [a for a in ax.child_axes if a.get_gid() == "formation"]
    assert inset.get_xlabel().endswith(" m") and inset.get_ylabel().endswith(" m")
    assert inset.get_xlabel() == "along-track m" and inset.get_ylabel() == "cross-track m"
    (points,) = [c for c in inset.collections if c.get_gid() == "formation-satellites"]
    xy = np.asarray(points.get_offsets())
    pos_km = build_satellites(sc).positions_km(skydata.times(when, np.zeros(1)))[0]
    i, j = np.triu_indices(len(pos_km), 1)
    true_m = np.linalg.norm(pos_km[i] - pos_km[j], axis=1) * 1000.0
    drawn_m = np.linalg.norm(xy[i] - xy[j], axis=1)
    assert len(xy) == 81 and 2000 < true_m.max() < 2600  # 9 x 9 at 200 m: a 1.6 km square's diagonal, sheared
    # the formation is flat (radial offsets of metres), so the drawn plane keeps its separations
    np.testing.assert_allclose(drawn_m, true_m, rtol=2e-3, atol=0.5)
    (isls,) = [c for c in inset.collections if c.get_gid() == "formation-isl-up"]
    assert len(isls.get_segments()) == int((tl.up[0] & (tl.links.kind == ISL)).sum())
    x0, x1 = inset.get_xlim()
    y0, y1 = inset.get_ylim()
    assert x0 < xy[:, 0].min() and xy[:, 0].max() < x1 and y0 < xy[:, 1].min() and xy[:, 1].max() < y1
    import matplotlib.pyplot as plt

    plt.close(fig)
