"""Make lasernet/data/land-1deg.npz: a 1-degree land/sea mask for the constellation maps (run once, by hand).

The source is the GLOBE 1 km land mask as packaged by ``global-land-mask`` on PyPI (``pip install
global-land-mask``; ~1 GB in memory while this runs). A cell is land when at least half of its 1 km samples are.
The result is 180 x 360 bits (8 KB packed), small enough to ship, so maps need no download and no cartopy.
"""

import sys
from pathlib import Path

import numpy as np


def main() -> int:
    from global_land_mask import globe

    step = 120  # 1 km samples per degree in the GLOBE grid (21600 x 43200)
    ocean = globe._mask  # True over water; rows run from -90 (south) to +90
    lat = globe._lat
    land = ~ocean.reshape(180, step, 360, step).mean(axis=(1, 3), dtype=np.float32).__ge__(0.5)
    if lat[0] > lat[-1]:
        land = land[::-1]
    out = Path(__file__).resolve().parent.parent / "lasernet" / "data" / "land-1deg.npz"
    np.savez_compressed(out, land=np.packbits(land, axis=1), rows=np.array(180), cols=np.array(360),
                        source=np.array("GLOBE 1 km land mask via the global-land-mask package, 1-degree majority"))
    print(f"{out}: {land.mean():.1%} land, {out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
