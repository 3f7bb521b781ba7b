"""Which pairs of nodes may be linked: the candidate inter-satellite links of a pattern, and the link table.

The +Grid pattern gives every satellite of a Walker shell four laser links: two *intra-plane* links to the
satellites ahead and behind in its own plane (fixed length, always in view) and two *inter-plane* links to the
satellites in the same slot of the neighbouring planes. Across the wrap from the last plane back to plane 0 the
phasing factor F shifts the partner by F slots: the shell's symmetry (RAAN + 360/P, phase + 360F/(PS)) maps
plane p onto p+1 and the last plane onto plane 0 shifted by F slots, so the wrap pairs sit exactly like the rest.

In a Walker *star* shell (Iridium) the first and last planes counter-rotate: their satellites pass each other at
about 15 km/s, too fast for a terminal to track. Those pairs form the *seam*; they are kept in the table as
candidates that are never up (cause ``seam``), so that a report shows what the seam costs. A *formation* shell
(satellites within kilometres of each other) links neighbours without wrapping. Patterns ``ring`` (intra-plane
only), ``explicit`` (listed pairs) and ``none`` complete the set.

The ``nearest`` pattern has no fixed pairs: each satellite links to up to ``terminals.isl.count`` usable partners
chosen step by step (:func:`lasernet.terminals.within_budget` with a switching margin), which suits formations,
mixed shells and satellites from element files. Its candidates at a step are the pairs that are, at that
step, among either end's :func:`nearest_per_satellite` nearest satellites within range (:func:`nearest_pairs`):
a step's choice depends only on that step and the one before, so plan windows join exactly; the pairs ever
chosen become the window's ISLs (role ``nearest``).

A multi-shell constellation under +Grid (or ring) has no links between its shells: each shell is its own grid.
``isl.between_shells`` adds them: besides its grid links, every satellite may hold a few links to satellites of
*other* shells, chosen by the same nearest rule. Their candidates (:func:`between_shell_pairs`) are the pairs
among either end's nearest satellites of the other shells, found with a k-d tree per shell and step, so the
cost grows as N log N per step (Starlink phase 1's 4,408 satellites), not N^2; the pairs ever chosen become the
window's ISLs with role ``between-shells``.

Ground links are not candidates here: which satellite a station talks to is decided over time by its handover
policy (:mod:`lasernet.timeline`), and the pairs actually used join the link table there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .orbits import Satellites
from .spec.scenario import Scenario

KINDS = ("isl", "gsl")
ROLES = ("intra", "inter", "seam", "explicit", "ground", "nearest", "between-shells")
ISL, GSL = 0, 1
INTRA, INTER, SEAM, EXPLICIT, GROUND, NEAREST, BETWEEN_SHELLS = range(7)


@dataclass(frozen=True)
class LinkTable:
    """L links between nodes (indices into ``node_names``): kind (isl/gsl) and role of each."""

    node_names: tuple[str, ...]
    a: np.ndarray  # (L,) int
    b: np.ndarray  # (L,) int
    kind: np.ndarray  # (L,) uint8: ISL or GSL
    role: np.ndarray  # (L,) uint8: an index into ROLES

    def __len__(self) -> int:
        return len(self.a)

    @property
    def names(self) -> list[str]:
        """``a~b`` for every link, e.g. ``sat-0-1~sat-0-2`` or ``svalbard~sat-3-7``."""
        n = self.node_names
        return [f"{n[i]}~{n[j]}" for i, j in zip(self.a, self.b)]

    def concat(self, other: "LinkTable") -> "LinkTable":
        return LinkTable(self.node_names, np.concatenate([self.a, other.a]), np.concatenate([self.b, other.b]),
                         np.concatenate([self.kind, other.kind]), np.concatenate([self.role, other.role]))


def isl_candidates(scenario: Scenario, sats: Satellites, node_names: tuple[str, ...]) -> LinkTable:
    """The candidate ISLs of the scenario's pattern over its satellites (indices 0..N-1 of ``node_names``)."""
    pattern = scenario.isl.pattern
    pairs: list[np.ndarray] = []
    roles: list[np.ndarray] = []
    if pattern in ("plus-grid", "ring"):
        offset = 0
        for shell in scenario.constellation.shells:
            for (a, b), role in _shell_pairs(shell, pattern):
                pairs.append(np.stack([a + offset, b + offset], axis=1))
                roles.append(np.full(len(a), role, dtype=np.uint8))
            offset += shell.size
    elif pattern == "explicit":
        idx = {name: i for i, name in enumerate(sats.names)}  # the names were checked by check_node_names
        ab = np.array([(idx[x], idx[y]) for x, y in scenario.isl.links], dtype=int).reshape(-1, 2)
        pairs.append(ab)
        roles.append(np.full(len(ab), EXPLICIT, dtype=np.uint8))
    ab = np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=int)
    role = np.concatenate(roles) if roles else np.zeros(0, dtype=np.uint8)
    ab, role = _dedupe(ab, role)
    return LinkTable(node_names, ab[:, 0], ab[:, 1], np.full(len(ab), ISL, dtype=np.uint8), role)


