"""The scenario's schema in one place: what a scenario file may say, read and checked into frozen dataclasses.

* :mod:`.fields`: the strict YAML reader and the path-aware :class:`~.fields.Node` every section is read with;
* :mod:`.scenario`: the scenario file (constellation, terminals, ISLs, ground, plan, hosts, probes) and
  :func:`~.scenario.load_scenario`;
* :mod:`.elements`: TLE and OMM element files, and every satellite's node name;
* :mod:`.routing`: the ``routing:`` section (oracle or routing daemons, timers, BGP operators);
* :mod:`.workload`: the ``workload:`` section (commands, ping mesh, iperf3, outages, report instants);
* :mod:`.power`: the ``power:`` section (solar arrays, batteries, loads, power-state thresholds);
* :mod:`.capture`: the ``capture:`` section (pcap files of a live run: nodes or links, filter, start, stop);
* :mod:`.faults`: the ``upsets:`` (radiation upsets, the South Atlantic Anomaly) and ``collision:`` sections;
* :mod:`.policy`: the ``policy:`` section (residency rules over the jurisdictions of sites and operators);
* :mod:`.shipped`: the topologies shipped with lasernet.

Every problem is a :class:`lasernet.errors.ScenarioError` naming the file, the field path and the fix.
"""
