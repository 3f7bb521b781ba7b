"""lasernet: a laser inter-satellite network emulator. This module is the face a Python user imports.

Orbital geometry (Skyfield/SGP4) decides which laser links exist at every instant and how long light takes
across them; an emulated network of Linux routers is kept in step with it so that real software runs on it::

    import lasernet
    scenario = lasernet.load_scenario("topologies/mini.yaml")
    timeline = lasernet.plan(scenario, duration_s=600, step_s=1)
    print(timeline.summary())
"""

__version__ = "0.1.0"

from .scenario import Scenario, ScenarioError, load_scenario  # noqa: E402
from .timeline import CAUSES, Timeline, plan  # noqa: E402

__all__ = ["__version__", "CAUSES", "Emulation", "Scenario", "ScenarioError", "Timeline", "load_scenario", "plan"]


def __getattr__(name):
    # The live half needs Mininet and root; import it only when asked for.
    if name == "Emulation":
        from .emulation.coordinator import Emulation

        return Emulation
    raise AttributeError(f"module 'lasernet' has no attribute {name!r}")
