"""Boot the lab guest under QEMU, run one command in it, return its status.

The guest is the lab kernel (lab/build-guest) with an initramfs made here:
Debian's busybox-static for ppc64el, an /init that mounts the usual file
systems, runs the command, dumps the kernel log and powers off.  Static guest
programs of your own go in with --extra DIR (they land in /extra, first in
PATH).  The whole console is saved; any kernel report in it (WARN, BUG,
lockdep, KASAN, UBSAN, KFENCE, kmemleak) fails the run and is shown.

With --hvpipe N the machine has the hvpipe model on and N HMC sources,
0x02000001 to 0x0200000N, played by the conductor (lab/conductor.py), which
also serves the guest's tests a control channel on the virtio-serial port
org.papr-hvpipe.lab.

Exit status: the command's, 124 on timeout, 125 for a kernel report or a
guest that died before the command finished.

The module of lab/run-guest; lab/demo, lab/bench and lab/soak call run(),
lab/test scan().
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Awaitable, Callable

import lib
from conductor import Conductor

LAB = Path(__file__).resolve().parent
BUSYBOX = lib.CACHE / "src" / "busybox" / "bin" / "busybox"

BEGIN, EXIT = "LAB-BEGIN", "LAB-EXIT"

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/extra:/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# What udev would add: scripts write to /dev/stdout (kselftest's runner).
ln -s /proc/self/fd /dev/fd
ln -s fd/0 /dev/stdin
ln -s fd/1 /dev/stdout
ln -s fd/2 /dev/stderr
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs tmpfs /tmp
cd /tmp
echo LAB-BEGIN
sh /lab/cmd
echo "LAB-EXIT $?"
if [ -w /sys/kernel/debug/kmemleak ]; then
	# kmemleak reports no object younger than 5 s: scan again once the
	# command's last ones are that old.
	echo scan > /sys/kernel/debug/kmemleak
	sleep 6
	echo scan > /sys/kernel/debug/kmemleak
	cat /sys/kernel/debug/kmemleak
fi
echo LAB-DMESG-BEGIN
dmesg
echo LAB-DMESG-END
poweroff -f
"""

# What a kernel prints when something went wrong.
REPORT = re.compile(
    r"WARNING: |BUG: |Oops|Kernel panic|kernel BUG|UBSAN: |"
    r"unreferenced object|suspicious RCU usage|INFO: task .* blocked|"
    r"INFO: trying to register non-static key|detected stalls? on CPU")

# A host-side task run beside the guest.  It returns None to let the guest
# command finish on its own, or a status to stop the guest and return it.
HostTask = Callable[[Conductor], Awaitable["int | None"]]


def cpio_spec(init: Path, cmd: Path, extra: Path | None) -> str:
    """The gen_init_cpio description of the initramfs."""
    lines = ["dir /dev 755 0 0", "nod /dev/console 600 0 0 c 5 1"]
    for d in ("bin", "sbin", "proc", "sys", "tmp", "lab", "extra"):
        lines.append(f"dir /{d} 755 0 0")
    lines.append(f"file /bin/busybox {BUSYBOX} 755 0 0")
    lines.append(f"file /init {init} 755 0 0")
    lines.append(f"file /lab/cmd {cmd} 644 0 0")
    if extra:
        for root, dirs, files in os.walk(extra):
            rel = Path(root).relative_to(extra)
            for d in sorted(dirs):
                lines.append(f"dir /extra/{rel / d} 755 0 0")
            for f in sorted(files):
                src = Path(root) / f
                mode = "755" if os.access(src, os.X_OK) else "644"
                lines.append(f"file /extra/{rel / f} {src} {mode} 0 0")
    return "\n".join(lines) + "\n"