def _shell_pairs(shell, pattern: str):
    """((a, b), role) index arrays, local to the shell (plane-major numbering)."""
    P, S, F = shell.planes, shell.sats_per_plane, shell.phasing
    plane, slot = np.divmod(np.arange(P * S), S)
    local = lambda p, s: p * S + s  # noqa: E731
    wrap = shell.type != "formation"
    # Intra-plane: slot s to slot s+1 (wrapping round the plane unless a formation; a plane of 2 has one link).
    if wrap and S > 2:
        yield (local(plane, slot), local(plane, (slot + 1) % S)), INTRA
    elif S > 1:
        keep = slot < S - 1
        yield (local(plane[keep], slot[keep]), local(plane[keep], slot[keep] + 1)), INTRA
    if pattern == "ring" or P < 2:
        return
    inner = plane < P - 1
    yield (local(plane[inner], slot[inner]), local(plane[inner] + 1, slot[inner])), INTER
    if not wrap or P < 3:
        return
    last = plane == P - 1
    if shell.type == "delta":
        yield (local(plane[last], slot[last]), local(0, (slot[last] + F) % S)), INTER
    else:  # star: the counter-rotating seam
        yield (local(plane[last], slot[last]), local(0, slot[last])), SEAM


def _dedupe(ab: np.ndarray, role: np.ndarray):
    if len(ab) == 0:
        return ab, role
    lo, hi = np.minimum(ab[:, 0], ab[:, 1]), np.maximum(ab[:, 0], ab[:, 1])
    _, first = np.unique(lo * (hi.max() + 1) + hi, return_index=True)
    first.sort()
    return ab[first], role[first]


def nearest_per_satellite(count: int) -> int:
    """How many nearest satellites each satellite considers as partners in the ``nearest`` pattern: 4 (count + 1).

    The choice is greedy, shortest links first, while both ends have a free terminal; a link that is not among
    the nearest K of either end can win only when K nearer partners of both ends were all full, which this many
    makes rare (the choice is then that of all pairs: tests/unit/test_nearest.py).
    """
    return 4 * (count + 1)


