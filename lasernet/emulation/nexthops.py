"""Which nexthop objects every router holds and which of its routes use each, so that a moving row costs one write.

A router's routes to the other routers' loopbacks are installed through Linux nexthop objects (``ip nexthop``):
each route names an object by its id, the object holds the gateway and interface, and replacing the object moves
every route that uses it in one write. :class:`NexthopPlan` is the coordinator's record of that, per router:

* ``label[s, d]``: the object (a *label*, 0, 1, ...; the kernel's id is ``label + 1``) that router ``s``'s route
  to ``d`` uses, ``NONE`` where ``s`` has no route to ``d`` (or an ``unreachable`` one), ``DIRECT`` where the
  route names its gateway itself (destinations with server LANs behind them, whose /24s follow the /32);
* ``slot[s, label]``: the link slot the object sends over (-1: never used);
* ``members[s, label]``: how many of ``s``'s destinations use it.

A label is not a link: two labels of a router may send over the same link, and a label keeps the group of
destinations it was given, wherever that group goes. :meth:`NexthopPlan.assign` turns the oracle's changed
entries (source, destination, new slot) into the fewest writes it finds:

* a label most of whose destinations move to one new link is *retargeted* there (one nexthop write), when that
  saves writes: ``moved - 1 - stayers > 0``, where the stayers (its destinations that do not move with it) are
  rewritten to a label on the old link. A ground station with one ground link hands over in one write; a
  satellite whose routes over a link that went down spread over two others moves the larger share in one
  write, and when that link comes back, the group that returns to it moves back in one write again;
* every other changed entry is one route write to a label that already sends over its new link (the one with
  the most destinations), or to a label made or reused for it (one nexthop write: a label no destination uses
  any more is reused before a new one is made).

Order for one router, so that every route is always either the old table's or the new one's: labels made or
reused, route writes to labels not retargeted, retargets, route writes to retargeted labels.

A row where most changes cost one write each whatever the labels (routes withdrawn, or to destinations that were
unreachable: a station handing over between two shells that no link joins) can instead be rewritten whole as
aggregated prefixes (:func:`row_prefixes`, unreachable destinations as unreachable prefixes), its labels anew
(:meth:`NexthopPlan.rebuild_row`); the coordinator does so when that is fewer writes.

The host applies this (:meth:`lasernet.emulation.kernel.Kernel.nexthops`); the plan is plain numpy, no kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NONE = -1  # no route, or an unreachable one
DIRECT = -2  # a route with its own gateway (not through a label)
UNREACHABLE = 1 << 40  # in row_prefixes' values: an unreachable prefix (beyond every slot)


def row_prefixes(s: int, link_row: np.ndarray, skip=()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Router ``s``'s row ``link_row`` (slots, -1: unreachable) as the fewest aligned loopback prefixes
    (:func:`lasernet.routing.oracle.aggregate`): (first loopback-pool offset, host bits, slot or
    ``UNREACHABLE``). ``s``'s own loopback and addresses of no node may fall under any prefix; destinations
    ``skip`` (routed one by one) under none."""
    from ..routing import oracle

    n = len(link_row)
    bits = max(1, int(n).bit_length())  # offsets 1..n of the loopback pool
    skip = np.asarray(skip, np.int64)
    values = np.full((1, 1 << bits), oracle.DONT_CARE, np.int64)
    values[0, 1:n + 1] = np.where(link_row >= 0, link_row, UNREACHABLE)
    values[0, s + 1] = oracle.DONT_CARE
    values[0, skip + 1] = -10 - skip  # unique: never merged, never emitted
    _row, first, host_bits, value = oracle.aggregate(values, bits)
    return first, host_bits, value


@dataclass
class Writes:
    """What :meth:`NexthopPlan.assign` decided, every array sorted by router.

    ``made``: labels made or reused (router, label, slot); ``routes``: route writes (router, destination,
    label); ``late``: for each route write, whether its label is retargeted (it goes after the retargets);
    ``retargeted``: labels moved to another link (router, label, slot).
    """

    made: tuple[np.ndarray, np.ndarray, np.ndarray]
    routes: tuple[np.ndarray, np.ndarray, np.ndarray]
    late: np.ndarray
    retargeted: tuple[np.ndarray, np.ndarray, np.ndarray]

    @property
    def count(self) -> int:
        """Kernel writes: one per label made, route written and label retargeted."""
        return len(self.made[0]) + len(self.routes[0]) + len(self.retargeted[0])