def make_initramfs(kbuild: Path, command: str, extra: Path | None,
                   work: Path) -> Path:
    """Write the initramfs for one run into work and return its path."""
    if not BUSYBOX.exists():
        sys.exit(f"run-guest: {BUSYBOX} is missing (run lab/setup)")
    init, cmd = work / "init", work / "cmd"
    init.write_text(INIT)
    cmd.write_text(command + "\n")
    spec = work / "initramfs.list"
    spec.write_text(cpio_spec(init, cmd, extra))
    out = work / "initramfs.cpio"
    gen = kbuild / "usr" / "gen_init_cpio"
    with open(out, "wb") as f:
        p = subprocess.run([str(gen), str(spec)], stdout=f,
                           stderr=subprocess.PIPE, text=True)
    if p.returncode:
        sys.exit(f"run-guest: {gen} {spec} failed (exit status "
                 f"{p.returncode}): {p.stderr.strip()}")
    return out


def kcsan_reports(console: str) -> list[tuple[str, bool]]:
    """The KCSAN reports of a console: (title, whether it is the driver's).
    The title names the two functions whose accesses raced ("data-race in
    A / B"): the race is the driver's when one of them is (a papr-hvpipe
    function: "hvpipe" in its name).  A race inside other code that the
    driver merely called (a lock's own word, say) is that code's."""
    return [(line.strip(), "hvpipe" in line) for line in console.splitlines()
            if "BUG: KCSAN: " in line]


def scan(console: str) -> list[str]:
    """Lines of the console that are kernel reports.  A data race that
    KCSAN found outside the driver is no report of ours (see
    kcsan_reports): the lab lists it, and does not count it."""
    foreign = {t for t, ours in kcsan_reports(console) if not ours}
    return [line for line in console.splitlines() if REPORT.search(line)
            and line.strip() not in foreign]


WORK_PREFIX = "lab-guest-"


def hold_work(work: Path):
    """Mark work as in use for as long as the returned file stays open:
    an flock on work/.lock, which the kernel drops with the process however
    it ends.  Locked before it takes its name, so that remove_stale_work()
    never finds it unlocked."""
    f = open(work / ".lock-new", "w")
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.rename(work / ".lock-new", work / ".lock")
    return f


def remove_stale_work(base: Path | None = None) -> list[Path]:
    """Remove the work directories of runs that were killed outright
    (SIGKILL leaves no time to clean up: 6 MB each): those whose .lock
    nobody holds.  Directories without one are not ours to judge.  Returns
    what was removed."""
    removed = []
    for work in Path(base or tempfile.gettempdir()).glob(WORK_PREFIX + "*"):
        try:
            with open(work / ".lock") as f:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(work)
        except OSError:   # not there, held (BlockingIOError), not ours
            continue
        removed.append(work)
    return removed


