"""lasernet: a laser inter-satellite network emulator. This module is the face a Python user imports.

Orbital geometry (Skyfield/SGP4) decides which laser links exist at every instant and how long light takes
across them; an emulated network of Linux routers is kept in step with it so that real software runs on it::

    import lasernet
    scenario = lasernet.load_scenario("topologies/mini.yaml")
    timeline = lasernet.plan(scenario, duration_s=600, step_s=1)
    print(timeline.summary())

Every problem a user can fix raises a :class:`LasernetError` (a :class:`ScenarioError` for a scenario file, an
:class:`OptionError` for a parameter or option) whose text is one line naming where it is and the fix.
"""

from .errors import LasernetError, OptionError, ScenarioError
from .spec.fields import parse_time
from .spec.scenario import Scenario, load_scenario
from .spec.shipped import describe, resolve_scenario, shipped_topologies
from .timeline import CAUSES, Timeline, plan
from .version import __version__

__all__ = ["__version__", "CAUSES", "Emulation", "LasernetError", "OptionError", "Scenario", "ScenarioError",
           "Timeline", "describe", "load_scenario", "parse_time", "plan", "resolve_scenario", "shipped_topologies"]


def __getattr__(name):
    # The live half needs Mininet and root; import it only when asked for.
    if name == "Emulation":
        from .emulation.coordinator import Emulation

        return Emulation
    raise AttributeError(f"module 'lasernet' has no attribute {name!r}")
