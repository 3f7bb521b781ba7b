"""The names the plumbing gives kernel objects, checked before anything is made so that a bad one fails first.

Names end up in places that do not forgive: interface names are at most 15 bytes (``IFNAMSIZ`` - 1), namespace
names are files in ``/run/netns``, sysctl keys are paths under ``/proc/sys``, and a run's label is spliced into
a file in ``/dev/shm``, an abstract socket name and command lines that cleanup later matches. So every name is
checked against one of two rules here, and a refusal says which name, which rule and how long it may be:

* a **kernel name** (interfaces, namespaces, sysctl path parts): letters, digits, ``-``, ``_``, ``.``, starting
  with a letter or digit (so never ``.`` or ``..``, which would step out of ``/run/netns``);
* a **label** (a run's id): lowercase letters, digits and ``-``, starting with a letter or digit.
"""

from __future__ import annotations

import re

IFNAME_MAX_CHARS = 15
NETNS_NAME_MAX_CHARS = 64

_KERNEL_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_LABEL_RE = re.compile(r"[a-z0-9][a-z0-9-]*")


def is_kernel_name(name: str, max_chars: int = NETNS_NAME_MAX_CHARS) -> bool:
    return isinstance(name, str) and len(name) <= max_chars and bool(_KERNEL_NAME_RE.fullmatch(name))


def check_kernel_name(name: str, what: str, max_chars: int) -> str:
    """Return ``name`` if it is a kernel name of at most ``max_chars``, else raise ValueError naming ``what``."""
    if not is_kernel_name(name, max_chars):
        raise ValueError(f"bad {what} {name!r}: 1-{max_chars} of letters, digits, '-', '_', '.' "
                         f"(starting with a letter or digit)")
    return name


def check_ifname(name: str) -> str:
    """Return ``name`` if it can name a network interface, else raise ValueError naming it."""
    return check_kernel_name(name, "interface name", IFNAME_MAX_CHARS)


def check_netns_name(name: str) -> str:
    """Return ``name`` if it can name a network namespace (``/run/netns/NAME``), else raise ValueError."""
    return check_kernel_name(name, "network namespace name", NETNS_NAME_MAX_CHARS)


def check_label(name: str, what: str, max_chars: int) -> str:
    """Return ``name`` if it is ``[a-z0-9-]`` (not starting with ``-``) of at most ``max_chars``, else raise."""
    if not (isinstance(name, str) and len(name) <= max_chars and _LABEL_RE.fullmatch(name)):
        raise ValueError(f"{what} {name!r} must be [a-z0-9-]+ (not starting with '-'), at most {max_chars} "
                         f"characters")
    return name
