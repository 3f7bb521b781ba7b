"""How a map of 10 or 4,000 satellites stays readable: mark sizes from an ink budget, labels where they fit, and a
local frame in metres for a formation too small to see on a world map (pure numpy; the drawing is
:func:`lasernet.measure.plots.constellation_map`).

A world map in an equirectangular projection 12 inches wide gives each degree about 2.2 points. Its area is
fixed, so what a reader can tell apart depends on how much *ink* the marks put on it: the area each mark covers
times its opacity. Forty satellites with 4-point dots and 1-point links cover a few percent of the map; Starlink's
first shell (1,584 satellites, 3,168 up ISLs about 10 degrees long) drawn the same way covers the whole latitude
band between 53 degrees south and north more than once over: a solid band, in which planes, links and stations
vanish. Ink per square degree has to stay bounded whatever the constellation's size, so the marks shrink and
fade as their number grows.

:func:`map_scale` chooses the marks from the counts (:class:`MapScale`). The budgets are fractions of the area
the satellites occupy (the map's 10-degree cells holding at least one, :func:`occupied_deg2`), measured in points
squared at the map's scale (``pt_per_deg``) and alpha-weighted. They bound the mean; where planes turn (a shell's
highest latitudes) satellites crowd a few times denser than that, so the budgets are a fraction of a full cover:

* satellites may cover :data:`SAT_INK` of it: the marker area is that budget shared out, between
  :data:`MARKER_MIN_PT2` (a dot still visible) and :data:`MARKER_MAX_PT2` (the small-map size); below the
  minimum the markers fade instead (alpha), never below :data:`ALPHA_MIN`;
* up ISLs may cover :data:`LINK_INK`: each link of ``mean_link_deg`` costs length x width x alpha; the width
  comes down to :data:`LINE_MIN_PT`, then the alpha, never below :data:`ALPHA_MIN`. The legend keeps the true
  counts whatever is drawn;
* beyond :data:`TRACKS_ALL_MAX` satellites only :data:`TRACKS_SAMPLED` ground tracks are drawn (a Walker shell's
  tracks are one curve shifted, a sample shows its shape), beyond :data:`LABELS_MAX` no satellite is labelled
  (a name per dot in a crowd names nothing) and beyond :data:`DOWN_ISLS_MAX` down ISLs are counted, not drawn;
* once the link budget bites, up ISLs between planes are drawn at :data:`ACROSS_ALPHA_SHARE` of the in-plane
  ones' opacity (always in their own colour): the in-plane links trace the planes, the eye follows them and reads
  the others as the mesh.

Labels (:func:`place_labels`) are placed greedily in priority order (the map puts ground stations first): each
label tries a few positions around its point and takes the first whose box stays inside the bounds and overlaps
neither an obstacle (the markers) nor a label placed before it; a label that fits nowhere is left out. Boxes are
in display points, so the placer knows nothing of projections.

A formation (Google's Suncatcher: 81 satellites in 1.6 km) is one dot on a world map. :func:`is_formation` tells
one from a constellation by its extent (the diameter of the sphere around the centroid that holds every
satellite, :func:`extent_km`) against :data:`FORMATION_EXTENT_KM`, about one degree of the map; the map then adds
an inset in a local frame (:func:`local_frame_m`) in metres. With the centre's velocity the frame is the orbital
one: along-track (the velocity made perpendicular to the radial), cross-track (the orbit normal) and radial
(outward), right-handed; without it east, north and up at the centre. Either way it is a rotation of the
Earth-fixed axes about the centre, so distances between satellites are kept exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAT_INK = 0.06  # satellites' share of the map's area (alpha-weighted)
LINK_INK = 0.12  # up ISLs' share
MARKER_MAX_PT2 = 16.0  # scatter marker area, points^2: the small-map size
MARKER_MIN_PT2 = 2.0  # a dot still seen at 110 dpi
LINE_MAX_PT = 1.0
LINE_MIN_PT = 0.35
ALPHA_MIN = 0.08
TRACKS_ALL_MAX = 300
TRACKS_SAMPLED = 12
LABELS_MAX = 300
DOWN_ISLS_MAX = 100
ACROSS_ALPHA_SHARE = 0.5
WORLD_DEG2 = 360.0 * 180.0
PT_PER_DEG = 2.2  # the 12-inch world map
FORMATION_EXTENT_KM = 100.0


@dataclass(frozen=True)
class MapScale:
    """How to draw a map's marks: sizes in points (markers: points squared), opacities, what to draw at all."""

    marker_pt2: float
    marker_alpha: float
    isl_width_pt: float
    isl_alpha: float  # up ISLs within a plane (all of them when the planes are not known)
    isl_across_alpha: float  # up ISLs between planes
    tracks: int | None  # ground tracks to draw; None: every satellite's
    sat_labels: bool  # try to label satellites (the placer still decides which fit)
    down_isls: bool  # draw the down ISLs (else only count them)


