"""netem does what the link backend needs, proven inside Debian's stock kernel booted under QEMU.

The evidence is tests/vm/guest/test_netem.py, run in one boot (see conftest.py); the first test fails with the
guest's pytest output and the serial log's tail when anything in the guest fails, hangs or does not boot. The
second proves the harness's own promise for a guest that never finishes.
"""

import os
import shutil

import pytest

import vmharness


@pytest.mark.vm
def test_netem_suite_passes_inside_the_stock_kernel_vm(vm_suite):
    result, measurements = vm_suite
    if result.exit_code != 0:
        pytest.fail(f"guest suite exit code {result.exit_code}"
                    f"{': ' + result.error if result.error else ''}\n"
                    f"--- guest output ---\n{result.output}\n--- serial log (tail) ---\n{result.serial_tail()}",
                    pytrace=False)
    assert measurements, "the guest suite recorded no measurement"


@pytest.mark.vm
def test_a_hanging_guest_is_killed_at_the_timeout_with_exit_code_124(vm_suite):
    # Uses vm_suite only to skip with it when there is no VM; this is a boot of its own (~20 s).
    result = vmharness.run_in_vm(["sleep", "600"], timeout_s=20)
    assert result.exit_code == vmharness.EXIT_TIMEOUT
    assert result.error.startswith("TIMEOUT: guest still ") and "killed qemu" in result.error
    assert not os.path.exists(f"/proc/{result.qemu_pid}"), "QEMU left running"
    shutil.rmtree(result.results_dir)
