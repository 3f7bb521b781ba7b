"""Boot Debian's stock kernel in QEMU and run one command inside it, with this machine's root as the guest's root.

Why: the netem link backend needs ``sch_netem``, which some kernels (CI's among them) do not have. Debian's stock
kernel has it, so we boot that kernel under QEMU (``-accel tcg``: no KVM needed) and run the command there.

How the pieces divide the work:

- ``KernelCache`` fetches the kernel package that ``linux-image-amd64`` points at (``apt-get download``), unpacks
  it (``dpkg-deb -x``), indexes its modules (``depmod``) and builds a busybox initramfs. All of it lives in
  ``<repo>/.cache/vm/`` and is built once; later boots reuse it without touching the network.
- The initramfs's ``/init`` (``INIT_SCRIPT`` below) is PID 1 in the guest. It mounts the host's ``/`` over virtio
  9p read-only as the lower layer of an overlayfs whose upper layer is a tmpfs, so the guest sees the very same
  ``/usr/bin/python3``, repository and ``.venv`` as the host, can write anywhere, and throws every write away at
  power-off. It mounts proc, sys, devtmpfs, devpts, tmpfs ``/tmp`` and ``/run``, bind-mounts the cached modules
  at ``/lib/modules/<version>`` so ``modprobe`` works, loads the network modules, brings ``lo`` up, chroots into
  the overlay, runs the command and powers off.
- ``run_in_vm`` boots QEMU, streams the command's output, enforces the timeout and always kills the QEMU process
  it started (also on Ctrl-C or an exception). The host and the guest talk only through a per-run results
  directory shared writable over 9p: the host writes ``guest.conf`` and ``command.sh``; the guest writes
  ``booted`` (its uptime when the command starts), ``output.log`` and ``exit_code``.

Pitfall: both 9p shares are exported with ``multidevs=remap``. Without it the host root (which spans several host
file systems) has colliding inode numbers and the guest's tc reads a wrong ``/proc/net/psched``: netem delays come
out about 15x too small while ``tc qdisc show`` still prints the requested value. Check delays by measured RTT.

Command line (``scripts/vmtest.sh`` is a thin wrapper)::

    python3 tests/vm/vmharness.py [--timeout S] [--keep] -- COMMAND...

It prints the boot time, the command's output as it comes, and exits with the command's exit code; 124 if the
guest did not finish in time (QEMU is killed), 125 if the VM itself failed (a short reason and the serial log's
tail are printed). Only the Python standard library is used, so it runs before the project's venv exists.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import fcntl
import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO / ".cache" / "vm"

# Debian packages the harness needs on the host, by the command each provides.
HOST_TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "busybox": "busybox-static",
    "cpio": "cpio",
    "depmod": "kmod",
    "dpkg-deb": "dpkg",
}
KERNEL_META_PACKAGE = "linux-image-amd64"

# Loaded by the initramfs (with their dependencies) to reach the host root. Names as in modules.dep.
BOOT_MODULES = ["virtio_pci", "9pnet_virtio", "9p", "overlay"]
# Loaded with modprobe once the root is up; a missing one is reported, not fatal.
NET_MODULES = ["veth", "sch_netem", "sch_htb", "sch_tbf", "sch_prio", "sch_fq_codel", "tun", "bridge", "ifb", "vxlan"]

EXIT_TIMEOUT = 124
EXIT_VM_FAILED = 125

INIT_SCRIPT = r"""#!/bin/busybox sh
# PID 1 of the lasernet test VM (written by tests/vm/vmharness.py). Mount the host root as an overlay,
# run the command from the results share in a chroot, record its exit code, power off.
/bin/busybox --install -s /bin
export PATH=/bin
uptime_s() { cut -d' ' -f1 /proc/uptime; }
log() { echo "lasernet-vm: [$(uptime_s)] $*"; }
die() { log "FATAL: $*"; [ -d /results ] && echo "$*" > /results/init_error; sync; poweroff -f; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
log "init started"
for m in $(cat /modules/order); do insmod "/modules/$m" || die "insmod $m failed"; done

mkdir -p /results /lower /rw /newroot
p9="trans=virtio,version=9p2000.L,msize=512000"
mount -t 9p -o "$p9" results /results || die "cannot mount the results share"
mount -t 9p -o "$p9,ro,cache=loose" hostroot /lower || die "cannot mount the host root over 9p"
mount -t tmpfs -o mode=0755 rw /rw
mkdir -p /rw/upper /rw/work /rw/repo-upper /rw/repo-work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot \
    || die "cannot mount the overlay root"
. /results/guest.conf    # sets KERNEL_VERSION, MODULES_DIR, NET_MODULES

r=/newroot
mount -t proc proc $r/proc
mount -t sysfs sysfs $r/sys
mount -t cgroup2 cgroup2 $r/sys/fs/cgroup 2>/dev/null
mount -t devtmpfs devtmpfs $r/dev
mkdir -p $r/dev/pts $r/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $r/dev/pts
mount -t tmpfs -o mode=1777 shm $r/dev/shm
mount -t tmpfs -o mode=1777 tmp $r/tmp
mount -t tmpfs -o mode=0755 run $r/run
case "$REPO_DIR" in   # a clone under /tmp or /run (CI's may be) would be hidden by those tmpfs: show it again
    /tmp/*|/run/*) mkdir -p "$r$REPO_DIR"
        mount -t overlay overlay -o "lowerdir=/lower$REPO_DIR,upperdir=/rw/repo-upper,workdir=/rw/repo-work" \
            "$r$REPO_DIR" || mount --bind "/lower$REPO_DIR" "$r$REPO_DIR" || die "cannot show $REPO_DIR" ;;
esac
mkdir -p $r/vmresults "$r/lib/modules/$KERNEL_VERSION"
mount --bind /results $r/vmresults
mount --bind "$r$MODULES_DIR" "$r/lib/modules/$KERNEL_VERSION" || die "cannot bind the kernel modules"
for m in $NET_MODULES; do chroot $r /sbin/modprobe "$m" || log "module $m not loaded"; done
[ -c $r/dev/net/tun ] || log "no /dev/net/tun"
ip link set lo up
hostname lasernet-vm
[ "$(cat $r/proc/net/psched)" = "000003e8 00000040 000f4240 3b9aca00" ] \
    || log "unexpected /proc/net/psched: $(cat $r/proc/net/psched)"

uptime_s > /results/booted
log "running the command"
# Make the overlay the mount namespace's root (as switch_root does) before entering it, not just chroot into it:
# a process that joins the namespace with setns (Mininet's mnexec -a, which every node.popen uses) gets the
# namespace's root, and with a plain chroot that would be the initramfs, where the repository does not exist.
cd $r && mount --move . / || die "cannot move the overlay root over /"  # the working directory stays in it
chroot . /bin/sh /vmresults/command.sh > /results/output.log 2>&1 < /dev/null
echo $? > /results/exit_code
log "command exited $(cat /results/exit_code)"
sync
poweroff -f
"""


class VMUnavailable(RuntimeError):
    """QEMU or the stock kernel cannot be had on this machine (tests skip on this, and only on this)."""


class VMFailed(RuntimeError):
    """The VM booted (or tried to) but did not run the command to completion."""


@dataclasses.dataclass
class VMResult:
    """What one boot produced. ``exit_code`` is the guest command's, or 124 (timeout) / 125 (VM failure)."""

    exit_code: int
    output: str
    boot_s: float | None          # host wall time from QEMU start until the command started in the guest
    guest_uptime_s: float | None  # the guest's own uptime at that moment
    command_s: float | None       # host wall time the command ran
    total_s: float
    results_dir: Path
    serial_log: Path
    qemu_pid: int | None = None   # the QEMU process this run started (and stopped)
    error: str | None = None      # set when exit_code is 124 or 125

    def serial_tail(self, lines: int = 40) -> str:
        try:
            text = self.serial_log.read_text(errors="replace")
        except OSError:
            return "(no serial log)"
        return "\n".join(text.splitlines()[-lines:])


def _say(msg: str) -> None:
    print(f"vmtest: {msg}", file=sys.stderr, flush=True)


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, text=True, **kw)


def ensure_host_tools() -> None:
    """Install the Debian packages the harness needs when they are missing (CI starts on a fresh machine)."""
    missing = sorted({pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None})
    if shutil.which("busybox") and not _is_static(shutil.which("busybox")):
        missing.append("busybox-static")  # a dynamic busybox cannot run from the initramfs
    if not missing:
        return
    if os.geteuid() != 0:
        raise VMUnavailable(f"missing {' '.join(missing)} and not root to install them")
    _say(f"installing {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL)
        if subprocess.run(install, env=env).returncode != 0:
            raise VMUnavailable(f"apt-get install {' '.join(missing)} failed")
    still = [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
    if still:
        raise VMUnavailable(f"still missing after install: {' '.join(still)}")


def _is_static(path: str) -> bool:
    """True for an ELF without a program interpreter (statically linked)."""
    out = subprocess.run(["file", "-L", path], capture_output=True, text=True).stdout if shutil.which("file") else ""
    if out:
        return "statically linked" in out or "static-pie" in out
    return b"ld-linux" not in Path(path).read_bytes()[:4096 * 4]


class KernelCache:
    """Debian's stock kernel, its modules and our initramfs, kept in ``.cache/vm/`` and built once.

    Layout: ``kernel/boot/vmlinuz-V``, ``kernel/lib/modules/V/`` (depmod'ed), ``kernel/VERSION``,
    ``initramfs-V.cpio.gz`` and its ``.stamp`` (a hash of what went in, so a changed init is rebuilt).
    """

    def __init__(self, root: Path = CACHE_DIR, package: str | None = None):
        self.root = root
        self.package = package  # e.g. linux-image-6.1.0-56-amd64; None: whatever linux-image-amd64 depends on

    @property
    def kernel_dir(self) -> Path:
        return self.root / "kernel"

    @property
    def version(self) -> str:
        return (self.kernel_dir / "VERSION").read_text().strip()

    @property
    def vmlinuz(self) -> Path:
        return self.kernel_dir / "boot" / f"vmlinuz-{self.version}"

    @property
    def modules_dir(self) -> Path:
        return self.kernel_dir / "lib" / "modules" / self.version

    @property
    def initramfs(self) -> Path:
        return self.root / f"initramfs-{self.version}.cpio.gz"

    def prepare(self) -> None:
        """Make sure kernel, modules and initramfs are in the cache (under a lock: runs may be concurrent)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (self.kernel_dir / "VERSION").exists():
                self._fetch_kernel()
            self._build_initramfs()

    def _kernel_package(self) -> str:
        if self.package:
            return self.package

        def depends() -> str:
            r = subprocess.run(["apt-cache", "show", "--no-all-versions", KERNEL_META_PACKAGE],
                               capture_output=True, text=True)
            m = re.search(r"^Depends:.*?\b(linux-image-[0-9][^\s,(]*)", r.stdout, re.M)
            return m.group(1) if m else ""

        pkg = depends()
        if not pkg:
            subprocess.run(["apt-get", "update", "-q"], stdout=subprocess.DEVNULL)
            pkg = depends()
        if not pkg:
            raise VMUnavailable(f"apt-cache does not know {KERNEL_META_PACKAGE} (is this Debian with apt sources?)")
        return pkg

    def _fetch_kernel(self) -> None:
        pkg = self._kernel_package()
        _say(f"fetching {pkg} into {self.root} (once)")
        with tempfile.TemporaryDirectory(dir=self.root) as tmp:
            tmp = Path(tmp)
            os.chmod(tmp, 0o755)  # apt's _apt user must be able to write the .deb
            r = subprocess.run(["apt-get", "download", "-q", pkg], cwd=tmp, capture_output=True, text=True)
            if r.returncode != 0:
                raise VMUnavailable(f"apt-get download {pkg} failed: {r.stderr.strip()[-400:]}")
            deb = next(tmp.glob("*.deb"))
            unpacked = tmp / "kernel"
            _run(["dpkg-deb", "-x", str(deb), str(unpacked)])
            versions = [p.name for p in (unpacked / "lib" / "modules").iterdir()]
            if len(versions) != 1 or not (unpacked / "boot" / f"vmlinuz-{versions[0]}").exists():
                raise VMUnavailable(f"{deb.name} does not hold one kernel with its modules: {versions}")
            _run(["depmod", "-b", str(unpacked), versions[0]])
            (unpacked / "VERSION").write_text(versions[0] + "\n")
            (unpacked / "PACKAGE").write_text(deb.name + "\n")
            shutil.rmtree(self.kernel_dir, ignore_errors=True)
            unpacked.rename(self.kernel_dir)

    def _module_closure(self, names: list[str]) -> list[str]:
        """Paths (relative to the modules dir) of the named modules and their dependencies, dependencies first.

        A module built into the kernel is simply not in modules.dep and is skipped."""
        deps: dict[str, list[str]] = {}
        for line in (self.modules_dir / "modules.dep").read_text().splitlines():
            mod, _, rest = line.partition(":")
            deps[mod] = rest.split()
        by_name = {re.sub(r"\.ko(\.\w+)?$", "", Path(m).name).replace("-", "_"): m for m in deps}
        order: list[str] = []

        def visit(path: str) -> None:
            if path in order:
                return
            # modules.dep lists all (transitive) dependencies; load them deepest first.
            for dep in reversed(deps[path]):
                visit(dep)
            order.append(path)

        for name in names:
            if name.replace("-", "_") in by_name:
                visit(by_name[name.replace("-", "_")])
        return order

    def _build_initramfs(self) -> None:
        busybox = Path(shutil.which("busybox") or "/bin/busybox")
        modules = self._module_closure(BOOT_MODULES)
        stamp_text = "\n".join([INIT_SCRIPT, self.version, str(busybox), *modules])
        stamp = hashlib.sha256(stamp_text.encode()).hexdigest()
        stamp_file = self.initramfs.with_suffix(".stamp")
        if self.initramfs.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
            return
        _say(f"building {self.initramfs.name}")
        with tempfile.TemporaryDirectory(dir=self.root) as tmp:
            tree = Path(tmp) / "tree"
            for d in ("bin", "dev", "proc", "sys", "modules"):
                (tree / d).mkdir(parents=True)
            shutil.copy2(busybox, tree / "bin" / "busybox")
            (tree / "init").write_text(INIT_SCRIPT)
            os.chmod(tree / "init", 0o755)
            names = []
            for rel in modules:
                name = Path(rel).name
                shutil.copy2(self.modules_dir / rel, tree / "modules" / name)
                names.append(name)
            (tree / "modules" / "order").write_text("\n".join(names) + "\n")
            files = sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))
            out = Path(tmp) / "initramfs.cpio.gz"
            with open(out, "wb") as f:
                cpio = subprocess.Popen(["cpio", "-o", "-H", "newc", "--quiet", "-R", "0:0"], cwd=tree,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                gz = subprocess.Popen(["gzip", "-1"], stdin=cpio.stdout, stdout=f)
                cpio.stdout.close()
                cpio.communicate("\n".join(files).encode() + b"\n")
                if gz.wait() != 0 or cpio.returncode != 0:
                    raise VMFailed("building the initramfs failed")
            os.replace(out, self.initramfs)
        stamp_file.write_text(stamp)


def _write_run_files(results: Path, cache: KernelCache, command: list[str], env: dict[str, str]) -> None:
    q = shlex.quote
    conf = [
        f"KERNEL_VERSION={q(cache.version)}",
        f"MODULES_DIR={q(str(cache.modules_dir))}",
        f"REPO_DIR={q(str(REPO))}",
        f"NET_MODULES={q(' '.join(NET_MODULES))}",
    ]
    (results / "guest.conf").write_text("\n".join(conf) + "\n")
    guest_env = {
        "PATH": f"{REPO}/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "LASERNET_VM_GUEST": "1",
        "LASERNET_VM_RESULTS": "/vmresults",
        **env,
    }
    lines = ["# The guest command, run by the VM's init in the chroot (written by tests/vm/vmharness.py)."]
    lines += [f"export {k}={q(v)}" for k, v in guest_env.items()]
    lines += [f"cd {q(str(REPO))}", "exec " + shlex.join(command)]
    (results / "command.sh").write_text("\n".join(lines) + "\n")


def qemu_command(cache: KernelCache, results: Path, serial_log: Path, memory_mb: int, smp: int) -> list[str]:
    """The QEMU command line: TCG, no network card, the host root read-only and the results dir over 9p."""
    append = "console=ttyS0 quiet panic=-1 mitigations=off tsc=reliable"
    return [
        "qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", str(memory_mb), "-smp", str(smp),
        "-nodefaults", "-display", "none", "-no-reboot", "-serial", f"file:{serial_log}",
        "-kernel", str(cache.vmlinuz), "-initrd", str(cache.initramfs), "-append", append,
        "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        "-virtfs", f"local,path={results},mount_tag=results,security_model=none,multidevs=remap",
    ]


def _die_with_parent() -> None:
    """In the QEMU child before exec: get SIGKILL if the harness dies, even by SIGKILL (prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def _stop(proc: subprocess.Popen) -> None:
    """Kill the QEMU process we started (only it: by its own PID), waiting for it to go."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _raise_exit(signum, frame):
    raise SystemExit(128 + signum)


def run_in_vm(command: list[str], timeout_s: float = 600, *, env: dict[str, str] | None = None,
              results_dir: Path | None = None, memory_mb: int = 2048, smp: int = 2,
              stream=None, cache: KernelCache | None = None) -> VMResult:
    """Boot the stock kernel, run ``command`` (cwd: the repo) as root in the guest and return what happened.

    ``stream``: a text file to copy the command's output to as it comes (e.g. sys.stdout), or None.
    Raises VMUnavailable when QEMU or the kernel cannot be had; every other failure is in the result.
    """
    t0 = time.monotonic()
    ensure_host_tools()
    cache = cache or KernelCache()
    cache.prepare()
    if results_dir is None:
        runs = CACHE_DIR / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        results_dir = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=runs))
    results_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("booted", "output.log", "exit_code", "init_error"):
        (results_dir / stale).unlink(missing_ok=True)
    serial_log = results_dir / "serial.log"
    _write_run_files(results_dir, cache, command, env or {})
    argv = qemu_command(cache, results_dir, serial_log, memory_mb, smp)
    (results_dir / "qemu.cmd").write_text(shlex.join(argv) + "\n")

    # SIGTERM (a CI or pytest timeout) must unwind through the `finally` that stops QEMU, like Ctrl-C does.
    in_main_thread = threading.current_thread() is threading.main_thread()
    old_sigterm = signal.signal(signal.SIGTERM, _raise_exit) if in_main_thread else None
    t_boot = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True,  # Ctrl-C reaches us, and we stop QEMU ourselves
                                preexec_fn=_die_with_parent)
    except OSError as e:
        if in_main_thread:
            signal.signal(signal.SIGTERM, old_sigterm)
        raise VMUnavailable(f"cannot start qemu: {e}") from e
    output_path = results_dir / "output.log"
    output_pos = 0
    chunks: list[str] = []
    boot_s = guest_uptime_s = t_cmd = None
    error = None
    exit_code = EXIT_VM_FAILED

    def pump() -> None:
        nonlocal output_pos
        try:
            with open(output_path, "rb") as f:
                f.seek(output_pos)
                data = f.read()
        except FileNotFoundError:
            return
        if data:
            output_pos += len(data)
            text = data.decode(errors="replace")
            chunks.append(text)
            if stream is not None:
                stream.write(text)
                stream.flush()

    try:
        deadline = t_boot + timeout_s
        while True:
            done = proc.poll() is not None
            if boot_s is None and (results_dir / "booted").exists():
                t_cmd = time.monotonic()
                boot_s = t_cmd - t_boot
                try:
                    guest_uptime_s = float((results_dir / "booted").read_text())
                except ValueError:
                    pass
                if stream is not None:
                    up = f" (guest uptime {guest_uptime_s:.1f} s)" if guest_uptime_s else ""
                    _say(f"kernel {cache.version} booted in {boot_s:.1f} s{up}; running: {shlex.join(command)}")
            pump()
            if done:
                break
            if time.monotonic() > deadline:
                _stop(proc)
                pump()
                where = "booting" if boot_s is None else "running the command"
                error = (f"TIMEOUT: guest still {where} after {timeout_s:.0f} s; killed qemu (pid {proc.pid}); "
                         f"serial log: {serial_log}")
                exit_code = EXIT_TIMEOUT
                break
            time.sleep(0.1)
    finally:
        _stop(proc)  # also on Ctrl-C and exceptions: never leave our QEMU behind
        if in_main_thread:
            signal.signal(signal.SIGTERM, old_sigterm)
    qemu_out = proc.stdout.read().decode(errors="replace").strip() if proc.stdout else ""
    if proc.stdout:
        proc.stdout.close()
    command_s = time.monotonic() - t_cmd if t_cmd is not None else None

    if error is None:
        code_file = results_dir / "exit_code"
        if code_file.exists():
            exit_code = int(code_file.read_text().strip())
        else:
            init_error = results_dir / "init_error"
            why = init_error.read_text().strip() if init_error.exists() else None
            why = why or (f"qemu exited {proc.returncode}: {qemu_out[-300:]}" if qemu_out or proc.returncode
                          else "guest powered off without running the command")
            error = f"VM FAILED: {why}; serial log: {serial_log}"
            if boot_s is None and proc.returncode not in (0, None) and qemu_out:
                raise VMUnavailable(f"qemu would not start: {qemu_out[-300:]}")
    return VMResult(exit_code=exit_code, output="".join(chunks), boot_s=boot_s, guest_uptime_s=guest_uptime_s,
                    command_s=command_s, total_s=time.monotonic() - t0, results_dir=results_dir,
                    serial_log=serial_log, qemu_pid=proc.pid, error=error)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vmtest", description="Run COMMAND as root inside Debian's stock kernel under QEMU (cwd: the repo).",
        usage="%(prog)s [--timeout S] [options] -- COMMAND...")
    parser.add_argument("--timeout", type=float, default=600, help="seconds for boot + command (default 600)")
    parser.add_argument("--memory", type=int, default=2048, help="guest memory in MiB (default 2048)")
    parser.add_argument("--smp", type=int, default=2, help="guest CPUs (default 2)")
    parser.add_argument("--results", type=Path, help="results dir (default: a new one in .cache/vm/runs/)")
    parser.add_argument("--keep", action="store_true", help="keep the results dir (default: kept only on failure)")
    parser.add_argument("--prepare-only", action="store_true", help="fetch/build the cached kernel and initramfs")
    parser.add_argument("command", nargs="*", help="the command to run in the guest")
    args = parser.parse_args(argv)
    if args.prepare_only:
        ensure_host_tools()
        cache = KernelCache()
        cache.prepare()
        _say(f"ready: {cache.vmlinuz} {cache.initramfs}")
        return 0
    if not args.command:
        parser.error("no COMMAND given (put it after --)")
    try:
        result = run_in_vm(args.command, args.timeout, memory_mb=args.memory, smp=args.smp,
                           results_dir=args.results, stream=sys.stdout)
    except VMUnavailable as e:
        _say(f"VM UNAVAILABLE: {e}")
        return EXIT_VM_FAILED
    except KeyboardInterrupt:
        _say("interrupted; qemu stopped")
        return 130
    except SystemExit as e:  # SIGTERM, raised by _raise_exit
        _say("terminated; qemu stopped")
        return e.code
    if result.error:
        _say(result.error)
        print(result.serial_tail(), file=sys.stderr)
    cmd_s = f"command {result.command_s:.1f} s, " if result.command_s is not None else ""
    _say(f"exit code {result.exit_code} ({cmd_s}total {result.total_s:.1f} s)")
    if result.exit_code == 0 and not result.error and not args.keep and args.results is None:
        shutil.rmtree(result.results_dir, ignore_errors=True)
    else:
        _say(f"results kept in {result.results_dir}")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
