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
