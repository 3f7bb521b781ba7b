"""The live emulation passes its integration tests with the netem backend, inside Debian's stock kernel under QEMU.

The evidence is tests/integration/test_emulation.py (RTT against light time, a forced outage's loss window,
rerouting, loss, rate, geometry-driven delay drift), run in one boot with ``LASERNET_LINKS=netem`` on the scenario
``tiny`` (see conftest.py for why). Under TCG the RTT tests use the guest bounds documented in test_emulation.py,
the geometry-drift test (300x speed) is skipped, and every other bound is the host's. That a normal end with the
netem backend leaves nothing behind is checked by the README demo's boot (test_readme_demo_in_vm.py), on ``mini``.
"""

import pytest


@pytest.mark.vm
def test_emulation_tests_pass_with_the_netem_backend_inside_the_stock_kernel_vm(vm_emulation):
    result = vm_emulation
    if result.exit_code != 0:
        pytest.fail(f"guest emulation tests: exit code {result.exit_code}"
                    f"{': ' + result.error if result.error else ''}\n"
                    f"--- guest output ---\n{result.output}\n--- serial log (tail) ---\n{result.serial_tail()}",
                    pytrace=False)
    summary = [line for line in result.output.splitlines() if " passed" in line and line.startswith("=")]
    assert summary, result.output
    # Only the geometry-drift test may skip in the guest (it needs ticks on time at 300x; see its reason).
    skipped = [line for line in result.output.splitlines() if line.startswith("SKIPPED")]
    assert all("test_emulation.py" in line and "ticks on time" in line for line in skipped), skipped
