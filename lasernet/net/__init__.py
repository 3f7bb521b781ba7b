"""Linux plumbing for the emulator: namespaces, rtnetlink, TAP devices, the delay line, keep-awake loops.

Everything here is about the Linux kernel and knows nothing of satellites, links between them or scenarios; it
imports nothing of lasernet outside ``lasernet.net`` (the emulation above it names nodes, addresses and slots).

Modules:

* :mod:`~lasernet.net.libc`: the C library calls ``os`` lacks (setns, unshare, prctl, timerfd), loaded once;
  SCHED_FIFO.
* :mod:`~lasernet.net.names`: the names kernel objects may take (interfaces, namespaces, run labels).
* :mod:`~lasernet.net.netns`: network namespaces: open by name, PID or path, run code inside, ``net.*`` sysctls.
* :mod:`~lasernet.net.rtnl`: rtnetlink: batched link, address, route, neighbour and qdisc changes; route
  parsing and route monitoring.
* :mod:`~lasernet.net.tap`: persistent TAP interfaces in a namespace, their MACs and carrier.
* :mod:`~lasernet.net.delayline`: the user-space delay line: its shared-memory parameter
  :mod:`~lasernet.net.delayline.table`, the :mod:`~lasernet.net.delayline.relay` process and the
  :mod:`~lasernet.net.delayline.client` that starts it and hands it links.
* :mod:`~lasernet.net.awake`: one SCHED_IDLE spinner per CPU, so that wake-ups are not delayed by idle states.
* :mod:`~lasernet.net.procs`: processes by identity (PID and start time), stopping them with a grace period, the
  run root under ``/run/lasernet``.
"""
