"""Routing for the emulated network: the shortest-delay oracle (``oracle``; ``background`` runs it in a process of
its own at scale; ``query`` asks it offline, at one instant of a run; ``policy`` routes under residency rules), the
routing daemons (``daemons``) and the FIB watcher that judges them (``convergence``)."""