def run(command: str, *, kernel: Path | None = None, qemu: Path | None = None,
        extra: Path | None = None, timeout: float = 300,
        log: Path | None = None, qemu_args: list[str] | None = None,
        machine_opts: str = "", quiet: bool = False, hvpipe: int = 0,
        host: HostTask | None = None, play: bool = True,
        smp: int = 2, base: str = "mainline", append: str = "") -> int:
    """Boot the guest, run command, return its status (see the module doc).

    With hvpipe, host is a HostTask run beside the guest; play False leaves
    the HMC sources to it (see Conductor).  append: more kernel parameters.
    """
    kbuild = kernel or Path(lib.last_line("run-guest", [
        str(LAB / "build-guest"), "--base", base]))
    qemu = qemu or Path(lib.last_line("run-guest", [
        str(LAB / "build-qemu")])) / "qemu-system-ppc64"
    vmlinux = kbuild / "vmlinux"
    for p in (vmlinux, qemu):
        if not p.exists():
            sys.exit(f"run-guest: {p} is missing")

    remove_stale_work()
    with tempfile.TemporaryDirectory(prefix=WORK_PREFIX) as tmp, \
            hold_work(Path(tmp)):
        work = Path(tmp)
        initrd = make_initramfs(kbuild, command, extra, work)
        keep = log is not None
        if not keep:
            fd, name = tempfile.mkstemp(prefix="guest-", suffix=".log")
            os.close(fd)
            log = Path(name)
        # QEMU's small Virtual Open Firmware boots in a fraction of SLOF's
        # time; a -prom-env makes QEMU format the NVRAM as SLOF would (a
        # blank one draws a kernel warning).  TCG has none of the spectre
        # mitigations the default machine asks for: say so, quietly.
        opts = ["x-vof=on", "cap-cfpc=broken", "cap-sbbc=broken",
                "cap-ibs=broken", "cap-ccf-assist=off"]
        opts += [o for o in (("hvpipe=on" if hvpipe else ""), machine_opts)
                 if o]
        machine = ",".join(["pseries", *opts])
        argv = [str(qemu), "-M", machine, "-cpu", "power9", "-m", "512M",
                "-prom-env", "lab=papr-hvpipe",
                "-smp", str(smp), "-display", "none", "-monitor", "none",
                "-serial", "stdio", "-no-reboot",
                "-kernel", str(vmlinux), "-initrd", str(initrd),
                "-append", f"console=hvc0 loglevel=4 panic=-1 {append}"]
        argv += qemu_args or []
        status: int | None = 1
        try:
            status = asyncio.run(boot(argv, log, timeout, quiet, work,
                                      hvpipe, host, play))
        except KeyboardInterrupt:
            # Interrupted, no message names the console: it goes too.
            status = None
            raise
        finally:
            # A console of our own naming is kept when something failed:
            # the messages above name it.
            if not keep and status in (0, None):
                log.unlink(missing_ok=True)
                log.with_suffix(".conductor.log").unlink(missing_ok=True)
        return status


async def boot(argv: list[str], log: Path, timeout: float, quiet: bool,
               work: Path, hvpipe: int, host: HostTask | None,
               play: bool = True) -> int:
    """Run QEMU (and the conductor), stream the command's output, judge."""
    conductor = None
    clog = open(log.with_suffix(".conductor.log"), "w") if hvpipe else None
    if hvpipe:
        conductor = Conductor(work, hvpipe,
                              lambda s: print(s, file=clog, flush=True), play)
        await conductor.listen()
        argv = argv + conductor.qemu_args()
    console: list[str] = []
    state = {"status": None, "inside": False}
    with open(log, "w") as logf:
        logf.write("# " + shlex.join(argv) + "\n")
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, preexec_fn=lib.die_with_parent())
        assert proc.stdout
        reader = asyncio.create_task(
            read_console(proc.stdout, logf, console, state, quiet,
                         conductor))
        waits: list[asyncio.Task] = [reader]
        host_task = None
        try:
            if conductor:
                why = await connect(conductor, reader)
                if why:
                    print(f"run-guest: {why}; QEMU's output ({log}):",
                          file=sys.stderr)
                    for line in console[-15:]:
                        print("  " + line, file=sys.stderr)
                    return 125
                if host:
                    host_task = asyncio.create_task(host(conductor))
                    waits.append(host_task)
            deadline = time.monotonic() + timeout
            while not reader.done():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                await asyncio.wait(waits, timeout=left,
                                   return_when=asyncio.FIRST_COMPLETED)
                if host_task in waits and host_task.done():
                    waits.remove(host_task)
                    if host_task.result() is not None:
                        proc.kill()
                        await proc.wait()
                        return host_task.result()
            if not reader.done():
                proc.kill()
                await proc.wait()
                print(f"run-guest: timed out after {timeout:.0f} s; console "
                      f"tail ({log}):", file=sys.stderr)
                for line in console[-30:]:
                    print("  " + line, file=sys.stderr)
                return 124
            await proc.wait()
        finally:
            if host_task and not host_task.done():
                host_task.cancel()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            if conductor:
                await conductor.close()
            if clog:
                clog.close()
    status = state["status"]
    reports = scan("\n".join(console))
    foreign = [t for t, ours in kcsan_reports("\n".join(console))
               if not ours]
    if foreign:
        print(f"run-guest: {len(foreign)} KCSAN reports outside the driver "
              f"(not counted; {log}):", file=sys.stderr)
        for line in sorted({re.sub(r"^\[[^]]*\]\s*", "", t)
                            for t in foreign}):
            print("  " + line, file=sys.stderr)
    if reports:
        print(f"run-guest: kernel reports in the console ({log}):",
              file=sys.stderr)
        for line in reports[:40]:
            print("  " + line, file=sys.stderr)
        return 125
    if status is None:
        print(f"run-guest: the guest stopped before the command finished "
              f"(qemu status {proc.returncode}); console tail ({log}):",
              file=sys.stderr)
        for line in console[-30:]:
            print("  " + line, file=sys.stderr)
        return 125
    return status


