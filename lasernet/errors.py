"""The errors a person can fix, each printed by the CLI as one line with exit code 2.

:class:`LasernetError` is their base: whatever raises one has found a problem in what it was given (a file, an
option, the machine) and says on one line what it is and how to fix it; the CLI prints ``error: <text>`` and exits
with code 2, having created nothing. Two kinds name where the problem is:

* :class:`ScenarioError`: a scenario file or a file it names (element files, sites): ``file: field.path: what
  is wrong`` (the path may be a TLE's ``line 4``);
* :class:`OptionError`: a command-line option or a Python parameter: ``--duration: what is wrong``.

Other one-line problems (no run to act on, a backend the kernel lacks, a daemon that did not start) are plain
:class:`LasernetError`s.
"""

from __future__ import annotations


class LasernetError(Exception):
    """A problem the user can fix, stated on one line (see the module docstring)."""


class ScenarioError(LasernetError, ValueError):
    """A scenario that cannot be used; the message is one line: ``file: field.path: what is wrong``."""

    def __init__(self, source: str, path: str, message: str):
        self.source, self.path, self.message = source, path, message
        super().__init__(f"{source}: {path}: {message}" if path else f"{source}: {message}")

    def __reduce__(self):  # whole across a process boundary (a planner process, a cluster agent)
        return type(self), (self.source, self.path, self.message)


class OptionError(LasernetError, ValueError):
    """A bad command-line option (``--step``) or Python parameter (``step_s``): ``option: what is wrong``."""

    def __init__(self, option: str, message: str):
        self.option, self.message = option, message
        super().__init__(f"{option}: {message}")

    def __reduce__(self):
        return type(self), (self.option, self.message)
