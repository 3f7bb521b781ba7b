#!/usr/bin/env bash
# Set up lasernet on Debian 12 / Ubuntu 24.04: system packages, then .venv with lasernet installed editable.
# Idempotent: run it again at any time; it only adds what is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

# etcd-server and etcd-client: the etcd example experiment (topologies/etcd-orbit.yaml). Experiments start etcd
# inside nodes; the system service Debian's package starts (where services start) is stopped and disabled below.
pkgs=(mininet iproute2 iputils-ping iperf3 tcpdump python3-venv python3-dev etcd-server etcd-client)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing ${missing[*]}"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
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
    .venv/bin/pip install -q -e '.[test]'
    touch "$stamp"
fi
.venv/bin/python -c "import mininet.net, lasernet; print('setup: lasernet', lasernet.__version__, 'ready in', '$here/.venv')"