class NexthopPlan:
    """The labels of ``n_nodes`` routers (see the module docstring)."""

    def __init__(self, n_nodes: int, labels: int = 8):
        self.n = int(n_nodes)
        self.label = np.full((self.n, self.n), NONE, np.int16)
        self.slot = np.full((self.n, labels), -1, np.int32)
        self.members = np.zeros((self.n, labels), np.int32)
        self.retargets = 0  # labels moved to another link so far (each one write for all its routes)

    # ------------------------------------------------------------------------------------------------ tables
    def first(self, link: np.ndarray, skip=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A first table ``link[s, d]`` (slots, -1: unreachable) on empty routers: one label per router and link
        it uses; ``skip`` (destinations) get ``DIRECT``. Returns the labels made (router, label, slot); ``label``
        then holds every entry's label (the caller installs the routes, e.g. as aggregated prefixes)."""
        if (self.label != NONE).any():
            raise ValueError("first() is for routers that hold no labels yet")
        link = np.asarray(link)
        s, d = np.nonzero(link >= 0)
        keys = s.astype(np.int64) * (int(link.max(initial=0)) + 1) + link[s, d]
        uniq, inv = np.unique(keys, return_inverse=True)
        rows = uniq // (int(link.max(initial=0)) + 1)
        # the k-th distinct slot of a row is its label k
        starts = np.searchsorted(rows, rows, side="left")
        labels = np.arange(len(uniq)) - starts
        self._grow(int(labels.max(initial=-1)) + 1)
        made_slot = (uniq % (int(link.max(initial=0)) + 1)).astype(np.int32)
        self.slot[rows, labels] = made_slot
        self.label[s, d] = labels[inv]
        if skip is not None and len(skip):
            self.label[:, np.asarray(skip)] = np.where(link[:, np.asarray(skip)] >= 0, DIRECT, NONE)
        self._recount()
        return rows.astype(np.int64), labels.astype(np.int64), made_slot.astype(np.int64)

    def clear(self, src, dst, value: int = NONE) -> None:
        """Entries that leave the labels: withdrawn (``NONE``) or routed with their own gateway (``DIRECT``)."""
        src, dst = np.asarray(src, np.int64), np.asarray(dst, np.int64)
        old = self.label[src, dst].astype(np.int64)
        has = old >= 0
        np.add.at(self.members, (src[has], old[has]), -1)
        self.label[src, dst] = value

    def assign(self, src, dst, slot) -> Writes:
        """Entries ``src -> dst`` now over link slots ``slot`` (>= 0): update the labels, answer the writes."""
        src, dst, slot = (np.asarray(x, np.int64) for x in (src, dst, slot))
        old = self.label[src, dst].astype(np.int64)
        has = old >= 0
        now = np.where(has, self.slot[src, np.maximum(old, 0)], -1)
        change = now != slot  # an entry already on its link through its label needs nothing
        src, dst, slot, old, has = src[change], dst[change], slot[change], old[change], has[change]
        retarget_s, retarget_l, retarget_y = [], [], []
        carried = np.zeros(len(src), bool)  # moved by a retarget: no route write
        extra_s, extra_d, extra_y, extra_old = [], [], [], []
        if has.any():
            width = self.slot.shape[1]
            at = np.flatnonzero(has)
            key = src[at] * width + old[at]
            groups, inv, count = np.unique(key, return_inverse=True, return_counts=True)
            g_s, g_l = groups // width, groups % width
            m = self.members[g_s, g_l]
            for g in np.flatnonzero((count >= 2) & (2 * count >= m + 2)):  # could save writes (see the docstring)
                rows = at[inv == g]
                ys, yc = np.unique(slot[rows], return_counts=True)
                y, top = int(ys[yc.argmax()]), int(yc.max())
                stay = int(m[g] - count[g])
                if top < 2 + stay:
                    continue
                s, label = int(g_s[g]), int(g_l[g])
                if stay:
                    stayers = np.setdiff1d(np.flatnonzero(self.label[s] == label), dst[rows])
                    extra_s.append(np.full(len(stayers), s))
                    extra_d.append(stayers)
                    extra_y.append(np.full(len(stayers), self.slot[s, label]))
                    extra_old.append(np.full(len(stayers), label))
                retarget_s.append(s)
                retarget_l.append(label)
                retarget_y.append(y)
                carried[rows[slot[rows] == y]] = True
        retarget_s, retarget_l, retarget_y = (np.array(x, np.int64) for x in (retarget_s, retarget_l, retarget_y))
        self.slot[retarget_s, retarget_l] = retarget_y
        self.retargets += len(retarget_s)
        rest = ~carried
        rs = np.concatenate([src[rest]] + extra_s).astype(np.int64)
        rd = np.concatenate([dst[rest]] + extra_d).astype(np.int64)
        ry = np.concatenate([slot[rest]] + extra_y).astype(np.int64)
        rold = np.concatenate([old[rest]] + extra_old).astype(np.int64)
        new = self._lookup(rs, ry)
        made = self._labels_for(rs, ry, new)
        missing = new < 0
        new[missing] = self._lookup(rs[missing], ry[missing])
        gone = rold >= 0
        np.add.at(self.members, (rs[gone], rold[gone]), -1)
        np.add.at(self.members, (rs, new), 1)
        self.label[rs, rd] = new
        order = np.lexsort((rd, rs))
        rs, rd, new = rs[order], rd[order], new[order]
        late = np.zeros(len(rs), bool)
        if len(retarget_s):
            width = self.slot.shape[1]
            late = np.isin(rs * width + new, retarget_s * width + retarget_l)
        r_order = np.argsort(retarget_s, kind="stable")
        return Writes(made, (rs, rd, new), late,
                      (retarget_s[r_order], retarget_l[r_order], retarget_y[r_order]))

    def rebuild_row(self, s: int, link_row: np.ndarray, skip=()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Router ``s``'s whole row anew from ``link_row`` (slots, -1: unreachable), for a caller that rewrites
        its routes as aggregated prefixes: each link the row uses gets the label over it with the most
        destinations, or one made or reused; destinations ``skip`` are ``DIRECT``. Returns the labels made
        (router, label, slot), then the row's ``label`` holds every entry's."""
        link_row = np.asarray(link_row, np.int64)
        skip = np.asarray(skip, np.int64)
        used = link_row >= 0
        used[skip] = False
        ys = np.unique(link_row[used])
        chosen = {}
        for y in ys.tolist():
            over = np.flatnonzero(self.slot[s] == y)
            if len(over):
                chosen[y] = int(over[np.argmax(self.members[s, over])])
        made_l, made_y = [], []
        taken = set(chosen.values())
        for y in ys.tolist():
            if y in chosen:
                continue
            label = next((int(k) for k in np.flatnonzero(self.members[s] == 0) if int(k) not in taken), None)
            if label is None:
                label = self.slot.shape[1]
                self._grow(label + 1)
            self.slot[s, label] = y
            chosen[y] = label
            taken.add(label)
            made_l.append(label)
            made_y.append(y)
        lookup = np.full(int(ys.max(initial=-1)) + 2, NONE, np.int64)
        for y, label in chosen.items():
            lookup[y] = label
        row = np.where(used, lookup[np.maximum(link_row, 0)], NONE)
        row[skip] = np.where(link_row[skip] >= 0, DIRECT, NONE)
        self.label[s] = row
        self.members[s] = np.bincount(row[row >= 0], minlength=self.slot.shape[1])
        return np.full(len(made_l), s, np.int64), np.array(made_l, np.int64), np.array(made_y, np.int64)

    # ------------------------------------------------------------------------------------------------ helpers
    def _lookup(self, rs: np.ndarray, ry: np.ndarray) -> np.ndarray:
        """For each (router, slot), the router's label over that slot with the most destinations; -1: none."""
        if not len(rs):
            return np.zeros(0, np.int64)
        over = self.slot[rs] == ry[:, None]
        score = np.where(over, self.members[rs].astype(np.int64) + 1, 0)
        best = score.argmax(axis=1)
        return np.where(score[np.arange(len(rs)), best] > 0, best, -1)

    def _labels_for(self, rs: np.ndarray, ry: np.ndarray, target: np.ndarray):
        """Make (or reuse) a label for every (router, slot) whose ``target`` is -1; answer them. A label no
        destination uses is reused unless this call's writes target it (``target``)."""
        missing = target < 0
        if not missing.any():
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        width = int(ry.max()) + 1
        pairs = np.unique(rs[missing] * width + ry[missing])
        taken: dict[int, set] = {}
        for s, label in zip(rs[~missing].tolist(), target[~missing].tolist()):
            taken.setdefault(s, set()).add(label)
        made_s, made_l, made_y = [], [], []
        for s, y in zip((pairs // width).tolist(), (pairs % width).tolist()):
            busy = taken.setdefault(s, set())
            label = next((int(k) for k in np.flatnonzero(self.members[s] == 0) if int(k) not in busy), None)
            if label is None:
                label = self.slot.shape[1]
                self._grow(label + 1)
            busy.add(label)
            self.slot[s, label] = y
            made_s.append(s)
            made_l.append(label)
            made_y.append(y)
        return np.array(made_s, np.int64), np.array(made_l, np.int64), np.array(made_y, np.int64)

    def _grow(self, labels: int) -> None:
        width = self.slot.shape[1]
        if labels <= width:
            return
        if labels > np.iinfo(np.int16).max:
            raise OverflowError(f"more than {np.iinfo(np.int16).max} nexthop labels on one router")
        grown = max(labels, 2 * width)
        self.slot = np.concatenate([self.slot, np.full((self.n, grown - width), -1, np.int32)], axis=1)
        self.members = np.concatenate([self.members, np.zeros((self.n, grown - width), np.int32)], axis=1)

    def _recount(self) -> None:
        width = self.slot.shape[1]
        s, d = np.nonzero(self.label >= 0)
        self.members = np.bincount(s * width + self.label[s, d], minlength=self.n * width).reshape(
            self.n, width).astype(np.int32)

    def effective_slot(self) -> np.ndarray:
        """(N, N) the slot each route sends over through its label (-1: none or ``DIRECT``): for checks."""
        lab = self.label.astype(np.int64)
        out = np.take_along_axis(self.slot, np.maximum(lab, 0), axis=1)
        return np.where(lab >= 0, out, -1)

