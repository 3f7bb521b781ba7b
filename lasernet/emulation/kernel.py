"""Kernel state inside the nodes' namespaces: link addresses, permanent neighbours and routes, applied in batches.

The driver queues what each node needs (the /31 on a new link's interface, a permanent neighbour entry for the
peer so that no ARP exchange crosses a delayed link, routes to other nodes' loopbacks) and calls ``commit()``
once per tick; each namespace with pending work gets one batch. Failures raise with the node and the operation.
"""

from __future__ import annotations

import subprocess

from .addressing import LinkAddress, loopback_ip


class KernelError(RuntimeError):
    pass


class Kernel:
    """Batched configuration of the nodes' namespaces (see the module docstring)."""

    def __init__(self, nodes: dict, node_names: tuple[str, ...]):
        self.nodes = nodes
        self.node_names = node_names
        self._pending: dict[int, list[str]] = {}

    def link_ends(self, link: LinkAddress, mac_a: str, mac_b: str) -> None:
        """Address both ends of a new link and pin each end's neighbour entry for the other."""
        self._queue(link.a, f"addr replace {link.ip_a}/31 dev {link.ifname_a}")
        self._queue(link.a, f"neigh replace {link.ip_b} lladdr {mac_b} dev {link.ifname_a} nud permanent")
        self._queue(link.b, f"addr replace {link.ip_b}/31 dev {link.ifname_b}")
        self._queue(link.b, f"neigh replace {link.ip_a} lladdr {mac_a} dev {link.ifname_b} nud permanent")

    def routes(self, node: int, entries) -> None:
        """Set node's routes to other nodes' loopbacks: entries of (dst node, (via ip, dev, nb) or None)."""
        for dst, hop in entries:
            prefix = f"{loopback_ip(dst)}/32"
            if hop is None:
                self._queue(node, f"route replace unreachable {prefix}")
            else:
                via, dev, _ = hop
                # src: traffic a node originates leaves with its loopback, the one address every node can reach.
                self._queue(node, f"route replace {prefix} via {via} dev {dev} onlink src {loopback_ip(node)}")

    def _queue(self, node: int, line: str) -> None:
        self._pending.setdefault(node, []).append(line)

    def commit(self) -> int:
        """Apply everything queued, one batch per namespace; return the number of operations."""
        pending, self._pending = self._pending, {}
        count = 0
        for node, lines in pending.items():
            host = self.nodes[self.node_names[node]]
            proc = subprocess.run(["mnexec", "-a", str(host.pid), "ip", "-force", "-batch", "-"],
                                  input="\n".join(lines) + "\n", capture_output=True, text=True)
            if proc.returncode != 0:
                first = proc.stderr.strip().splitlines()[0] if proc.stderr.strip() else f"exit {proc.returncode}"
                raise KernelError(f"configuring node {host.name}: {first}")
            count += len(lines)
        return count

    def close(self) -> None:
        self._pending.clear()
