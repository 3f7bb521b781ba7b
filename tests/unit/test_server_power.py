"""Each tick sends servers only their satellite's power changes and each upset once, riding the tick's message.

The coordinator's power path is driven by a stand-in timeline (a power state and quota per second, upsets at
given times) and a host that records its messages; a plan window change in the middle must neither lose nor
repeat an upset. A cluster's HostGroup holds a server's power items for the machine of its router and sends them
in that machine's one ``step`` message.
"""

from __future__ import annotations

import types

import numpy as np

from lasernet.emulation.cluster.group import HostGroup
from lasernet.emulation.coordinator import Emulation
from lasernet.power import NOMINAL, OFF, THROTTLED


class FakeTimeline:
    """Satellite 0's power state by whole second; upsets as (offset_s, satellite)."""

    def __init__(self, states, factor, upsets):
        self.states, self.factor, self.upsets = states, factor, upsets

    def power_at(self, offset_s):
        s = self.states[min(int(offset_s), len(self.states) - 1)]
        q = {NOMINAL: 1.0, THROTTLED: self.factor, OFF: 0.0}[s]
        return np.array([s, NOMINAL], np.uint8), np.array([q, 1.0], np.float32)

    def upsets_between(self, from_s, to_s):
        return np.array([sat for t, sat in self.upsets if from_s < t <= to_s], np.int64)


class Recorder:
    def __init__(self):
        self.events = []

    def server_event(self, t_s, name, attach, event, cause, detail):
        self.events.append((round(t_s, 2), name, event, cause, detail))


def _emulation():
    emu = Emulation.__new__(Emulation)  # only the power path's state: no scenario is run
    emu._sat_servers = [("rack", "sat-0-0", 0, 0.5), ("spare", "sat-0-1", 1, None)]
    emu.server_quota = {}
    emu._upsets_to_s, emu._upsets_tl = -1e-9, None
    emu.recorder = Recorder()
    emu.power_log = None
    sent = []
    emu.host = types.SimpleNamespace(power=lambda items: sent.append(list(items)))
    return emu, sent


def test_only_changes_are_sent_and_each_upset_once_across_a_window_change():
    n, t, o = NOMINAL, THROTTLED, OFF
    first = FakeTimeline([n, n, t, t, o, o, t], 0.4, [(1.5, 0), (4.95, 1)])  # window from 0 s
    second = FakeTimeline([t, t, n, n], 0.4, [(0.2, 0)])  # window from 5 s (its offsets start there)
    emu, sent = _emulation()
    for k in range(0, 90):
        t_s = k * 0.1
        tl, offset = (first, 0.0) if t_s < 5.0 else (second, 5.0)
        emu._apply_power(tl, offset, t_s)
    assert sent == [[("rack", 1.0, True)],  # t=1.6: the upset at 1.5 s, still nominal
                    [("rack", 0.4, False)],  # t=2.0: throttled
                    [("rack", 0.0, False)],  # t=4.0: off (frozen)
                    # t=5.0, one message: the second window (throttled again) and the upset at 4.95 s of the first
                    [("rack", 0.4, False), ("spare", 1.0, True)],
                    [("rack", 0.4, True)],  # t=5.3: the second window's upset at 0.2 s (5.2 s)
                    [("rack", 1.0, False)]]  # t=7.0: nominal
    events = emu.recorder.events
    assert ("rack", "throttled", "power", "cpus 0.2") in [e[1:] for e in events]
    assert ("rack", "off", "power", "cpus 0") in [e[1:] for e in events]
    assert [e[1:3] for e in events if e[2] == "restart"] == [("rack", "restart"), ("spare", "restart"),
                                                            ("rack", "restart")]


def test_a_tick_sends_one_power_message_with_every_server_that_changed():
    emu, sent = _emulation()
    emu._sat_servers = [("a", "sat-0-0", 0, None), ("b", "sat-0-0", 0, 1.0)]
    tl = FakeTimeline([NOMINAL, OFF], 0.5, [])
    emu._apply_power(tl, 0.0, 0.5)
    emu._apply_power(tl, 0.0, 1.5)
    emu._apply_power(tl, 0.0, 1.6)
    assert sent == [[("a", 0.0, False), ("b", 0.0, False)]]
    assert [e[4] for e in emu.recorder.events] == ["cpu factor 0", "cpus 0"]


def test_cluster_holds_power_items_for_the_machine_of_the_servers_router():
    calls = []

    class Agent:
        def __init__(self, m):
            self.call = types.SimpleNamespace(remote=lambda method, **kw: calls.append((m, method, kw)) or m)

    group = HostGroup([Agent(0), Agent(1)], [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], None, ["r0", "r1"])
    group.servers = {"rack": types.SimpleNamespace(machine=1), "dc": types.SimpleNamespace(machine=0)}
    group._collect_substrate = lambda block=False: None
    group.power([("rack", 0.0, False)])
    group.flush()
    assert calls == [(1, "step", {"apply": None, "routes": (), "power": [("rack", 0.0, False)]})]


def test_every_event_row_reaches_the_callbacks_as_written_and_one_that_raises_is_dropped(tmp_path):
    """The recorder hands each events.csv row to on_event's callbacks as it writes it: the same fields, in order;
    a callback that raises gets nothing more, the others go on."""
    import csv
    import datetime as dt

    from lasernet.measure.recorder import Recorder as RunRecorder

    heard, raised = [], []

    def bad(event):
        raised.append(event)
        raise RuntimeError("a workload's bug")

    listeners = [heard.append, bad]
    rec = RunRecorder(tmp_path, types.SimpleNamespace(start_utc=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)),
                      listeners)
    rec.server_event(1.25, "rack", "sat-0-0", "off", "power", "cpus 0")
    rec.route_changes(1.3, 7)
    rec.site_event(2.0, "frankfurt", "", "frankfurt-a")
    rec.close()
    rows = list(csv.reader((tmp_path / "events.csv").open()))[1:]
    assert [[round(e.t_s, 3)] + list(e[1:]) for e in heard] == [[float(r[1])] + r[2:] for r in rows]
    assert [e.kind for e in heard] == ["server", "route", "site"] and heard[0].event == "off"
    assert len(raised) == 1 and listeners == [heard.append]
