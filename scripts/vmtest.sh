#!/usr/bin/env bash
# Run a command as root inside Debian's stock kernel under QEMU (for the netem backend on kernels without it).
#   scripts/vmtest.sh [--timeout S] -- COMMAND...     e.g.  scripts/vmtest.sh -- python -m pytest tests/vm/guest
# The first run fetches and caches the kernel in .cache/vm/. Exit code: the command's; 124 timeout; 125 VM failed.
# The work is done by tests/vm/vmharness.py (standard library only); see docs/vmtest.md.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
exec /usr/bin/python3 "$here/tests/vm/vmharness.py" "$@"