def _budgeted(budget_pt2: float, count: int, cost_at_max: float, size_max: float, size_min: float):
    """The size (down to ``size_min``) and then the alpha (down to ALPHA_MIN) that keep ``count`` marks costing
    ``cost_at_max`` each at full size within ``budget_pt2``; the cost scales linearly with the size."""
    if count == 0 or count * cost_at_max <= budget_pt2:
        return size_max, 1.0
    scale = budget_pt2 / (count * cost_at_max)
    size = max(size_min, size_max * scale)
    alpha = min(1.0, max(ALPHA_MIN, budget_pt2 / (count * cost_at_max * size / size_max)))
    return size, alpha


def map_scale(n_satellites: int, n_links: int, n_down: int = 0, mean_link_deg: float = 10.0,
              area_deg2: float = WORLD_DEG2, pt_per_deg: float = PT_PER_DEG) -> MapScale:
    """The marks for a map of ``n_satellites`` and ``n_links`` up ISLs (``n_down`` down) spread over
    ``area_deg2`` of a map drawn at ``pt_per_deg``, within the ink budgets of the module docstring."""
    area_pt2 = area_deg2 * pt_per_deg ** 2
    marker_pt2, marker_alpha = _budgeted(SAT_INK * area_pt2, n_satellites, MARKER_MAX_PT2, MARKER_MAX_PT2,
                                         MARKER_MIN_PT2)
    link_pt = mean_link_deg * pt_per_deg
    width_pt, link_alpha = _budgeted(LINK_INK * area_pt2, n_links, link_pt * LINE_MAX_PT, LINE_MAX_PT,
                                     LINE_MIN_PT)
    return MapScale(marker_pt2=marker_pt2, marker_alpha=marker_alpha, isl_width_pt=width_pt, isl_alpha=link_alpha,
                    isl_across_alpha=link_alpha * (1.0 if width_pt == LINE_MAX_PT else ACROSS_ALPHA_SHARE),
                    tracks=None if n_satellites <= TRACKS_ALL_MAX else TRACKS_SAMPLED,
                    sat_labels=n_satellites <= LABELS_MAX, down_isls=n_down <= DOWN_ISLS_MAX)


def occupied_deg2(lon_deg: np.ndarray, lat_deg: np.ndarray, cell_deg: float = 10.0) -> float:
    """The map area (square degrees of the lon/lat map) of the ``cell_deg`` cells holding at least one point: the
    area a constellation's marks share, ``area_deg2`` of :func:`map_scale`."""
    if not len(lon_deg):
        return 0.0
    i = np.floor((np.asarray(lon_deg) + 180.0) / cell_deg).astype(int)
    j = np.floor((np.asarray(lat_deg) + 90.0) / cell_deg).astype(int)
    return float(len(np.unique(np.stack([i, j]), axis=1).T)) * cell_deg ** 2


def mean_length_deg(lon_a, lat_a, lon_b, lat_b) -> float:
    """Mean map length (degrees) of straight lon/lat segments, the short way round in longitude."""
    if not len(lon_a):
        return 0.0
    dlon = (np.asarray(lon_b) - np.asarray(lon_a) + 180.0) % 360.0 - 180.0
    return float(np.mean(np.hypot(dlon, np.asarray(lat_b) - np.asarray(lat_a))))


# --------------------------------------------------------------------------------------------------------------
# Labels

#: Where a label may sit around its point, tried in order: (dx, dy) of the box's lower-left corner in units of
#: (label width, label height) from the point, plus ``gap`` points away from it: NE, SE, NW, SW, E, W.
LABEL_POSITIONS = ((0.0, 0.0), (0.0, -1.0), (-1.0, 0.0), (-1.0, -1.0), (0.0, -0.5), (-1.0, -0.5))


def label_candidates(x: float, y: float, width: float, height: float, gap: float = 2.0) -> np.ndarray:
    """(len(LABEL_POSITIONS), 4) boxes (x0, y0, x1, y1) a label of ``width`` x ``height`` may take around (x, y)."""
    out = np.empty((len(LABEL_POSITIONS), 4))
    for k, (fx, fy) in enumerate(LABEL_POSITIONS):
        x0 = x + fx * width + (gap if fx == 0 else -gap)
        y0 = y + fy * height + (gap if fy == 0 else -gap if fy == -1 else 0.0)
        out[k] = (x0, y0, x0 + width, y0 + height)
    return out


