"""The scenario's ``power:`` section: each satellite's solar array, battery, loads and power-state thresholds.

A satellite of an orbital data centre lives on what its solar array gives it. In sunlight the array (sun-tracking,
so its output is its rated ``solar_w`` times the visible fraction of the Sun's disc: full when sunlit, part in the
penumbra, nothing in the umbra) feeds the bus (avionics, router, laser terminals: ``bus_w``) and the compute
(``compute_w``, plus ``server_w`` for every server of ``hosts:`` attached to the satellite) and charges the battery;
in eclipse the battery alone carries the load. When the battery's state of charge (SoC, a fraction of
``battery_wh``) runs low, the satellite sheds compute: it is *throttled* (its servers get ``throttle_factor`` of
their CPU) below ``throttle_below`` and *off* (servers frozen, no compute load) below ``off_below``. It comes back
only above higher thresholds (``on_above`` from off to throttled, ``resume_above`` to nominal): the gap is
hysteresis, so a satellite hovering at a threshold does not flap. :mod:`lasernet.power` plans it.

The section is a list of groups; each applies to the satellites its ``satellites`` globs match (default: all), and
a satellite may be matched by one group only. Satellites of no group have no power model (always nominal)::

    power:
      - satellites: "tpu-*"
        solar_w: 12000
        battery_wh: 6000
        bus_w: 1500
        compute_w: 8000

Thresholds must be ordered ``soc_min <= off_below < on_above <= throttle_below < resume_above <= soc_max``.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from .fields import Node

#: Power states of a satellite, in rising order of compute allowed.
POWER_STATES = ("off", "throttled", "nominal")
OFF, THROTTLED, NOMINAL = range(len(POWER_STATES))


@dataclass(frozen=True)
class PowerGroup:
    """One group of satellites' power system (see the module docstring); fractions are of ``battery_wh``."""

    satellites: tuple[str, ...]  # globs on satellite names
    solar_w: float
    battery_wh: float
    bus_w: float = 0.0
    compute_w: float = 0.0
    server_w: float = 0.0  # per server of hosts: attached to the satellite
    max_charge_w: float | None = None  # default: battery_wh / 2 h (C/2)
    max_discharge_w: float | None = None  # default: battery_wh / 1 h (1C)
    soc_min: float = 0.1
    soc_max: float = 1.0
    soc_start: float | None = None  # default: soc_max
    off_below: float = 0.2
    on_above: float = 0.3
    throttle_below: float = 0.4
    resume_above: float = 0.5
    throttle_factor: float = 0.5

    @property
    def charge_limit_w(self) -> float:
        return self.battery_wh / 2.0 if self.max_charge_w is None else self.max_charge_w

    @property
    def discharge_limit_w(self) -> float:
        return self.battery_wh if self.max_discharge_w is None else self.max_discharge_w

    @property
    def start_soc(self) -> float:
        return self.soc_max if self.soc_start is None else self.soc_start


_FIELDS = ("satellites", "solar_w", "battery_wh", "bus_w", "compute_w", "server_w", "max_charge_w",
           "max_discharge_w", "soc_min", "soc_max", "soc_start", "off_below", "on_above", "throttle_below",
           "resume_above", "throttle_factor", "source")
#: The thresholds in the order they must rise.
_ORDER = ("soc_min", "off_below", "on_above", "throttle_below", "resume_above", "soc_max")


def parse_power(node: Node, satellite_names: tuple[str, ...]) -> tuple[PowerGroup, ...]:
    """Read the ``power:`` list; every glob must match a satellite, and no satellite may be in two groups."""
    groups = []
    owner: dict[str, int] = {}
    for i, item in enumerate(node.items()):
        item.mapping(_FIELDS)
        sel = item.get("satellites", "*")
        globs = (sel.value,) if isinstance(sel.value, str) else tuple(x.text() for x in sel.items())
        if not globs or not all(isinstance(g, str) and g for g in globs):
            raise sel.fail("must be a glob on satellite names like 'sat-0-*' or a list of them")
        for k, glob in enumerate(globs):
            hit = [n for n in satellite_names if fnmatch.fnmatchcase(n, glob)]
            if not hit:
                where = sel if isinstance(sel.value, str) else sel.child(k, glob)
                raise where.fail(f"{glob!r} matches no satellite; satellites are named like "
                                 f"{satellite_names[0] if satellite_names else 'sat-0-0'!r}")
            for n in hit:
                if owner.get(n, i) != i:
                    raise sel.fail(f"satellite {n!r} is already in power[{owner[n]}]; a satellite has one power "
                                   f"system: narrow one of the globs")
                owner[n] = i
        opt = lambda key, lo, hi: (None if item.get(key, None).value is None  # noqa: E731
                                   else item.get(key).number(lo, hi))
        g = PowerGroup(
            satellites=globs, solar_w=item.get("solar_w").number(0, 1e7),
            battery_wh=item.get("battery_wh").number(0.001, 1e8), bus_w=item.get("bus_w", 0.0).number(0, 1e7),
            compute_w=item.get("compute_w", 0.0).number(0, 1e7), server_w=item.get("server_w", 0.0).number(0, 1e7),
            max_charge_w=opt("max_charge_w", 0, 1e8), max_discharge_w=opt("max_discharge_w", 0, 1e8),
            soc_min=item.get("soc_min", 0.1).number(0, 1), soc_max=item.get("soc_max", 1.0).number(0, 1),
            soc_start=opt("soc_start", 0, 1), off_below=item.get("off_below", 0.2).number(0, 1),
            on_above=item.get("on_above", 0.3).number(0, 1),
            throttle_below=item.get("throttle_below", 0.4).number(0, 1),
            resume_above=item.get("resume_above", 0.5).number(0, 1),
            throttle_factor=item.get("throttle_factor", 0.5).number(0, 1))
        for lower, upper in zip(_ORDER, _ORDER[1:]):
            lo, hi = getattr(g, lower), getattr(g, upper)
            strict = (lower, upper) in (("off_below", "on_above"), ("throttle_below", "resume_above"))
            if lo > hi or (strict and lo == hi):
                given = item.value or {}
                rule = (f"thresholds rise {' <= '.join(_ORDER)} (on_above > off_below and resume_above > "
                        f"throttle_below)")
                if upper in given or lower not in given:
                    raise item.get(upper, hi).fail(f"{hi:g} must be {'above' if strict else 'at least'} {lower} "
                                                   f"({lo:g}): {rule}")
                raise item.get(lower).fail(f"{lo:g} must be {'below' if strict else 'at most'} {upper} ({hi:g}, "
                                           f"its default): {rule}")
        if not g.soc_min <= g.start_soc <= g.soc_max:
            raise item.get("soc_start", g.start_soc).fail(
                f"must be between soc_min ({g.soc_min:g}) and soc_max ({g.soc_max:g}), got {g.start_soc:g}")
        groups.append(g)
    return tuple(groups)
