"""Shared by the lab's Python commands: children that never outlive the
command that started them, interruptions and errors that print one line,
the build steps a command runs first (step(), build_static()).

A command's main goes through main(): SIGTERM and SIGHUP then stop it the
way Ctrl-C does (KeyboardInterrupt, so every finally block runs and kills
what it started), and any of the three prints "<prog>: interrupted (SIG...)"
instead of a traceback.  Children started with run() get a process group of
their own, stopped as a whole (SIGTERM, then SIGKILL) when the command is
interrupted, and PR_SET_PDEATHSIG, so that they die even when the command
is killed outright.  QEMU is started with die_with_parent() (lab/hmc).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, NoReturn

sys.path.insert(0, str(Path(__file__).resolve().parent / "hmc"))
from hmc import die_with_parent  # noqa: E402

__all__ = ["CACHE", "LAB", "Parser", "base_of", "build_static",
           "die_with_parent", "fail", "gcov_report", "guest_arguments",
           "kernel_bases", "last_line", "main", "run", "step", "stop_group"]

LAB = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("PAPR_HVPIPE_CACHE", "/var/cache/papr-hvpipe"))


def kernel_bases() -> dict[str, str]:
    """The kernel bases by role, with their series: {"mainline": "7.3",
    "lts": "6.12"}, as lab/lib.sh names them."""
    out = subprocess.run(["sh", "-c", '. "$0"; echo "$MAINLINE_SERIES '
                          '$LTS_SERIES"', str(LAB / "lib.sh")],
                         stdout=subprocess.PIPE, text=True, check=True)
    mainline, lts = out.stdout.split()
    return {"mainline": mainline, "lts": lts}


def base_of(kbuild: Path) -> str:
    """The base (mainline or lts) a guest build directory was built from."""
    try:
        return (kbuild / ".lab-base").read_text().strip()
    except OSError:
        sys.exit(f"{kbuild}: not a guest build of lab/build-guest "
                 "(no .lab-base)")


def stop_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Stop the process group led by proc: SIGTERM, SIGKILL after grace."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(grace)
            break
        except subprocess.TimeoutExpired:
            continue
    if proc.poll() is None:
        proc.wait()


# What run() is waiting for, in every thread, and whether stop_all() came.
_running: set[subprocess.Popen] = set()
_running_lock = threading.Lock()
_stopping = False


def run(cmd: list[str] | str, **kw) -> subprocess.CompletedProcess:
    """subprocess.run() whose child, and everything the child starts,
    stops with this command (see the module doc).  Takes run()'s input,
    stdout, stderr, cwd, env, text, errors and shell."""
    inp = kw.pop("input", None)
    if inp is not None:
        kw["stdin"] = subprocess.PIPE
    with subprocess.Popen(cmd, process_group=0,
                          preexec_fn=die_with_parent(signal.SIGTERM),
                          **kw) as proc:
        try:
            with _running_lock:
                _running.add(proc)
                stopping = _stopping
            if stopping:
                stop_group(proc)
            out, err = proc.communicate(inp)
        except BaseException:
            stop_group(proc)
            raise
        finally:
            with _running_lock:
                _running.discard(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def stop_all() -> None:
    """Stop what run() started in other threads and still waits for (an
    interruption reaches the main thread only), and from now on whatever
    they start: a thread may have started its command and not yet listed
    it."""
    global _stopping
    with _running_lock:
        _stopping = True
        procs = list(_running)
    for proc in procs:
        stop_group(proc)


def last_line(prog: str, cmd: list[str]) -> str:
    """Run a lab script that hands a path back to its caller, the last line
    it prints (its messages go to stderr, which stays the terminal's); exit
    naming the script if it fails."""
    p = run(cmd, stdout=subprocess.PIPE, text=True)
    lines = p.stdout.strip().splitlines()
    if p.returncode or not lines:
        sys.exit(f"{prog}: {cmd[0]} failed (exit status {p.returncode}; "
                 "its message is above)")
    return lines[-1]


def fail(prog: str, message: str, code: int = 1) -> NoReturn:
    """Exit with code after one line: "<prog>: error: <message>"."""
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def guest_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of a command that boots the lab guest (lab/run-guest,
    lab/selftests): which kernel and QEMU, built if not given."""
    ap.add_argument("--kernel", type=Path, help="guest kernel build "
                    "directory (default: lab/build-guest)")
    ap.add_argument("--base", default="mainline",
                    help="kernel base to build without --kernel: mainline "
                    "(default) or lts, or their series (lab/lib.sh)")
    ap.add_argument("--qemu", type=Path,
                    help="qemu-system-ppc64 (default: lab/build-qemu)")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line as fail() prints
    them, with exit status 2: "<prog>: error: <message> (see --help)"."""

    def error(self, message: str) -> NoReturn:
        fail(self.prog, f"{message} (see --help)", 2)


def step(prog: str, name: str, cmd: list[str], out=sys.stdout) -> str:
    """One build step of a lab command: run cmd with its output in
    CACHE/<prog>-<name>.log, print a line with its time to out, return the
    last line it printed; exit with the log's path if it failed."""
    log = CACHE / f"{prog}-{name}.log"
    t0 = time.monotonic()
    try:
        with open(log, "w") as f:
            p = run(cmd, stdout=subprocess.PIPE, stderr=f, text=True)
            f.write(p.stdout)
    except OSError as e:
        sys.exit(f"{prog}: {name}: {e}")
    if p.returncode:
        sys.exit(f"{prog}: {name} failed, see {log}")
    print(f"[{time.monotonic() - t0:5.0f}s] {name}", file=out, flush=True)
    lines = p.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def build_static(prog: str, name: str, kbuild: Path, source: str | Path,
                 binary: Path, out=sys.stdout) -> None:
    """Cross-compile one static guest program against kbuild's uapi
    headers, in the series tree (a step of lab command prog)."""
    step(prog, name, [str(LAB / "in-tree"), base_of(kbuild),
                      "powerpc64le-linux-gnu-gcc", "-static", "-O2", "-Wall",
                      "-isystem", str(kbuild / "usr/include"), str(source),
                      "-o", str(binary)], out)


def _interrupt() -> NoReturn:
    raise KeyboardInterrupt


def main(prog: str, fn: Callable[[], int | None]) -> NoReturn:
    """Run a command's main function and exit with its status; an
    interruption (SIGINT, SIGTERM, SIGHUP) prints one line and exits with
    128 + the signal's number."""
    caught = [signal.SIGINT]

    def stop(signum: int, frame) -> None:
        caught[0] = signal.Signals(signum)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise KeyboardInterrupt from None
        # Raised here, the interruption could land inside a task's step,
        # which would keep it as that task's result ("Task exception was
        # never retrieved") instead of stopping the loop.  Raised from a
        # callback of its own, it leaves run_until_complete(), and
        # asyncio.run() cancels every task (their finally blocks run)
        # before passing it on.
        loop.call_soon_threadsafe(_interrupt)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    try:
        status = fn()
    except KeyboardInterrupt:
        # Cleaning up is done; a second signal must not print a traceback.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        print(f"{prog}: interrupted ({caught[0].name})", file=sys.stderr,
              flush=True)
        sys.exit(128 + caught[0])
    sys.exit(status or 0)


