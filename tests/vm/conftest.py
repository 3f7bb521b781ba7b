"""Host side of the VM suite: boot the guest once per session and run tests/vm/guest/ inside it.

On the host, tests/vm/guest/ is not collected (it needs the guest's kernel); in the guest (LASERNET_VM_GUEST=1)
it is. The ``vm_suite`` fixture boots QEMU once and runs ``pytest tests/vm/guest`` in it; the measurements the
guest records (RTT medians, loss) and the boot time are printed in pytest's terminal summary, so CI logs show
them without ``-s``. The ``vm_emulation`` fixture boots once more and runs the live-emulation integration tests
(``EMULATION_TESTS``) in the guest with ``LASERNET_LINKS=netem``; the lines those tests print with their
measurements (RTT error, outage window, lost probes, loss, iperf3 rate) go to the summary too. The
``vm_readme_demo`` fixture boots once more and runs the README's demo sequence in the guest as a user with sudo
(``guest/readme_demo.sh``); its ``check:`` lines and the demo's key lines go to the summary.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys

import pytest

import vmharness

IN_GUEST = os.environ.get("LASERNET_VM_GUEST") == "1"
collect_ignore = [] if IN_GUEST else ["guest"]
GUEST_TIMEOUT_S = 900
_runs: list[dict] = []  # what the session's boot produced, for the terminal summary
_emulation_runs: list = []
_demo_runs: list = []
# The live-emulation tests run in the guest with the netem backend, on the scenario `tiny` (see its file for why).
EMULATION_TESTS = ["tests/integration/test_emulation.py",
                   # Not test_lifecycle.py: what it checks of the netem backend (a normal end leaves no run state,
                   # process, namespace or interface, and prints the probe fidelity) is what the README demo's boot
                   # checks, on `mini` with netem (test_readme_demo_in_vm.py); its other cases are CLI plumbing and
                   # the delay line's own (they run on the host). Not the several-relays test: the delay line's.
                   "-k", "not several_relays"]
# LASERNET_KEEP_AWAKE=0: under TCG a spinning guest vCPU is a host core emulating a busy loop, which starves QEMU's
# I/O thread (the 9p root every import reads from); the guest's bounds already allow for its slow wake-ups.
EMULATION_ENV = {"LASERNET_LINKS": "netem", "LASERNET_TEST_SCENARIO": "tiny", "LASERNET_KEEP_AWAKE": "0"}
EMULATION_TIMEOUT_S = 900
_OVERRUN = re.compile(r"tick \d+ at t=[\d.]+ s took [\d.]+ ms \(> \d+ ms\)")
# Lines the integration tests print with what they measured (see their print() calls).
_MEASURED = re.compile(r"(probes over|\(guest\) measured|outage |reroute |loss 0\.|rate 10\.|predicted RTT drifted|"
                       r"PASSED|FAILED|SKIPPED|ERROR|passed|failed|s call )")


@pytest.fixture(scope="session")
def vm_suite():
    """Boot once and run the guest-side pytest suite; returns the harness result and the guest's measurements."""
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "-ra", "--color=no",
               "-o", "addopts=", "tests/vm/guest"]
    try:
        result = vmharness.run_in_vm(command, GUEST_TIMEOUT_S)
    except vmharness.VMUnavailable as e:
        pytest.skip(f"QEMU VM unavailable: {e}")
    path = result.results_dir / "measurements.json"
    measurements = json.loads(path.read_text()) if path.exists() else {}
    _runs.append({"result": result, "measurements": measurements})
    yield result, measurements
    if result.exit_code == 0:
        shutil.rmtree(result.results_dir, ignore_errors=True)  # a failed run's files stay for a look


@pytest.fixture(scope="session")
def vm_emulation():
    """Boot once and run the live-emulation integration tests in the guest with the netem backend."""
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "-rA", "-s", "--color=no",
               "--durations=0", "-o", "addopts=", *EMULATION_TESTS]
    try:
        result = vmharness.run_in_vm(command, EMULATION_TIMEOUT_S, env=EMULATION_ENV)
    except vmharness.VMUnavailable as e:
        pytest.skip(f"QEMU VM unavailable: {e}")
    _emulation_runs.append(result)
    yield result
    if result.exit_code == 0:
        shutil.rmtree(result.results_dir, ignore_errors=True)


