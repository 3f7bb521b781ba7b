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
* A satellite is sunlit, in the penumbra or in the umbra of the Earth depending on how much of the solar disc the
  WGS84 Earth hides from it (:func:`sunlit_fraction`). On the ground, night is where the Sun is below the horizon:
  more than 90 degrees from the subsolar point (:func:`subsolar_point_deg`, :func:`solar_elevation_deg`).
"""

from __future__ import annotations

import numpy as np

WGS84_A_KM = 6378.137
WGS84_F = 1 / 298.257223563
WGS84_B_KM = WGS84_A_KM * (1 - WGS84_F)
SPEED_OF_LIGHT_KM_S = 299792.458
EARTH_ROTATION_RAD_S = 7.2921150e-5  # sidereal rotation rate (IERS)
SUN_RADIUS_KM = 696000.0  # photospheric radius (IAU nominal 695,700)
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


def subsolar_point_deg(sun_km: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Geodetic latitude and longitude (degrees) of the subsolar point: where the Sun at ``sun_km`` (..., 3) ITRS
    stands at the zenith.

    The Sun is so far away (parallax under 9 arcseconds) that its direction is the same from every point of the
    Earth: the zenith there points at it where the ellipsoid's normal is parallel to the Sun's geocentric
    direction, so the point's geodetic latitude is the Sun's geocentric declination in the Earth-fixed frame and
    its longitude the Sun's. The terminator (day and night on the ground, :func:`solar_elevation_deg`) is the
    great circle 90 degrees from it.
    """
    x, y, z = sun_km[..., 0], sun_km[..., 1], sun_km[..., 2]
    return np.degrees(np.arctan2(z, np.hypot(x, y))), np.degrees(np.arctan2(y, x))


def solar_elevation_deg(lat_deg: np.ndarray, lon_deg: np.ndarray, subsolar_lat_deg: float,
                        subsolar_lon_deg: float) -> np.ndarray:
    """Elevation of the Sun's centre (degrees, no refraction) above the horizon of geodetic (lat, lon) points
    (broadcast), from the subsolar point: 90 degrees minus the angle between the point's vertical and the
    subsolar point's (spherical law of cosines). Negative is night; 0 is the terminator."""
    la, lo = np.radians(lat_deg), np.radians(lon_deg)
    sa, so = np.radians(subsolar_lat_deg), np.radians(subsolar_lon_deg)
    cos_zenith = np.sin(la) * np.sin(sa) + np.cos(la) * np.cos(sa) * np.cos(lo - so)
    return np.degrees(np.arcsin(np.clip(cos_zenith, -1.0, 1.0)))


