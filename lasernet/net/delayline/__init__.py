"""The delay line: links whose delay, loss, rate and up/down a user-space relay imposes, for kernels without netem.

Each emulated link is two TAP interfaces, one per node namespace; a relay process reads every frame one TAP
sends and writes it into the other when it is due. Three programs share the work:

* :mod:`~lasernet.net.delayline.table`: the shared-memory table of every link's parameters, which the client
  writes once per tick and the relay reads (seqlocked records, one generation per commit);
* :mod:`~lasernet.net.delayline.relay`: the relay process itself (``python -m lasernet.net.delayline.relay``);
* :mod:`~lasernet.net.delayline.client`: the controller side: start a relay, add and remove links, commit
  parameters, stop and clean up.
"""
