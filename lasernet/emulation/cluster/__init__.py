"""lasernet on several machines: a Ray cluster carries one host agent per machine; the coordinator stays one.

A user forms the cluster with Ray's own commands (``ray start --head`` on one machine, ``ray start --address
HEAD:6379`` on the others, each as root, each with the same lasernet checkout and virtual environment) and runs
``lasernet up SCENARIO --cluster HEAD:6379`` on the head. Ray does membership, placement of the agents (one
actor per machine, pinned by Ray's ``node:<ip>`` resource), remote calls and failure detection; lasernet adds
what is specific to an emulated constellation:

* :mod:`lasernet.emulation.cluster.placement`: which machine holds which router (blocks of whole orbital planes);
* :mod:`lasernet.emulation.cluster.agent`: the actor on each machine, a :class:`~lasernet.emulation.host.LocalHost`
  behind plain-data messages, plus processes in its nodes, the substrate's delay and cleanup;
* :mod:`lasernet.emulation.cluster.group`: the coordinator's side, one host interface fanned out over the machines, one
  message per machine per tick.

:func:`start_group` is what :class:`~lasernet.emulation.coordinator.Emulation` calls with ``cluster=ADDRESS``;
:func:`down` is what ``lasernet down`` does for a cluster run: every machine's share is removed on that
machine, through Ray, from the state file each machine keeps (so it works after the coordinator was killed).
"""

from __future__ import annotations

import logging

import numpy as np

from ...errors import LasernetError
from .placement import Placement, place

log = logging.getLogger("lasernet")

__all__ = ["ClusterError", "Placement", "connect", "down", "machines", "place", "start_group"]


class ClusterError(LasernetError):
    """The cluster cannot be used (Ray missing, no cluster at the address, a machine not answering)."""


def connect(address: str) -> None:
    """Join the Ray cluster at ``address`` (``HOST:PORT`` of the head's GCS) as its driver."""
    try:
        import ray
    except ImportError:
        raise ClusterError("--cluster needs Ray: scripts/setup.sh installs it (pip install 'ray==2.60.0')") from None
    if ray.is_initialized():
        return
    import socket

    host, _, port = address.rpartition(":")
    try:  # Ray itself retries for a minute before it gives up on an address where nothing listens
        socket.create_connection((host, int(port)), timeout=3).close()
    except (OSError, ValueError) as exc:
        raise ClusterError(f"--cluster {address}: no Ray cluster answers there ({exc}); start it with `ray start "
                           f"--head --port PORT` on the head and run lasernet there") from None
    try:
        ray.init(address=address, namespace="lasernet", logging_level=logging.WARNING, log_to_driver=False,
                 configure_logging=True)
    except Exception as exc:  # ConnectionError, ValueError, ...: Ray's message says what was wrong
        raise ClusterError(f"--cluster {address}: cannot join the Ray cluster there ({str(exc).splitlines()[0]}); "
                           f"start it with `ray start --head --port PORT` on the head and run lasernet there")


def machines() -> list[dict]:
    """The cluster's live machines, the driver's own first, then by address: ``{"ip", "hostname", "cpus"}``."""
    import ray

    here = ray.util.get_node_ip_address()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    nodes.sort(key=lambda n: (n["NodeManagerAddress"] != here, tuple(int(x) for x in
                                                                       n["NodeManagerAddress"].split("."))))
    return [{"ip": n["NodeManagerAddress"], "hostname": n.get("NodeManagerHostname", ""),
             "cpus": n.get("Resources", {}).get("CPU", 0)} for n in nodes]


def machine_run_id(run_id: str, machine: int) -> str:
    """The id of machine ``machine``'s share of run ``run_id`` (its state file, relay table and sockets)."""
    from ...net.delayline.table import RUN_ID_MAX_LEN

    suffix = f"-m{machine}"
    return run_id[:RUN_ID_MAX_LEN - len(suffix)].rstrip("-") + suffix


