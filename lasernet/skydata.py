"""Load Skyfield's timescale and the planetary ephemeris from bundled files; never download anything.

Skyfield normally fetches ``de421.bsp`` and Earth-orientation files from the internet on first use. lasernet runs
on machines with no internet, so it takes the ephemeris from the ``skyfield-data`` package and the timescale
(leap seconds, Delta T) from Skyfield's own built-in tables. Both are loaded once per process.
"""

from __future__ import annotations

import datetime as dt
import functools
import warnings

import numpy as np


@functools.lru_cache(maxsize=1)
def timescale():
    """Skyfield's timescale from its built-in leap-second and Delta T tables (no download)."""
    from skyfield.api import load

    return load.timescale(builtin=True)


@functools.lru_cache(maxsize=1)
def ephemeris():
    """The JPL DE421 ephemeris (1900-2053) shipped by the ``skyfield-data`` package."""
    from skyfield.api import Loader

    with warnings.catch_warnings():
        # skyfield-data warns that its IERS finals file is old; lasernet uses the built-in timescale instead.
        warnings.simplefilter("ignore", RuntimeWarning)
        import skyfield_data

        path = skyfield_data.get_skyfield_data_path()
    return Loader(path, expire=False, verbose=False)("de421.bsp")


def times(start: dt.datetime, offsets_s: np.ndarray):
    """A Skyfield ``Time`` array for ``start`` (aware UTC) plus ``offsets_s`` seconds."""
    start = start.astimezone(dt.timezone.utc)
    seconds = start.second + start.microsecond * 1e-6 + np.asarray(offsets_s, dtype=float)
    return timescale().utc(start.year, start.month, start.day, start.hour, start.minute, seconds)