def gcov_report(gcov: str, gcno: Path, source: str,
                cwd: Path | None = None) -> tuple[bool, list[str]]:
    """Line and branch coverage of one source file from gcno and the gcda
    beside it, by gcov (the compiler's own: gcov for the host's objects,
    powerpc64le-linux-gnu-gcov for the guest's), run in cwd (where the
    source paths the compiler recorded start; gcno's directory by default),
    writing no file.  Returns whether gcov gave figures, and the lines to
    print: "SOURCE: NN.N% lines, NN.N% branches" (branches taken at least
    once), then the uncovered lines."""
    where = cwd or gcno.parent
    p = subprocess.run([gcov, "-n", "-b", str(gcno)], cwd=where, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    part = next((x for x in p.stdout.split("File '")
                 if x.split("'")[0].endswith("/" + source)), "")
    lines = re.search(r"Lines executed:([\d.]+)% of (\d+)", part)
    taken = re.search(r"Taken at least once:([\d.]+)% of (\d+)", part)
    if not (lines and taken):
        return False, [f"{source}: gcov gave no figures: "
                       + p.stdout.strip()[-300:]]
    p = subprocess.run([gcov, "-t", str(gcno)], cwd=where, text=True,
                       errors="replace", stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL)
    missed, ours = [], False
    for row in p.stdout.splitlines():
        count, num, text = (row.split(":", 2) + ["", ""])[:3]
        if num.strip() == "0" and text.startswith("Source:"):
            ours = text.endswith("/" + source)
        elif ours and count.strip() in ("#####", "====="):
            missed.append(f"  {num.strip():>5}: {text.rstrip()}")
    return True, [f"{source}: {float(lines.group(1)):.1f}% lines (of "
                  f"{lines.group(2)}), {float(taken.group(1)):.1f}% branches "
                  f"(of {taken.group(2)}, taken at least once)",
                  f"{source}: {len(missed)} lines not run:", *missed]