def sunlit_fraction(pos_km: np.ndarray, sun_km: np.ndarray, sun_radius_km: float = SUN_RADIUS_KM,
                    equatorial_radius_km: float = WGS84_A_KM, polar_radius_km: float = WGS84_B_KM) -> np.ndarray:
    """Fraction of the Sun's disc visible from ``pos_km`` past the Earth: 1 sunlit, 0 umbra, between: penumbra.

    ``pos_km`` (..., 3) are satellite positions and ``sun_km`` (..., 3) the Sun's geocentric position, both ITRS
    km and broadcast against each other (e.g. (T, N, 3) with (T, 1, 3)). See :func:`illumination_state`. The
    defaults are the model; other radii give simpler ones (``sun_radius_km=0``: a point Sun, whose fraction is
    1 or 0; ``polar_radius_km=equatorial_radius_km``: a spherical Earth), for comparison with other tools.

    The Sun is not a point: seen from low orbit it is a disc 0.53 deg across, and the Earth's limb takes several
    seconds to sweep over it. Where the Earth hides the whole disc the satellite is in the *umbra* (no direct
    sunlight at all); where it hides part of it, in the *penumbra* (the solar arrays get that part of the
    power); where it hides none, it is sunlit. At low orbit a penumbra crossing lasts roughly the Sun's
    angular diameter divided by the rate at which the limb moves across it (about the orbital rate, 1.1e-3
    rad/s at 500 km, slower higher up): ~8-12 s when the orbit crosses the shadow squarely, longer when it
    grazes it.

    The Earth is the WGS84 ellipsoid, 21 km thinner at the poles than at the equator. Multiplying z by a/b turns
    it into a sphere of the equatorial radius a (the same trick as :func:`segment_clearance_km`); in that
    stretched space the Earth's apparent disc is an exact circle. An inclined or polar orbit often meets the
    shadow's edge at high latitude, where a sphere of the equatorial radius would place the limb up to 21 km
    too high: entry comes seconds early and exit seconds late, tens of seconds for an orbit that grazes the
    shadow, and a dawn-dusk sun-synchronous orbit, which skims the terminator all year and is eclipsed only in
    a season around one solstice, would see that season start early and end late.

    Both bodies are then circles on the sky of the satellite: angular radii ``rs = asin(R_sun / d_sun)`` and
    ``re = asin(a / r)``, their centres ``c`` apart. The visible fraction is one minus the area of the overlap
    of the two circles over the Sun's area, with the plane circle-circle lens formula (Montenbruck and Gill,
    *Satellite Orbits*, 3.4.2). Approximations: the Sun is a uniform disc (no limb darkening) at its true
    distance (:data:`SUN_RADIUS_KM`); the formula is planar, whose error on a 0.27 deg disc against the curved
    Earth limb is ~0.1 % of the Sun's radius; the stretch deforms the Sun's disc by at most 0.34 %; no
    atmosphere (in reality the air absorbs sunlight grazing the lowest few tens of km, dimming the Sun a few
    seconds before the geometric penumbra, and refraction bends a little light into the shadow).
    """
    scale = np.array([1.0, 1.0, equatorial_radius_km / polar_radius_km])
    p = np.asarray(pos_km, dtype=float) * scale
    s = np.asarray(sun_km, dtype=float) * scale
    r2 = np.einsum("...i,...i->...", p, p)
    ps = np.einsum("...i,...i->...", p, s)
    d2 = np.einsum("...i,...i->...", s, s) - 2 * ps + r2  # squared distance to the Sun
    cos_c = (r2 - ps) / np.sqrt(r2 * d2)  # c: from the direction of the Earth's centre to that of the Sun's
    sin_re = np.minimum(equatorial_radius_km / np.sqrt(r2), 1.0)
    sin_rs = np.minimum(sun_radius_km / np.sqrt(d2), 1.0)
    cos_re, cos_rs = np.sqrt(1 - sin_re**2), np.sqrt(1 - sin_rs**2)
    # Most satellites are plainly sunlit (c >= re + rs) or in the umbra (c <= re - rs): compare cosines, no
    # trigonometry; the overlap is computed only for the few others.
    lit = cos_c <= cos_re * cos_rs - sin_re * sin_rs
    dark = (cos_c >= cos_re * cos_rs + sin_re * sin_rs) & (sin_re > sin_rs)
    frac = np.where(dark, 0.0, 1.0)
    part = ~(lit | dark)
    if part.any():
        frac[part] = _visible_disc_fraction(np.arcsin(np.broadcast_to(sin_rs, part.shape)[part]),
                                            np.arcsin(np.broadcast_to(sin_re, part.shape)[part]),
                                            np.arccos(np.clip(cos_c[part], -1.0, 1.0)))
    return frac


def _visible_disc_fraction(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Fraction of a disc of radius ``a`` outside a disc of radius ``b`` whose centre is ``c`` away (plane)."""
    frac = np.ones(c.shape)
    frac[c <= b - a] = 0.0  # covered
    inside = c <= a - b  # the occulting disc within the other: an annulus stays visible
    frac[inside] = 1.0 - (b[inside] / a[inside]) ** 2
    lens = (c < a + b) & (c > np.abs(b - a))
    a, b, c = a[lens], b[lens], c[lens]
    x = (c**2 + a**2 - b**2) / (2 * c)  # from the first disc's centre to the chord joining the intersections
    y = np.sqrt(np.maximum(a**2 - x**2, 0.0))  # half that chord
    overlap = a**2 * np.arctan2(y, x) + b**2 * np.arctan2(y, c - x) - c * y
    frac[lens] = np.clip(1.0 - overlap / (np.pi * a**2), 0.0, 1.0)
    return frac


#: Illumination states of :func:`illumination_state`.
ILLUMINATION = ("umbra", "penumbra", "sunlit")
UMBRA, PENUMBRA, SUNLIT = range(len(ILLUMINATION))


def illumination_state(fraction: np.ndarray) -> np.ndarray:
    """uint8 state of visible solar fractions: 0 umbra (none visible), 1 penumbra (part), 2 sunlit (all)."""
    f = np.asarray(fraction)
    return np.where(f >= 1.0, SUNLIT, np.where(f > 0.0, PENUMBRA, UMBRA)).astype(np.uint8)


def sun_angle_deg(from_km: np.ndarray, to_km: np.ndarray, sun_km: np.ndarray) -> np.ndarray:
    """Angle at ``from_km`` between the direction to ``to_km`` and the direction to the Sun at ``sun_km``."""
    return angle_deg(to_km - from_km, sun_km - from_km)