README_DEMO_TIMEOUT_S = 900
# The demo's own lines worth a look in CI's log (setup, the run's start and summary, the fidelity table).
_DEMO_LINES = re.compile(r"^(check: |left: |as lnuser|setup: |lasernet: |run directory|ticks: |.*needs root|sudo: )")


@pytest.fixture(scope="session")
def vm_readme_demo():
    """Boot once and run the README's `make demo` in the guest as a non-root user with passwordless sudo.

    Returns the harness result and the script's ``check: NAME=VALUE`` lines as a dict."""
    try:
        result = vmharness.run_in_vm(["sh", "tests/vm/guest/readme_demo.sh"], README_DEMO_TIMEOUT_S)
    except vmharness.VMUnavailable as e:
        pytest.skip(f"QEMU VM unavailable: {e}")
    _demo_runs.append(result)
    checks = dict(line[len("check: "):].split("=", 1) for line in result.output.splitlines()
                  if line.startswith("check: ") and "=" in line)
    yield result, checks
    if result.exit_code == 0 and checks.get("demo_exit") == "0":
        shutil.rmtree(result.results_dir, ignore_errors=True)


def pytest_terminal_summary(terminalreporter):
    for result in _demo_runs:
        tr = terminalreporter
        tr.section("the README's `make demo` inside the VM, as a user with sudo (QEMU TCG)")
        boot = f"{result.boot_s:.1f} s" if result.boot_s is not None else "did not boot"
        cmd = f"{result.command_s:.1f} s" if result.command_s is not None else "-"
        tr.write_line(f"boot {boot}, guest script {cmd}, total {result.total_s:.1f} s, exit code {result.exit_code}")
        in_table = False
        for line in result.output.splitlines():
            in_table = (in_table or line.startswith("probe fidelity")) and not line.startswith(("check: ", "sudo"))
            if in_table or _DEMO_LINES.match(line.strip()):
                tr.write_line("  " + line.rstrip())
    for result in _emulation_runs:
        tr = terminalreporter
        tr.section("live emulation with --links netem inside the VM (scenario tiny, QEMU TCG)")
        boot = f"{result.boot_s:.1f} s" if result.boot_s is not None else "did not boot"
        cmd = f"{result.command_s:.1f} s" if result.command_s is not None else "-"
        tr.write_line(f"boot {boot}, guest tests {cmd}, total {result.total_s:.1f} s, exit code {result.exit_code}")
        for line in result.output.splitlines():
            line = _OVERRUN.sub("", line)  # the driver's overrun warnings run into pytest's -v lines
            if _MEASURED.search(line) and not line.startswith("vmtest:"):
                tr.write_line("  " + line.strip())
        if result.exit_code != 0:
            tr.write_line(f"  results kept in {result.results_dir}")
    for run in _runs:
        result, measurements = run["result"], run["measurements"]
        tr = terminalreporter
        tr.section("netem inside the VM (Debian stock kernel, QEMU TCG)")
        boot = f"{result.boot_s:.1f} s" if result.boot_s is not None else "did not boot"
        cmd = f"{result.command_s:.1f} s" if result.command_s is not None else "-"
        tr.write_line(f"boot {boot}, guest suite {cmd}, total {result.total_s:.1f} s, exit code {result.exit_code}")
        for name, m in measurements.items():
            if "sent" not in m:  # not an RTT measurement: print as it is
                tr.write_line(f"  {name}: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, (int, float)) else f"{k} {v}"
                                                          for k, v in m.items()))
                continue
            if m.get("median_ms") is None:
                tr.write_line(f"  {name}: nothing came back ({m['sent']} sent)")
                continue
            above = (f", {m['above_configured_ms']:+.2f} ms vs configured"
                     if "above_configured_ms" in m else "")
            judged = (f"; p10 {m['p10_above_configured_ms']:+.2f} ms vs configured, allowed < "
                      f"{m['p10_allowance_ms']:.2f}" if "p10_allowance_ms" in m else "")
            tr.write_line(f"  {name}: RTT median {m['median_ms']:.2f} ms{above} (p10 {m['p10_ms']:.2f}, "
                          f"p90 {m['p90_ms']:.2f}){judged}, lost {m['lost']}/{m['sent']}")
        if result.exit_code != 0:
            tr.write_line(f"  results kept in {result.results_dir}")
