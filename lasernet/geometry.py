"""Pure array functions of geometry in the Earth-fixed frame: ranges, line of sight, elevation, the Sun.

Every function takes positions in km in the ITRS (Earth-centred, Earth-fixed) frame as numpy arrays whose last
axis is (x, y, z), broadcasts over all leading axes (time, link, station) and returns arrays; nothing here loops
over satellites in Python.

* A laser beam between two satellites is blocked when the straight segment between them passes closer to the
  Earth than its surface plus an atmosphere margin (default 80 km: below that, refraction and absorption ruin an
  optical link). The Earth is the WGS84 ellipsoid, handled by scaling z by a/b so that it becomes a sphere.
* A ground station sees a satellite when the satellite's elevation above the local horizon (the plane
  perpendicular to the geodetic vertical) reaches the station's mask.
* A terminal is blinded when the Sun stands within its exclusion angle of the direction it points in. The Sun's
  position comes from the JPL DE421 ephemeris shipped by ``skyfield-data`` (see :mod:`lasernet.skydata`).
"""

from __future__ import annotations

import numpy as np

WGS84_A_KM = 6378.137
WGS84_F = 1 / 298.257223563
WGS84_B_KM = WGS84_A_KM * (1 - WGS84_F)
SPEED_OF_LIGHT_KM_S = 299792.458
EARTH_ROTATION_RAD_S = 7.2921150e-5  # sidereal rotation rate (IERS)
_Z_SCALE = WGS84_A_KM / WGS84_B_KM  # stretches the ellipsoid into a sphere of radius WGS84_A_KM


def norm_km(v: np.ndarray) -> np.ndarray:
    """Length of vectors along the last axis."""
    return np.sqrt(np.einsum("...i,...i->...", v, v))


def range_km(a_km: np.ndarray, b_km: np.ndarray) -> np.ndarray:
    """Straight-line distance between positions ``a_km`` and ``b_km``."""
    return norm_km(b_km - a_km)


def light_delay_s(range_km_: np.ndarray) -> np.ndarray:
    """One-way propagation delay over ``range_km_`` in vacuum."""
    return np.asarray(range_km_) / SPEED_OF_LIGHT_KM_S


def segment_clearance_km(a_km: np.ndarray, b_km: np.ndarray) -> np.ndarray:
    """Closest approach of the segment a-b to the Earth's surface (WGS84, via the z-scaled sphere), in km.

    Negative values mean the segment goes through the Earth.
    """
    a = a_km * np.array([1.0, 1.0, _Z_SCALE])
    b = b_km * np.array([1.0, 1.0, _Z_SCALE])
    d = b - a
    dd = np.einsum("...i,...i->...", d, d)
    # Parameter of the point of the infinite line closest to the centre, clamped onto the segment.
    s = np.clip(-np.einsum("...i,...i->...", a, d) / np.where(dd > 0, dd, 1.0), 0.0, 1.0)
    closest = a + s[..., None] * d
    return norm_km(closest) - WGS84_A_KM


def earth_blocks(a_km: np.ndarray, b_km: np.ndarray, atmosphere_km: float = 80.0,
                 range_km_: np.ndarray | None = None) -> np.ndarray:
    """True where the Earth (plus ``atmosphere_km``) lies between ``a_km`` and ``b_km``.

    Most links in a constellation are nowhere near grazing, so a cheap sufficient test clears them first: a
    segment of length L between points at radii ra, rb never comes closer to the centre than
    sqrt(min(ra, rb)^2 - (L/2)^2), and the Earth fits in a sphere of the equatorial radius. The exact clearance
    on the ellipsoid is computed only for the links that test cannot clear.
    """
    if range_km_ is None:
        range_km_ = range_km(a_km, b_km)
    r_min2 = np.minimum(np.einsum("...i,...i->...", a_km, a_km), np.einsum("...i,...i->...", b_km, b_km))
    clear = r_min2 - 0.25 * range_km_**2 >= (WGS84_A_KM + atmosphere_km) ** 2
    blocked = np.zeros(np.shape(clear), dtype=bool)
    check = ~clear
    if check.any():
        a_b = np.broadcast_to(a_km, np.shape(clear) + (3,))[check]
        b_b = np.broadcast_to(b_km, np.shape(clear) + (3,))[check]
        blocked[check] = segment_clearance_km(a_b, b_b) < atmosphere_km
    return blocked


