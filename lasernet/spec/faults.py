"""The scenario's ``upsets:`` and ``collision:`` sections: radiation upsets and collision avoidance on satellites.

``upsets:`` makes single-event upsets (a particle flips a bit and the computer must restart) a Poisson process
per satellite, whose rate is ``rate_per_day`` outside the South Atlantic Anomaly and ``saa_rate_per_day`` inside
it. The anomaly is a polygon in latitude and longitude, by default the boundary Fermi's Gamma-ray Burst Monitor
has used since 2010 (:data:`GBM_SAA_POLYGON`), or the scenario's own ``saa: {lat_deg: [...], lon_deg: [...]}``.
An upset restarts the satellite's servers; with ``router_reboot_s`` > 0 it also reboots its router, whose links
are then down that long (cause ``reboot``) before they re-acquire. :mod:`lasernet.upsets` plans it::

    upsets: {rate_per_day: 0.05, saa_rate_per_day: 2.0, router_reboot_s: 30}

``collision:`` screens close approaches between the constellation's satellites and, optionally, the objects of a
TLE/OMM ``catalogue`` file. An approach closer than ``threshold_km`` schedules a collision avoidance manoeuvre
``lead_s`` before the closest approach, during which the satellite's laser links are down (``manoeuvre_s``, cause
``manoeuvre``) before they re-acquire. :mod:`lasernet.conjunctions` plans it::

    collision: {threshold_km: 1.0, manoeuvre_s: 300, lead_s: 1800, catalogue: debris.tle}

``jamming:`` is an attack: an adversary's ground site that dazzles, with a laser of its own, the optical ground
terminals of every satellite in its view (above its ``min_elevation_deg``) from ``start_s`` to ``stop_s`` (emulated
seconds since the run's start). While a satellite is in view its laser ground links are down (cause ``jamming``);
as the satellites move, so does the outage region. RF fallback terminals are not blinded::

    jamming: [{name: dazzler, lat_deg: 48.85, lon_deg: 2.35, min_elevation_deg: 20, start_s: 60, stop_s: 240}]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .fields import Node

#: The South Atlantic Anomaly as Fermi GBM's polygon 5 (vertices in degrees latitude and east longitude), in use
#: from July 2010 (and again since September 2024) at Fermi's ~530 km, 25.6 deg orbit. Source: the Fermi GBM Data
#: Tools, ``gdt.missions.fermi.gbm.saa.GbmSaaPolygon5`` (proposed by Fishman, Briggs and Chaplin). Its southern
#: edge at 30 S is where Fermi's orbit ends, not where the anomaly does: for inclined and polar orbits give a
#: polygon that reaches further south (AP8/AE8 maps at 500-800 km put it down to ~50 S).
GBM_SAA_POLYGON = (
    (-30.000, 33.900), (-19.867, 12.398), (-9.733, -9.103), (0.400, -30.605), (2.000, -38.400), (2.000, -45.000),
    (-1.000, -65.000), (-6.155, -84.000), (-8.880, -89.200), (-14.220, -94.300), (-18.404, -94.300),
    (-30.000, -86.100), (-30.000, 33.900))


@dataclass(frozen=True)
class Upsets:
    """Radiation upsets (see the module docstring); rates are per satellite and day."""

    rate_per_day: float = 0.0
    saa_rate_per_day: float = 0.0
    router_reboot_s: float = 0.0
    saa_polygon: tuple[tuple[float, float], ...] = GBM_SAA_POLYGON  # (lat_deg, lon_deg) vertices

    @property
    def active(self) -> bool:
        return self.rate_per_day > 0 or self.saa_rate_per_day > 0


@dataclass(frozen=True)
class Collision:
    """Conjunction screening and avoidance manoeuvres (see the module docstring)."""

    threshold_km: float = 1.0
    manoeuvre_s: float = 300.0
    lead_s: float = 1800.0
    own: bool = True  # screen pairs of the constellation's own satellites
    catalogue: object | None = None  # an ElementsFile of other objects


def parse_upsets(node: Node) -> Upsets | None:
    if node.value is None:
        return None
    node.mapping(("rate_per_day", "saa_rate_per_day", "router_reboot_s", "saa", "source"))
    polygon = GBM_SAA_POLYGON
    saa = node.get("saa", None)
    if saa.value is not None:
        saa.mapping(("lat_deg", "lon_deg", "source"))
        lat = [x.number(-90, 90) for x in saa.get("lat_deg").items()]
        lon = [x.number(-180, 180) for x in saa.get("lon_deg").items()]
        if len(lat) != len(lon) or len(lat) < 3:
            raise saa.fail(f"lat_deg and lon_deg must list the same number (3 or more) of vertices, got {len(lat)} "
                           f"and {len(lon)}")
        polygon = tuple(zip(lat, lon))
    return Upsets(rate_per_day=node.get("rate_per_day", 0.0).number(0, 1e5),
                  saa_rate_per_day=node.get("saa_rate_per_day", 0.0).number(0, 1e5),
                  router_reboot_s=node.get("router_reboot_s", 0.0).number(0, 86400), saa_polygon=polygon)


def parse_collision(node: Node, read_catalogue: Callable[[Node, str], object]) -> Collision | None:
    """Read ``collision:``; ``read_catalogue(node, format)`` checks the catalogue file and returns its
    :class:`~lasernet.spec.scenario.ElementsFile` (paths are relative to the scenario file)."""
    if node.value is None:
        return None
    node.mapping(("threshold_km", "manoeuvre_s", "lead_s", "own", "catalogue", "source"))
    own = node.get("own", True)
    if not isinstance(own.value, bool):
        raise own.fail(f"must be true or false, got {own.value!r}")
    cat = node.get("catalogue", None)
    catalogue = None
    if cat.value is not None:
        fmt = "omm" if str(cat.value).lower().endswith((".xml", ".csv", ".json")) else "tle"
        catalogue = read_catalogue(cat, fmt)
    return Collision(threshold_km=node.get("threshold_km", 1.0).number(1e-6, 1000),
                     manoeuvre_s=node.get("manoeuvre_s", 300.0).number(0, 86400),
                     lead_s=node.get("lead_s", 1800.0).number(0, 86400), own=own.value, catalogue=catalogue)


@dataclass(frozen=True)
class Jammer:
    """An adversary's ground site blinding the optical ground terminals of the satellites in its view (see the
    module docstring); times are emulated seconds since the run's start."""

    name: str
    lat_deg: float
    lon_deg: float
    alt_m: float = 0.0
    min_elevation_deg: float = 20.0
    start_s: float = 0.0
    stop_s: float = float("inf")


def parse_jamming(node: Node) -> tuple[Jammer, ...]:
    """Read ``jamming:``, a list of adversary sites; () without it."""
    out = []
    for item in node.items():
        item.mapping(("name", "lat_deg", "lon_deg", "alt_m", "min_elevation_deg", "start_s", "stop_s", "source"))
        name = item.get("name").name()
        if any(j.name == name for j in out):
            raise item.get("name").fail(f"jammer {name!r} is given twice; give each adversary site once")
        start_s = item.get("start_s", 0.0).number(0, 365 * 86400)
        stop_s = item.get("stop_s", float("inf")).number(0, float("inf"))
        if stop_s <= start_s:
            raise item.get("stop_s").fail(f"must be after start_s ({start_s:g}), got {stop_s:g}")
        out.append(Jammer(name, item.get("lat_deg").number(-90, 90), item.get("lon_deg").number(-180, 180),
                          item.get("alt_m", 0.0).number(-500, 9000),
                          item.get("min_elevation_deg", 20.0).number(0, 90), start_s, stop_s))
    return tuple(out)
