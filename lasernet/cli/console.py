"""Mininet's CLI with lasernet's own commands: ``links``, ``path A B`` and ``orbit``.

Everything Mininet's CLI offers works as usual (``sat-0-1 ip route``, ``xterm``, ``dump``, ``pingall``...);
the emulation keeps ticking in a background thread while the prompt is open.
"""

from __future__ import annotations

from mininet.cli import CLI


class LasernetCLI(CLI):
    prompt = "lasernet> "
    identchars = CLI.identchars + "-"  # node names such as sat-0-1 are commands too (`sat-0-1 ip route`)

    def __init__(self, emulation, **kwargs):
        self.emu = emulation
        super().__init__(emulation.net, **kwargs)

    def do_links(self, line: str) -> None:
        """links [NODE]: live state of the links (of NODE only, if given): up, delay, loss, rate."""
        node = line.strip()
        rows = [r for r in self.emu.link_table() if not node or node in r["link"].split("~")]
        self.stdout.write(f"{'link':32} {'kind':4} {'up':4} {'delay ms':>9} {'loss':>6} {'rate Mbit/s':>12}\n")
        for r in rows:
            self.stdout.write(f"{r['link']:32} {r['kind']:4} {'up' if r['up'] else 'DOWN':4} "
                              f"{r['delay_ms']:9.3f} {r['loss']:6.3f} {r['rate_bps'] / 1e6:12.1f}\n")

    def do_path(self, line: str) -> None:
        """path A B: the oracle's current path from node A to node B and its predicted one-way delay."""
        args = line.split()
        if len(args) != 2:
            self.stdout.write("usage: path A B\n")
            return
        try:
            nodes, delay_s = self.emu.path(*args)
        except KeyError as exc:
            self.stdout.write(f"{exc.args[0]}\n")
            return
        if not nodes:
            self.stdout.write(f"no path from {args[0]} to {args[1]} now\n")
            return
        self.stdout.write(f"{' > '.join(nodes)}\n{len(nodes) - 1} hops, one-way {delay_s * 1e3:.3f} ms, "
                          f"RTT {2 * delay_s * 1e3:.3f} ms (predicted)\n")

    def do_orbit(self, _line: str) -> None:
        """orbit: emulated time, links up, ticks and overruns."""
        import datetime as dt

        t_s = self.emu.now_s()
        rows = self.emu.link_table()
        up = sum(r["up"] for r in rows)
        over = sum(t.overrun for t in self.emu.ticks)
        when = self.emu.start_utc + dt.timedelta(seconds=t_s)
        self.stdout.write(f"t = {t_s:.1f} s ({when:%Y-%m-%d %H:%M:%S} UTC), speed {self.emu.speed:g}x; "
                          f"links up {up}/{len(rows)}; ticks {len(self.emu.ticks)}, overruns {over}\n")