def nearest_pairs(pos_km: np.ndarray, max_range_km: float, per_satellite: int, per_step: bool = False):
    """The pairs that are among either end's ``per_satellite`` nearest satellites and within ``max_range_km``, at
    the T steps of ``pos_km`` (T, N, 3): sorted unique keys ``lo * N + hi`` of those found at any step, or with
    ``per_step`` ``(step, key)`` arrays, one entry per step and pair.

    Distances are the N x N matrix of each step (from the Gram matrix: |a|^2 + |b|^2 - 2 a.b), in blocks of steps
    of a few million entries, so the cost grows as N^2 per step: meant for up to a few thousand satellites.
    """
    T, N, _ = pos_km.shape
    none = np.zeros(0, np.int64)
    if N < 2 or T == 0:
        return (none, none) if per_step else none
    k = min(per_satellite, N - 1)
    block = max(1, 4_000_000 // (N * N))
    steps, keys = [], []
    idx = np.arange(N)
    for lo in range(0, T, block):
        p = pos_km[lo:lo + block]
        sq = np.einsum("tni,tni->tn", p, p)
        d2 = (sq[:, :, None] + sq[:, None, :] - 2 * (p @ np.swapaxes(p, 1, 2))).astype(np.float32)
        d2[:, idx, idx] = np.inf
        near = np.argpartition(d2, k - 1, axis=2)[:, :, :k]  # (B, N, k)
        ok = np.take_along_axis(d2, near, axis=2) <= max_range_km ** 2
        t, i, _ = np.nonzero(ok)
        steps_keys = _keys_of(t + lo, i, near[ok], N, per_step)
        steps.append(steps_keys[0])
        keys.append(steps_keys[1])
    return _joined(steps, keys, per_step)


def between_shell_pairs(pos_km: np.ndarray, shell: np.ndarray, max_range_km: float, per_satellite: int,
                        per_step: bool = False):
    """The pairs of satellites of *different* shells that are among either end's ``per_satellite`` nearest
    satellites of the other shells and within ``max_range_km``, at the T steps of ``pos_km`` (T, N, 3), given each
    satellite's shell index ``shell`` (N,): as :func:`nearest_pairs` returns them (keys ``lo * N + hi``).

    At each step, each shell's satellites query a k-d tree (:class:`scipy.spatial.cKDTree`) of the satellites of
    all the other shells: S trees and N queries of ``per_satellite`` neighbours per step, no N x N matrix.
    """
    from scipy.spatial import cKDTree

    T, N, _ = pos_km.shape
    shell = np.asarray(shell)
    none = np.zeros(0, np.int64)
    groups = [np.flatnonzero(shell == s) for s in np.unique(shell)]
    if N < 2 or T == 0 or len(groups) < 2:
        return (none, none) if per_step else none
    others = [np.flatnonzero(shell != shell[g[0]]) for g in groups]
    ts, ii, jj = [], [], []
    for k in range(T):
        for mine, theirs in zip(groups, others):
            kk = min(per_satellite, len(theirs))
            tree = cKDTree(pos_km[k, theirs], balanced_tree=False, compact_nodes=False)  # quicker to build
            d, at = tree.query(pos_km[k, mine], k=kk, distance_upper_bound=max_range_km)
            ok = np.isfinite(d.reshape(len(mine), kk))  # beyond the bound: inf, index len(theirs)
            row, _ = np.nonzero(ok)
            ts.append(np.full(len(row), k))
            ii.append(mine[row])
            jj.append(theirs[at.reshape(len(mine), kk)[ok]])
    return _joined(*_keys_of(np.concatenate(ts), np.concatenate(ii), np.concatenate(jj), N, per_step), per_step)


def _keys_of(t: np.ndarray, i: np.ndarray, j: np.ndarray, N: int, per_step: bool):
    """``(steps, keys)`` of the pairs (i, j) found at steps t: unique ``(step, lo * N + hi)`` with ``per_step``,
    else (None, the unique keys)."""
    key = np.minimum(i, j).astype(np.int64) * N + np.maximum(i, j)
    if not per_step:
        return None, _sorted_unique(key)
    both = _sorted_unique(np.asarray(t, np.int64) * (N * N) + key)
    return both // (N * N), both % (N * N)


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    """``np.unique`` by a sort (several times quicker than its hashing on millions of wide keys)."""
    x = np.sort(x)
    return x[np.r_[True, x[1:] != x[:-1]]] if len(x) else x


def _joined(steps, keys, per_step: bool):
    """The :func:`_keys_of` results of several blocks of steps (lists), or of one (arrays), joined."""
    if not isinstance(keys, list):
        return (steps, keys) if per_step else keys
    if per_step:
        return np.concatenate(steps), np.concatenate(keys)
    return np.unique(np.concatenate(keys))


def pair_table(node_names: tuple[str, ...], keys: np.ndarray, n_satellites: int, role: int = NEAREST) -> LinkTable:
    """The ISL table of satellite pairs given as keys ``lo * n_satellites + hi``."""
    keys = np.asarray(keys, dtype=np.int64)
    return LinkTable(node_names, (keys // n_satellites).astype(int), (keys % n_satellites).astype(int),
                     np.full(len(keys), ISL, dtype=np.uint8), np.full(len(keys), role, dtype=np.uint8))


def pair_keys(table: LinkTable, n_satellites: int) -> np.ndarray:
    """``lo * n_satellites + hi`` of every link of ``table`` (satellite pairs)."""
    a, b = np.asarray(table.a, np.int64), np.asarray(table.b, np.int64)
    return np.minimum(a, b) * n_satellites + np.maximum(a, b)