def overlaps(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(M,) bool: which of ``boxes`` (M, 4) overlap ``box`` (4,) with positive area (touching is not overlap)."""
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    return (boxes[:, 0] < box[2]) & (box[0] < boxes[:, 2]) & (boxes[:, 1] < box[3]) & (box[1] < boxes[:, 3])


class _Grid:
    """Boxes bucketed in square cells, so that a new box is tested against its neighbours only."""

    def __init__(self, cell: float):
        self.cell = cell
        self.cells: dict[tuple[int, int], list[int]] = {}
        self.boxes: list[np.ndarray] = []

    def _keys(self, box):
        c = self.cell
        for i in range(int(np.floor(box[0] / c)), int(np.floor(box[2] / c)) + 1):
            for j in range(int(np.floor(box[1] / c)), int(np.floor(box[3] / c)) + 1):
                yield i, j

    def add(self, box):
        self.boxes.append(box)
        for key in self._keys(box):
            self.cells.setdefault(key, []).append(len(self.boxes) - 1)

    def hits(self, box) -> bool:
        near = {k for key in self._keys(box) for k in self.cells.get(key, ())}
        return bool(near) and bool(overlaps(box, np.array([self.boxes[k] for k in near])).any())


def place_labels(x, y, widths, heights, priority=None, obstacles=None, bounds=None, gap: float = 2.0) -> np.ndarray:
    """Greedy non-overlapping labels: (N, 4) boxes (x0, y0, x1, y1), NaN rows for labels left out.

    ``x``, ``y`` (N,) are the labelled points and ``widths``, ``heights`` (N,) the labels' sizes, all in display
    points. Labels are taken in ascending ``priority`` (default: their order; ties keep the order), each at the
    first of :func:`label_candidates` that lies inside ``bounds`` (x0, y0, x1, y1) if given and overlaps neither
    ``obstacles`` (M, 4; NaN rows are ignored, so an earlier call's result can be passed) nor a label already
    placed.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    widths = np.broadcast_to(np.asarray(widths, dtype=float), x.shape)
    heights = np.broadcast_to(np.asarray(heights, dtype=float), x.shape)
    out = np.full((len(x), 4), np.nan)
    if not len(x):
        return out
    order = np.argsort(np.zeros(len(x)) if priority is None else np.asarray(priority, dtype=float), kind="stable")
    grid = _Grid(cell=max(float(np.max(widths)), float(np.max(heights)), 1.0))
    obstacles = np.asarray(obstacles if obstacles is not None else np.empty((0, 4)), dtype=float).reshape(-1, 4)
    for box in obstacles[np.isfinite(obstacles).all(axis=1)]:  # NaN rows: labels left out earlier
        grid.add(box)
    for i in order:
        for box in label_candidates(x[i], y[i], widths[i], heights[i], gap):
            if bounds is not None and (box[0] < bounds[0] or box[1] < bounds[1] or box[2] > bounds[2]
                                       or box[3] > bounds[3]):
                continue
            if not grid.hits(box):
                grid.add(box)
                out[i] = box
                break
    return out


def marker_boxes(x, y, size_pt: float) -> np.ndarray:
    """(N, 4) square boxes of side ``size_pt`` centred on the points: markers as obstacles for labels."""
    x, y, h = np.asarray(x, dtype=float), np.asarray(y, dtype=float), size_pt / 2
    return np.stack([x - h, y - h, x + h, y + h], axis=-1)


# --------------------------------------------------------------------------------------------------------------
# Formations

@dataclass(frozen=True)
class LocalFrame:
    """Satellites in a local frame: ``positions_m`` (N, 3) along ``axes`` (3, 3; rows are unit vectors in the
    Earth-fixed axes) from ``centre_km`` (3,), the axes named by ``axis_names``."""

    positions_m: np.ndarray
    axes: np.ndarray
    axis_names: tuple[str, str, str]
    centre_km: np.ndarray


def extent_km(positions_km: np.ndarray) -> float:
    """The diameter of the sphere around the centroid that holds every satellite (at least their largest
    separation, at most twice it)."""
    p = np.asarray(positions_km, dtype=float).reshape(-1, 3)
    if len(p) < 2:
        return 0.0
    return 2.0 * float(np.max(np.linalg.norm(p - p.mean(axis=0), axis=1)))


def is_formation(positions_km: np.ndarray, max_extent_km: float = FORMATION_EXTENT_KM) -> bool:
    """Whether two or more satellites fly within ``max_extent_km`` of each other: too close to tell apart on a
    world map (:func:`extent_km`)."""
    return len(np.asarray(positions_km).reshape(-1, 3)) >= 2 and extent_km(positions_km) < max_extent_km


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def local_frame_m(positions_km: np.ndarray, centre_index: int | None = None,
                  velocity_km_s: np.ndarray | None = None) -> LocalFrame:
    """``positions_km`` (N, 3, Earth-fixed) in metres from the centre (satellite ``centre_index``, default the
    centroid): along-track, cross-track, radial with ``velocity_km_s`` (the centre's, (3,), or every
    satellite's, (N, 3), averaged), else east, north, up."""
    p = np.asarray(positions_km, dtype=float).reshape(-1, 3)
    centre = p.mean(axis=0) if centre_index is None else p[centre_index]
    up = _unit(centre)
    if velocity_km_s is not None:
        v = np.asarray(velocity_km_s, dtype=float).reshape(-1, 3)
        v = v[0] if len(v) == 1 else v.mean(axis=0) if centre_index is None else v[centre_index]
        along = _unit(v - np.dot(v, up) * up)
        axes, names = np.stack([along, np.cross(up, along), up]), ("along-track", "cross-track", "radial")
    else:
        pole = np.array([0.0, 0.0, 1.0]) if abs(up[2]) < 0.999999 else np.array([1.0, 0.0, 0.0])
        east = _unit(np.cross(pole, up))
        axes, names = np.stack([east, np.cross(up, east), up]), ("east", "north", "up")
    return LocalFrame(positions_m=(p - centre) @ axes.T * 1000.0, axes=axes, axis_names=names, centre_km=centre)
