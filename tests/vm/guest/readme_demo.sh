#!/bin/sh
# Inside the VM, as root: the README's demo sequence run by a user who has sudo, as in the Vagrant VM.
#
# Run by tests/vm/test_readme_demo_in_vm.py (cwd: the repository). It makes the user `lnuser` with passwordless
# sudo, gives them their own copy of this checkout (the files git knows, tracked or not, without .venv and runs/)
# and runs, as them, `cd ~/lasernet && make demo`: setup.sh makes their .venv and installs lasernet into it, plan
# runs as the user, `lasernet up` through sudo. Then, as root again, it reports what the host test checks, one
# `check: NAME=VALUE` line each. All of it lives in the guest's tmpfs and is gone at power-off.
#
# The guest has no network, so pip must find everything locally: PIP_NO_INDEX=1 and PIP_NO_BUILD_ISOLATION=0
# (setuptools and Debian's python3-wheel build the editable install), and a .pth in the system site-packages puts
# the host .venv's packages (installed there by setup.sh) on the path of every --system-site-packages venv, the
# user's own and sudo's alike. LASERNET_KEEP_AWAKE=0: under TCG a spinning vCPU starves QEMU's I/O thread.
set -u
user=lnuser
repo=$(pwd)
uptime_s() { cut -d' ' -f1 /proc/uptime; }

grep -qw "$(hostname)" /etc/hosts || echo "127.0.1.1 $(hostname)" >> /etc/hosts   # or sudo warns it cannot resolve it
useradd --create-home --shell /bin/bash "$user" || exit 1
echo "$user ALL=(ALL) NOPASSWD: ALL" > "/etc/sudoers.d/$user" && chmod 0440 "/etc/sudoers.d/$user" || exit 1
host_site=$("$repo/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
# Ahead of Debian's dist-packages (whose older pygments, say, would not satisfy lasernet's requirements), after
# the venv's own site-packages (where pip install -e puts lasernet).
at="min([i for i, d in enumerate(sys.path) if d.endswith('dist-packages')] + [len(sys.path)])"
echo "import sys; sys.path.insert($at, '$host_site')" > /usr/lib/python3/dist-packages/lasernet-vm-host-venv.pth \
    || exit 1

home=$(getent passwd "$user" | cut -d: -f6)
mkdir "$home/lasernet"
git -C "$repo" ls-files -z --cached --others --exclude-standard \
    | (cd "$repo" && tar --null --ignore-failed-read -T - -cf -) | tar -xf - -C "$home/lasernet" || exit 1
chown -R "$user:$user" "$home/lasernet"

demo='export PIP_NO_INDEX=1 PIP_NO_BUILD_ISOLATION=0 LASERNET_KEEP_AWAKE=0; cd ~/lasernet && make demo'
echo "as $user (uid $(id -u "$user"), not root; sudo without password): $demo"
t0=$(uptime_s)
su - "$user" -c "$demo"
rc=$?
t1=$(uptime_s)
echo "check: demo_exit=$rc"
echo "check: demo_s=$(echo "$t0 $t1" | awk '{printf "%.1f", $2 - $1}')"

summaries=$(ls "$home"/lasernet/runs/*/summary.json 2>/dev/null)
echo "check: summaries=$(echo $summaries | wc -w)"
for f in $summaries; do
    echo "check: summary_owner=$(stat -c %U "$f")"
    su "$user" -c "python3 -c 'import json, sys; json.load(open(sys.argv[1]))' $f" \
        && echo "check: summary_readable_by_user=yes" || echo "check: summary_readable_by_user=no"
    echo "check: root_owned_in_runs=$(find "$(dirname "$f")" ! -user "$user" | wc -l)"
done

# Nothing of the run may be left: no run state, no process but this script's, no namespace but the root one,
# no interface but lo (the guest has no network card).
echo "check: run_state_files=$(ls /run/lasernet/*.json 2>/dev/null | wc -l)"
for p in /proc/[0-9]*; do   # in this shell (no subshell), the list made before the loop's own subshells exist
    pid=${p#/proc/}
    [ "$pid" = 1 ] || [ "$pid" = $$ ] && continue
    cmd=$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)
    [ -n "$cmd" ] && echo "$pid $cmd"   # kernel threads (and processes gone meanwhile) have no command line
done > /tmp/processes
others=$(cat /tmp/processes)
echo "check: other_processes=$(echo "$others" | grep -c .)"
[ -n "$others" ] && echo "$others" | sed 's/^/  left: /'
root_ns=$(readlink /proc/1/ns/net)
echo "check: other_netns=$(for p in /proc/[0-9]*; do readlink "$p/ns/net"; done 2>/dev/null \
    | sort -u | grep -vcxF "$root_ns")"
echo "check: links=$(ip -o link show | awk -F': ' '{print $2}' | tr '\n' ' ' | sed 's/ $//')"
exit 0