async def connect(conductor: Conductor, reader: asyncio.Task) -> str:
    """Connect the conductor to QEMU's sockets; what went wrong, or "".
    reader ends when QEMU does."""
    connecting = asyncio.create_task(conductor.connect())
    done, _ = await asyncio.wait({connecting, reader}, timeout=60,
                                 return_when=asyncio.FIRST_COMPLETED)
    if connecting in done and not connecting.exception():
        return ""
    connecting.cancel()
    await asyncio.gather(connecting, return_exceptions=True)
    if connecting in done:
        return str(connecting.exception())
    socks = ", ".join(str(s.path) for s in conductor.sources)
    if reader in done:
        return f"QEMU exited before the HMC sources were connected ({socks})"
    return f"the HMC sources were not connected within 60 s ({socks})"


async def read_console(stream: asyncio.StreamReader, logf, console: list[str],
                       state: dict, quiet: bool,
                       conductor: Conductor | None) -> None:
    """Save the console, echo the command's output, note its status."""
    while True:
        raw = await stream.readline()
        if not raw:
            return
        line = raw.decode(errors="replace").rstrip("\r\n")
        console.append(line)
        logf.write(line + "\n")
        logf.flush()
        # The kernel may have begun a line that ours completes.
        m = re.search(EXIT + r" (\d+)$", line)
        if line.endswith(BEGIN):
            state["inside"] = True
        elif m:
            state["inside"] = False
            state["status"] = int(m.group(1))
        elif state["inside"] and not quiet:
            print(line, flush=True)
        if conductor:
            await conductor.console_line(line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    lib.guest_arguments(ap)
    ap.add_argument("--extra", type=Path,
                    help="directory of static guest programs, put in /extra")
    ap.add_argument("--timeout", type=float, default=300,
                    help="seconds before the guest is killed (default 300)")
    ap.add_argument("--log", type=Path,
                    help="where to save the console (default: a temp file); "
                    "the conductor's log goes beside it (.conductor.log)")
    ap.add_argument("--qemu-arg", action="append", default=[],
                    help="one more QEMU argument (repeatable)")
    ap.add_argument("--machine-opts", default="",
                    help="extra -machine pseries options")
    ap.add_argument("--hvpipe", type=int, default=0, metavar="N",
                    help="hvpipe on, N HMC sources and the lab control "
                    "channel (lab/conductor.py)")
    ap.add_argument("-q", "--quiet", action="store_true",
                    help="do not echo the command's output")
    ap.add_argument("command", nargs=argparse.REMAINDER,
                    help="guest shell command (after --)")
    args = ap.parse_args()
    command = " ".join(args.command[1:] if args.command[:1] == ["--"]
                       else args.command) or "uname -a"
    if args.extra and not args.extra.is_dir():
        ap.error(f"--extra {args.extra}: not a directory")
    if not 0 <= args.hvpipe <= 64:
        ap.error("--hvpipe takes 0 to 64 sources")
    return run(command, kernel=args.kernel, qemu=args.qemu, extra=args.extra,
               timeout=args.timeout, log=args.log, qemu_args=args.qemu_arg,
               machine_opts=args.machine_opts, quiet=args.quiet,
               hvpipe=args.hvpipe, base=args.base)
