#!/usr/bin/env bash
# Set up lasernet on Debian 12 / Ubuntu 24.04: system packages, then .venv with lasernet installed editable.
# Idempotent: run it again at any time; it only adds what is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

# frr and bird2: the routing daemons (scenario routing:). etcd-server and etcd-client: the etcd example
# experiment (topologies/etcd-orbit.yaml). lasernet starts all of them inside its nodes; the system services
# these packages start on the host (where services start) are stopped and disabled below. chromium: the browser
# test of the web view (lasernet up --web) loads the page in it, headless. sudo: `make demo` and
# `make test` run by a user run the live part through it (and the VM test runs the demo as such a user).
pkgs=(mininet iproute2 iputils-ping iperf3 tcpdump python3-venv python3-dev frr bird2 etcd-server etcd-client chromium sudo)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing ${missing[*]}"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
    # lasernet starts routing daemons in its nodes' namespaces; the services these packages just started would
    # route the host itself: stop them (only what this run installed).
    for svc in frr bird; do
        case " ${missing[*]} " in *" $svc "*|*" ${svc}2 "*) ;; *) continue ;; esac
        if command -v systemctl >/dev/null && systemctl is-active -q "$svc" 2>/dev/null; then
            echo "setup: stopping and disabling the host's $svc service (lasernet runs its own per node)"
            $sudo systemctl disable --now -q "$svc" || true
        fi
    done
    if [[ " ${missing[*]} " == *" etcd-server "* ]] && command -v systemctl >/dev/null \
            && systemctl is-enabled etcd >/dev/null 2>&1; then
        $sudo systemctl disable --now etcd || true
    fi
fi

# Debian's Mininet lives in the system Python's site-packages: the venv must see it.
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv from /usr/bin/python3 (with system site-packages, for Mininet)"
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.lasernet-installed
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[test,cluster]'
    touch "$stamp"
fi
.venv/bin/python -c "import mininet.net, lasernet; print('setup: lasernet', lasernet.__version__, 'ready in', '$here/.venv')"
