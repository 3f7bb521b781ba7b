"""The README's VM commands work as written: `make demo` run by a user who has sudo, not by root.

In the Vagrant VM, `vagrant ssh -c 'cd /lasernet && make demo'` runs as the VM's user. The evidence here is one
boot of Debian's stock kernel (see conftest.py) running tests/vm/guest/readme_demo.sh: a user with passwordless
sudo and their own copy of the checkout runs `cd ~/lasernet && make demo`, so setup.sh makes their venv, the
plan runs as them and only `lasernet up` goes through sudo; `auto` picks the netem backend there.
"""

import pytest


def _fail_with_output(result, what):
    pytest.fail(f"{what}\n--- guest output ---\n{result.output}\n--- serial log (tail) ---\n{result.serial_tail()}",
                pytrace=False)


@pytest.mark.vm
def test_make_demo_run_by_a_user_with_sudo_elevates_the_live_part_and_prints_the_probe_fidelity(vm_readme_demo):
    result, checks = vm_readme_demo
    if result.exit_code != 0 or checks.get("demo_exit") != "0":
        _fail_with_output(result, f"guest script exit code {result.exit_code}, make demo exit code "
                                  f"{checks.get('demo_exit')}{': ' + result.error if result.error else ''}")
    assert "needs root" not in result.output
    assert "probe fidelity" in result.output, "lasernet up printed no probe fidelity table"


@pytest.mark.vm
def test_the_demos_run_directory_belongs_to_the_user_who_ran_make_demo(vm_readme_demo):
    result, checks = vm_readme_demo
    if checks.get("summaries") in (None, "0"):
        _fail_with_output(result, "no runs/*/summary.json in the user's checkout")
    assert checks["summary_owner"] == "lnuser", checks
    assert checks["summary_readable_by_user"] == "yes", checks
    assert checks["root_owned_in_runs"] == "0", checks


@pytest.mark.vm
def test_the_demo_leaves_no_run_state_process_namespace_or_interface_behind(vm_readme_demo):
    result, checks = vm_readme_demo
    if "links" not in checks:
        _fail_with_output(result, "the guest script did not get to its leftover checks")
    left = [line for line in result.output.splitlines() if line.startswith("  left: ")]
    assert checks["run_state_files"] == "0", checks
    assert checks["other_processes"] == "0", left
    assert checks["other_netns"] == "0", checks
    assert checks["links"] == "lo", checks  # the guest has no network card: every interface was the run's
