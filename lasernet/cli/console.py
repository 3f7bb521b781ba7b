"""The prompt of ``lasernet up --cli``: lasernet's own commands (``links``, ``path A B``, ``orbit``) and the nodes'.

On one machine it is Mininet's CLI with these commands added: everything Mininet's CLI offers works as usual
(``sat-0-1 ip route``, ``xterm``, ``dump``, ``pingall``...). On a cluster (``--cluster``) Mininet's CLI cannot
be had (it needs every node in this process), so the prompt is a plain :mod:`cmd` loop with the same lasernet
commands, ``nodes`` (with the machine of each) and ``NODE COMMAND...``, which runs the command in that node's
namespace on its machine and prints what it wrote. Either way the emulation keeps ticking in a background
thread while the prompt is open.
"""

from __future__ import annotations

import cmd
import sys

from mininet.cli import CLI


class LasernetCommands:
    """``links``, ``path`` and ``orbit``, for any prompt with ``self.emu`` and ``self.stdout``."""

    emu = None
    stdout = sys.stdout

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


class LasernetCLI(LasernetCommands, CLI):
    prompt = "lasernet> "
    identchars = CLI.identchars + "-"  # node names such as sat-0-1 are commands too (`sat-0-1 ip route`)

    def __init__(self, emulation, **kwargs):
        self.emu = emulation
        super().__init__(emulation.net, **kwargs)


class ClusterCLI(LasernetCommands, cmd.Cmd):
    """The prompt of a cluster run (see the module docstring); runs its loop when made, as Mininet's does."""

    prompt = "lasernet> "
    identchars = cmd.Cmd.identchars + "-"

    def __init__(self, emulation, stdin=None, stdout=None):
        super().__init__(stdin=stdin, stdout=stdout)
        self.emu = emulation
        self.use_rawinput = stdin is None and sys.stdin.isatty()
        self.cmdloop("lasernet on a cluster: links, path A B, orbit, nodes, NODE COMMAND..., exit")

    def do_nodes(self, _line: str) -> None:
        """nodes: every router and server with its machine."""
        for name, node in {**self.emu.nodes, **self.emu.servers}.items():
            self.stdout.write(f"{name:24} m{node.machine}\n")

    def do_exit(self, _line: str) -> bool:
        """exit: stop the run."""
        return True

    do_quit = do_EOF = do_exit

    def emptyline(self) -> None:
        pass

    def default(self, line: str) -> None:
        """NODE COMMAND...: run COMMAND in NODE's namespace (on its machine) and print its output."""
        name, _, rest = line.partition(" ")
        node = self.emu.nodes.get(name) or self.emu.servers.get(name)
        if node is None:
            self.stdout.write(f"*** unknown command or node: {name} (try help)\n")
            return
        if not rest.strip():
            self.stdout.write(f"usage: {name} COMMAND...\n")
            return
        self.stdout.write(node.cmd(rest))
        self.stdout.flush()

    def postcmd(self, stop: bool, line: str) -> bool:
        self.stdout.flush()
        return stop