def start_group(address: str, emulation, first):
    """Join the cluster, place the plan's routers, start one agent per machine: the run's host group."""
    import ray

    from .agent import MAX_CONCURRENCY, HostAgent
    from .group import HostGroup

    connect(address)
    found = machines()
    if not found:
        raise ClusterError(f"--cluster {address}: the cluster has no live machine")
    placement = place(first.planes, first.n_satellites, len(first.node_names) - first.n_satellites,
                      first.links.a, first.links.b, first.up, len(found))
    used = sorted(set(placement.machine.tolist()))
    found = [found[m] for m in used]  # a machine that holds no router gets no agent
    remap = {m: k for k, m in enumerate(used)}
    placement = Placement(np.array([remap[m] for m in placement.machine.tolist()], np.int64))
    run_ids = [machine_run_id(emulation.run_id, m) for m in range(len(found))]
    agent_cls = ray.remote(HostAgent)
    agents = [agent_cls.options(resources={f"node:{m['ip']}": 0.001}, num_cpus=0, max_concurrency=MAX_CONCURRENCY,
                                name=run_ids[k]).remote(k, m["ip"]) for k, m in enumerate(found)]
    emulation.state.data["cluster"] = {"address": address, "machines": [
        {"name": f"m{k}", "ip": m["ip"], "run_id": run_ids[k]} for k, m in enumerate(found)]}
    emulation.state.save()
    group = HostGroup(agents, found, placement, run_ids, state=emulation.state)
    group._get([agent.create.remote(run_ids[k], emulation.run_id, str(emulation.run_dir), emulation.scenario.name)
                for k, agent in enumerate(agents)], range(len(agents)))
    cross = placement.crossing(first.links.a, first.links.b) & first.up.any(axis=0)
    share = placement.share(len(found))
    log.warning("lasernet: cluster of %d machines: %s; %d of %d links cross machines", len(found),
                ", ".join(f"m{k} {m['ip']} {int(share[k])} routers" for k, m in enumerate(found)), int(cross.sum()),
                int(first.up.any(axis=0).sum()))
    emulation.cluster_report = {"machines": [{"name": f"m{k}", "ip": m["ip"], "routers": int(share[k])}
                                             for k, m in enumerate(found)],
                                "cross_machine_links": int(cross.sum()), "links": int(first.up.any(axis=0).sum())}
    return group


def exec_in_node(data: dict, node: str, argv: list[str]) -> tuple[int, str, str]:
    """Run ``argv`` in ``node`` of the cluster run ``data`` (its coordinator's state), on the node's machine."""
    import ray

    from .agent import node_exec

    info = data["cluster"]
    where = info.get("nodes", {}).get(node)
    if where is None:
        some = ", ".join(list(info.get("nodes", {}))[:5])
        raise ClusterError(f"{data['run_id']}: unknown node {node!r} (nodes include {some})")
    machine = info["machines"][where["machine"]]
    connect(info["address"])
    task = ray.remote(node_exec).options(resources={f"node:{machine['ip']}": 0.001}, num_cpus=0)
    return ray.get(task.remote(machine["run_id"], node, list(argv)))


def down(data: dict) -> list[str]:
    """Remove every machine's share of the cluster run ``data`` (its coordinator's state), on that machine.

    Each share is removed by a Ray task pinned to its machine that reads the share's state file there. Answers
    one line per machine; a machine that cannot be reached is named with what to run on it.
    """
    import ray

    from .agent import cleanup

    info = data.get("cluster") or {}
    connect(info["address"])
    task = ray.remote(cleanup)
    lines = []
    refs = [(m, task.options(resources={f"node:{m['ip']}": 0.001}, num_cpus=0).remote(m["run_id"]))
            for m in info.get("machines", [])]
    for m, ref in refs:
        try:
            removed = ray.get(ref, timeout=120)
            lines.append(f"{m['name']} ({m['ip']}): {'; '.join(removed) if removed else 'nothing left'}")
        except Exception as exc:
            lines.append(f"{m['name']} ({m['ip']}): not reached ({type(exc).__name__}); on that machine run "
                         f"`lasernet down {m['run_id']}`")
    return lines