def geodetic_to_itrs_km(lat_deg, lon_deg, alt_m) -> np.ndarray:
    """ITRS position (..., 3) in km of geodetic WGS84 coordinates."""
    lat, lon = np.radians(lat_deg), np.radians(lon_deg)
    alt_km = np.asarray(alt_m, dtype=float) / 1000.0
    e2 = WGS84_F * (2 - WGS84_F)
    n = WGS84_A_KM / np.sqrt(1 - e2 * np.sin(lat) ** 2)
    return np.stack(((n + alt_km) * np.cos(lat) * np.cos(lon),
                     (n + alt_km) * np.cos(lat) * np.sin(lon),
                     (n * (1 - e2) + alt_km) * np.sin(lat)), axis=-1)


def up_unit(lat_deg, lon_deg) -> np.ndarray:
    """Unit vector (..., 3) of the geodetic vertical (the ellipsoid normal) at the given coordinates."""
    lat, lon = np.radians(lat_deg), np.radians(lon_deg)
    return np.stack((np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)), axis=-1)


def elevation_deg(station_km: np.ndarray, station_up: np.ndarray, target_km: np.ndarray) -> np.ndarray:
    """Elevation of ``target_km`` above the horizon of a station at ``station_km`` with vertical ``station_up``."""
    d = target_km - station_km
    sin_el = np.einsum("...i,...i->...", d, station_up) / norm_km(d)
    return np.degrees(np.arcsin(np.clip(sin_el, -1.0, 1.0)))


def latitude_deg(pos_km: np.ndarray) -> np.ndarray:
    """Geocentric latitude of positions (what the polar cut-off of inter-plane links is defined on)."""
    return np.degrees(np.arcsin(np.clip(pos_km[..., 2] / norm_km(pos_km), -1.0, 1.0)))


def angle_deg(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Angle between vectors ``u`` and ``v`` (last axis), in degrees; robust near 0 and 180."""
    cross = norm_km(np.cross(u, v))
    dot = np.einsum("...i,...i->...", u, v)
    return np.degrees(np.arctan2(cross, dot))


def sun_itrs_km(t) -> np.ndarray:
    """Apparent geocentric position (T, 3) of the Sun in ITRS km at Skyfield times ``t`` (DE421)."""
    from skyfield.framelib import itrs

    from . import skydata

    eph = skydata.ephemeris()
    xyz = eph["earth"].at(t).observe(eph["sun"]).apparent().frame_xyz(itrs).km
    return np.atleast_2d(np.moveaxis(np.asarray(xyz), 0, -1))


def in_earth_shadow(pos_km: np.ndarray, sun_unit: np.ndarray) -> np.ndarray:
    """True where positions lie in the Earth's shadow, modelled as a cylinder of the equatorial radius.

    The umbra's taper over low-orbit distances is a fraction of a degree; the cylinder errs on the side of
    calling a grazing satellite shadowed for a few seconds per orbit.
    """
    along = np.einsum("...i,...i->...", pos_km, sun_unit)
    across2 = np.einsum("...i,...i->...", pos_km, pos_km) - along**2
    return (along < 0) & (across2 < WGS84_A_KM**2)


def sun_angle_deg(from_km: np.ndarray, to_km: np.ndarray, sun_km: np.ndarray) -> np.ndarray:
    """Angle at ``from_km`` between the direction to ``to_km`` and the direction to the Sun at ``sun_km``."""
    return angle_deg(to_km - from_km, sun_km - from_km)
