"""Start one etcd member of a cluster whose members are the nodes of a lasernet workload command.

Run by a workload command on every node of the cluster (``nodes: [orb-*]``): the cluster is the command's
``LASERNET_GROUP`` (``name=ip`` of each member), this member is ``LASERNET_NODE``. Peers talk on port 2380,
clients on 2379, both on the node's address. Raft timing comes from ``HEARTBEAT_MS`` and ``ELECTION_MS``
(etcd's defaults, 100 and 1000 ms, assume a LAN; across orbital paths of 100-200 ms RTT the heartbeat should be
about the largest RTT and the election timeout ten times that). Data lives in ``./data`` (the job's working
directory, inside the run directory). Not named ETCD_*: etcd reads every such variable as a flag.
"""

import os
import shutil
import sys


def main() -> int:
    node, ip = os.environ["LASERNET_NODE"], os.environ["LASERNET_IP"]
    members = [entry.split("=", 1) for entry in os.environ["LASERNET_GROUP"].split()]
    cluster = ",".join(f"{name}=http://{addr}:2380" for name, addr in members)
    etcd = shutil.which("etcd") or "/usr/bin/etcd"
    args = [etcd, "--name", node, "--data-dir", "data", "--initial-cluster", cluster,
            "--initial-cluster-state", "new", "--initial-cluster-token", "lasernet",
            "--listen-peer-urls", f"http://{ip}:2380", "--initial-advertise-peer-urls", f"http://{ip}:2380",
            "--listen-client-urls", f"http://{ip}:2379", "--advertise-client-urls", f"http://{ip}:2379",
            "--heartbeat-interval", os.environ.get("HEARTBEAT_MS", "100"),
            "--election-timeout", os.environ.get("ELECTION_MS", "1000"), "--logger", "zap", "--log-outputs", "stderr"]
    print(" ".join(args), flush=True)
    os.execv(etcd, args)
    return 1


if __name__ == "__main__":
    sys.exit(main())
