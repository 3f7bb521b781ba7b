"""One "machine"'s half of a netem link that crosses machines, driven line by line (run inside a machine namespace).

What a cluster agent does for its share of a cross-machine link, without Ray: the netem backend's half
(:meth:`lasernet.emulation.links.NetemLinks.add_half`: the node's veth end shaped by netem, a bridge and a VXLAN
device towards the other machine), the agent's UDP echo and its measurement of the one-way delay to the other
machine (:class:`lasernet.emulation.cluster.agent.HostAgent`), and the link state applied with the measured
substrate taken off (``set_substrate``). Protocol on stdin/stdout, one JSON object per line::

    start: python cross_half.py END BIND_IP NODE_PID     -> {"mac", "peer_mac", "port", "echo_port"}
    {"op": "connect", "ip": ..., "port": ...}             -> {"ok": true}
    {"op": "measure", "ip": ..., "echo_port": ...}        -> {"one_way_s": ..., "lost": ...}
    {"op": "apply", "up": true, "delay_s": D, "substrate_s": S}  -> {"ok": true}
    {"op": "quit"}                                        -> the backend and the echo stop; exit 0
"""

from __future__ import annotations

import json
import sys

import numpy as np

from lasernet.addressing import LinkAddress
from lasernet.emulation.cluster.agent import HostAgent
from lasernet.emulation.links import NetemLinks

SLOT = 7
LINK = LinkAddress(SLOT, 0, 1, "eth-b", "eth-a", "10.78.0.0", "10.78.0.1")


def main() -> int:
    end, bind_ip, node_pid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    agent = HostAgent(end, bind_ip)
    backend = NetemLinks(f"vmcross-{end}").start()
    try:
        mac, peer_mac, port = backend.add_half(LINK, end, node_pid, bind_ip)
        say({"mac": mac, "peer_mac": peer_mac, "port": port, "echo_port": agent.echo_port()})
        for line in sys.stdin:
            msg = json.loads(line)
            if msg["op"] == "connect":
                backend.connect_half(SLOT, msg["ip"], msg["port"])
                say({"ok": True})
            elif msg["op"] == "measure":
                say(agent.measure({1 - end: (msg["ip"], msg["echo_port"])})[1 - end])
            elif msg["op"] == "apply":
                backend.set_substrate([SLOT], [msg["substrate_s"]])
                up = np.full((1, 2), bool(msg["up"]))
                delay = np.full((1, 2), float(msg["delay_s"]))
                backend.apply(np.array([SLOT]), up, delay, np.zeros((1, 2)), np.zeros((1, 2)))
                say({"ok": True})
            elif msg["op"] == "quit":
                break
    finally:
        backend.stop()
        agent.stop()
    return 0


def say(obj) -> None:
    print(json.dumps(obj), flush=True)


if __name__ == "__main__":
    sys.exit(main())
