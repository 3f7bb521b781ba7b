"""netem does what the link backend needs, proven inside Debian's stock kernel booted under QEMU.

The evidence is tests/vm/guest/test_netem.py, run in one boot (see conftest.py); this test fails with the guest's
pytest output and the serial log's tail when anything in the guest fails, hangs or does not boot.
"""

import pytest


@pytest.mark.vm
def test_netem_suite_passes_inside_the_stock_kernel_vm(vm_suite):
    result, measurements = vm_suite
    if result.exit_code != 0:
        pytest.fail(f"guest suite exit code {result.exit_code}"
                    f"{': ' + result.error if result.error else ''}\n"
                    f"--- guest output ---\n{result.output}\n--- serial log (tail) ---\n{result.serial_tail()}",
                    pytrace=False)
    assert measurements, "the guest suite recorded no measurement"
