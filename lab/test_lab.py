"""Tests of how the lab judges results: what lab/selftests and lab/test
count as passed, failed or skipped, and what they take for a kernel
report.  A mistake there hides failures, so it is tested like the rest.

Run from the repo root:  python3 -m unittest lab/test_lab.py -v
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import importlib.machinery
import importlib.util
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
import unittest
from pathlib import Path

LAB = Path(__file__).resolve().parent


def load(name: str):
    """A lab command (a Python file without .py) as a module."""
    loader = importlib.machinery.SourceFileLoader(f"lab_{name}",
                                                  str(LAB / name))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = mod
    loader.exec_module(mod)
    return mod


selftests = load("selftests")
labtest = load("test")
import vm  # noqa: E402  (lab/test put lab/ on the path)

# lab/selftests' output as run_kselftest.sh prints it (abridged).
TAP = """\
TAP version 13
1..1
# timeout set to 300
# selftests: powerpc/papr_hvpipe: papr_hvpipe
# TAP version 13
# 1..4
# # Starting 4 tests from 2 test cases.
# #  RUN           hvpipe.poll_idle ...
# #            OK  hvpipe.poll_idle
# ok 1 hvpipe.poll_idle
# #  RUN           hvpipe.poll_in_out ...
# # papr_hvpipe.c:990:poll_in_out:Expected 4 (4) == hv_poll(fd, 0) (5)
# #      SKIP      no lab control channel org.papr-hvpipe.lab
# #            OK  hvpipe.poll_in_out
# ok 2 hvpipe.poll_in_out # SKIP no lab control channel org.papr-hvpipe.lab
# #  RUN           hvpipe.reconnect ...
# #      SKIP      no lab control channel org.papr-hvpipe.lab
# #            OK  hvpipe.reconnect
# ok 3 hvpipe.reconnect # SKIP no lab control channel org.papr-hvpipe.lab
# #  RUN           hvpipe.read_nonblock ...
# # papr_hvpipe.c:950:read_nonblock:Expected -11 (-11) == hv_read() (48)
# #          FAIL  hvpipe.read_nonblock
# not ok 4 hvpipe.read_nonblock
# # FAILED: 1 / 4 tests passed.
not ok 1 selftests: powerpc/papr_hvpipe: papr_hvpipe # exit=1
TAP version 13
1..1
# timeout set to 45
# selftests: powerpc/papr_vpd: papr_vpd
# test: papr_vpd_open_close
# success: papr_vpd_open_close
# test: papr_vpd_close_handle_without_reading
# skip: papr_vpd_close_handle_without_reading
ok 1 selftests: powerpc/papr_vpd: papr_vpd
"""


class SelftestCases(unittest.TestCase):
    def test_each_case_with_its_program(self) -> None:
        self.assertEqual(selftests.cases(TAP), [
            ("papr_hvpipe", "hvpipe.poll_idle", True),
            ("papr_hvpipe", "hvpipe.poll_in_out", False),
            ("papr_hvpipe", "hvpipe.reconnect", None),
            ("papr_hvpipe", "hvpipe.read_nonblock", False),
            ("papr_vpd", "papr_vpd_open_close", True),
            ("papr_vpd", "papr_vpd_close_handle_without_reading", None),
        ])

    def test_a_failed_expectation_then_a_skip_is_a_failure(self) -> None:
        found = dict((c, ok) for _, c, ok in selftests.cases(TAP))
        self.assertIs(found["hvpipe.poll_in_out"], False)

    def test_a_program_that_fails_without_a_case(self) -> None:
        tap = ("# selftests: powerpc/papr_hvpipe: papr_hvpipe\n"
               "not ok 1 selftests: powerpc/papr_hvpipe: papr_hvpipe "
               "# TIMEOUT 300 seconds\n")
        self.assertEqual(selftests.cases(tap), [
            ("papr_hvpipe", "papr_hvpipe TIMEOUT 300 seconds", False)])


class Counted:
    """Just what judge_selftests() and kernel_reports() use of a Run."""

    def __init__(self) -> None:
        self.cases: list[tuple[str, bool | None, str]] = []

    def case(self, name: str, ok: bool | None, detail: str = "") -> None:
        self.cases.append((name, ok, detail))

    def failed(self) -> list[str]:
        return [n for n, ok, _ in self.cases if ok is False]


class JudgeSelftests(unittest.TestCase):
    FOUND = [("papr_hvpipe", "hvpipe.poll_idle", True),
             ("papr_hvpipe", "hvpipe.reconnect", None),
             ("papr_hvpipe", "hvpipe.counters_listed", None),
             ("papr_vpd", "papr_vpd_close_handle_without_reading", None)]

    def test_a_papr_hvpipe_skip_fails_the_hvpipe_run(self) -> None:
        run = Counted()
        labtest.judge_selftests(run, self.FOUND, False,
                                {"hvpipe.counters_listed"})
        self.assertEqual(run.failed(), ["hvpipe.reconnect"])
        self.assertEqual(sum(ok is None for _, ok, _ in run.cases), 2)

    def test_the_stock_run_must_skip(self) -> None:
        run = Counted()
        labtest.judge_selftests(run, self.FOUND, True, set())
        self.assertEqual(run.failed(),
                         ["stock pseries: papr_hvpipe tests all skip"])

    def test_the_allow_list_file(self) -> None:
        self.assertEqual(labtest.allowed_skips(LAB / "selftest-skips"),
                         set())
        with tempfile.NamedTemporaryFile("w") as f:
            f.write("# comment\nhvpipe.reconnect | why\n\n")
            f.flush()
            self.assertEqual(labtest.allowed_skips(Path(f.name)),
                             {"hvpipe.reconnect"})
            f.write("hvpipe.poll_idle\n")
            f.flush()
            with self.assertRaises(labtest.StageError):
                labtest.allowed_skips(Path(f.name))


# kunit.py's raw kernel log (build_dir/test.log): the report comes from a
# work item, between two tests, where kunit.py's parser shows nothing.
KUNIT_LOG = """\
rcu: 	RCU lockdep checking is enabled.
KTAP version 1
1..1
    KTAP version 1
    # Subtest: papr_hvpipe
    ok 1 hvpipe_test_abi
------------[ cut here ]------------
WARNING: CPU: 1 PID: 31 at arch/powerpc/platforms/pseries/papr-hvpipe.c:700 hvpipe_rx_work+0x40/0x200
CPU: 1 UID: 0 PID: 31 Comm: kworker/1:1 Tainted: G                 N 6.12.117 #1
Workqueue: events hvpipe_rx_work
---[ end trace 0000000000000000 ]---
    ok 2 hvpipe_test_send
BUG: sleeping function called from invalid context at mm/slab.h:1
ok 1 papr_hvpipe
"""


class KernelReports(unittest.TestCase):
    def test_reports_outside_any_test_fail_the_stage(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            log = Path(d) / "test.log"
            log.write_text(KUNIT_LOG)
            run = Counted()
            labtest.kernel_reports(run, log, time.time() - 60)
        self.assertEqual(len(run.failed()), 2)
        self.assertIn("hvpipe_rx_work", run.cases[0][2])
        self.assertIn("sleeping function", run.cases[1][2])

    def test_a_clean_log_counts_nothing(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            log = Path(d) / "test.log"
            log.write_text("rcu: RCU lockdep checking is enabled.\n"
                           "Tainted: [N]=TEST\nok 1 papr_hvpipe\n")
            run = Counted()
            labtest.kernel_reports(run, log, time.time() - 60)
        self.assertEqual(run.cases, [])

    def test_a_log_from_an_earlier_run_fails(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            log = Path(d) / "test.log"
            log.write_text("ok 1 papr_hvpipe\n")
            os.utime(log, (0, 0))
            run = Counted()
            labtest.kernel_reports(run, log, time.time() - 60)
            self.assertEqual(len(run.failed()), 1)
            run = Counted()
            labtest.kernel_reports(run, Path(d) / "none.log", 0)
            self.assertEqual(len(run.failed()), 1)


REPO = LAB.parent
T = "/var/cache/papr-hvpipe/trees/linux-7.3.4-1_bpo13_1"
HTMLDOCS = f"""\
{T}/Documentation/arch/powerpc/ultravisor.rst:12: WARNING: duplicate label
{T}/Documentation/arch/powerpc/papr_hvpipe.rst:60: WARNING: Inline literal \
start-string without end-string.
./arch/powerpc/include/uapi/asm/papr-hvpipe.h:44: warning: Excess function \
parameter 'x'
{T}/Documentation/userspace-api/ioctl/ioctl-number.rst:376: ERROR: Malformed \
table.
{T}/Documentation/userspace-api/ioctl/ioctl-number.rst:32: WARNING: unknown \
document: '/process/submitting-patches'
reading sources... [100%] arch/powerpc/papr_hvpipe
"""


class Documentation(unittest.TestCase):
    def test_warnings_from_our_files_only(self) -> None:
        found = labtest.doc_findings(HTMLDOCS, {376})
        self.assertEqual(len(found), 3)
        self.assertNotIn("ultravisor", " ".join(found))
        self.assertNotIn("rst:32:", " ".join(found))

    def test_the_ioctl_errnos_agree(self) -> None:
        header = (REPO / labtest.UAPI).read_text()
        rst = (REPO / labtest.DOC).read_text()
        in_header, in_rst = labtest.ioctl_errnos(header, rst)
        self.assertIn("ENOTTY", in_header)
        self.assertEqual(in_header, in_rst)
        # One errno fewer on either side is seen.
        self.assertNotEqual(labtest.ioctl_errnos(
            header.replace("ENFILE", "E"), rst)[0], in_rst)
        self.assertNotEqual(labtest.ioctl_errnos(
            header, rst.replace("    ENFILE ", "    "))[1], in_header)


class StaleWork(unittest.TestCase):
    """vm.remove_stale_work(): what a run killed outright left goes at the
    next run; a running one's directory, and what is not a run's, stay."""
    HOLD = ("import fcntl, sys, time\n"
            "f = open(sys.argv[1], 'w')\n"
            "fcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n")

    def test_only_unheld_work_goes(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            dirs = {name: base / name for name in (
                "lab-guest-killed", "lab-guest-other-process",
                "lab-guest-this-process", "lab-guest-no-lock",
                "other-killed")}
            for d in dirs.values():
                d.mkdir()
                (d / "initramfs.cpio").write_text("x")
            for name in ("lab-guest-killed", "other-killed"):
                (dirs[name] / ".lock").touch()
            holder = subprocess.Popen(
                [sys.executable, "-c", self.HOLD,
                 str(dirs["lab-guest-other-process"] / ".lock")],
                stdout=subprocess.PIPE, text=True)
            try:
                self.assertEqual(holder.stdout.readline(), "held\n")
                with vm.hold_work(dirs["lab-guest-this-process"]):
                    self.assertEqual(vm.remove_stale_work(base),
                                     [dirs["lab-guest-killed"]])
                    self.assertEqual(vm.remove_stale_work(base), [])
            finally:
                holder.kill()
                holder.wait()
                holder.stdout.close()
            # Both holders gone: their directories are stale now.
            self.assertEqual(sorted(vm.remove_stale_work(base)),
                             [dirs["lab-guest-other-process"],
                              dirs["lab-guest-this-process"]])
            self.assertEqual(sorted(d.name for d in base.iterdir()),
                             ["lab-guest-no-lock", "other-killed"])


class BuildLock(unittest.TestCase):
    def test_a_waiter_names_the_holder(self) -> None:
        """lab/lib.sh's build_lock: a second command waits, and says for
        whom."""
        script = (f'. {LAB}/lib.sh; build_lock; echo locked; '
                  'exec sleep "$1"')
        with tempfile.TemporaryDirectory() as d:
            env = dict(os.environ, PAPR_HVPIPE_CACHE=d)
            env.pop("PAPR_HVPIPE_LOCKED", None)
            holder = subprocess.Popen(["sh", "-c", script, "holder", "30"],
                                      env=env, stdout=subprocess.PIPE,
                                      text=True)
            try:
                self.assertEqual(holder.stdout.readline(), "locked\n")
                waiter = subprocess.Popen(
                    ["sh", "-c", script, "waiter", "0"], env=env,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    text=True)
                time.sleep(0.5)
                self.assertIsNone(waiter.poll(), "did not wait")
                holder.kill()
                out, err = waiter.communicate(timeout=10)
            finally:
                holder.kill()
                holder.wait()
                holder.stdout.close()
        self.assertEqual(out, "locked\n")
        self.assertIn(f"waiter: waiting for the lab lock held by PID "
                      f"{holder.pid}", err)



class BuildGuestLayout(unittest.TestCase):
    def test_layout_of_needs_pristine_and_a_kernel_build(self) -> None:
        """lab/build-guest --layout-of refuses before it builds anything."""
        for args, why in (
                (["--layout-of", "/"], "--layout-of: only with --pristine"),
                (["--pristine", "--layout-of", "/nonexistent"],
                 "--layout-of /nonexistent: no System.map there"),
                (["--pristine", "--layout-of"],
                 "--layout-of needs a build directory")):
            r = subprocess.run([str(LAB / "build-guest"), *args],
                               capture_output=True, text=True, timeout=30)
            self.assertNotEqual(r.returncode, 0, args)
            self.assertIn(why, r.stderr, args)
PATCH = """\
From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001
From: papr-hvpipe developers <papr-hvpipe@example.org>
Date: Thu, 1 Jan 2026 00:00:00 +0000
Subject: [PATCH] Add a file and change one

Why.
---
diff --git a/a.c b/a.c
--- a/a.c
+++ b/a.c
@@ -1 +1 @@
-{old}
+{new}
"""


class SeriesTree(unittest.TestCase):
    """lab/series-tree on a throwaway "qemu" source: what it leaves in the
    tree, and that it skips the import only when nothing changed."""

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.root = Path(tmp.name)
        repo = self.root / "repo"
        (repo / "lab").mkdir(parents=True)
        for name in ("series-tree", "lib.sh"):
            (repo / "lab" / name).write_bytes((LAB / name).read_bytes())
        (repo / "lab" / "series-tree").chmod(0o755)
        self.qemu = repo / "qemu"
        (self.qemu / "patches").mkdir(parents=True)
        (self.qemu / "new.c").write_text("new 1\n")
        self.patch("one", "two")
        (self.qemu / "series").write_text("0001-a.patch new.c\n")
        cache = self.root / "cache"
        (cache / "src" / "qemu" / "source").mkdir(parents=True)
        (cache / "src" / "qemu" / "source" / "a.c").write_text("one\n")
        (cache / "src" / "qemu.version").write_text("1.0\n")
        self.env = dict(os.environ, PAPR_HVPIPE_CACHE=str(cache),
                        GIT_CONFIG_GLOBAL="/dev/null")
        self.env.pop("PAPR_HVPIPE_LOCKED", None)
        self.tree = cache / "trees" / "qemu-1.0"
        self.stamp = cache / "trees" / "qemu-1.0.synced"

    def patch(self, old: str, new: str) -> None:
        (self.qemu / "patches" / "0001-a.patch").write_text(
            PATCH.format(old=old, new=new))

    def sync(self) -> None:
        p = subprocess.run([str(self.root / "repo" / "lab" / "series-tree"),
                            "qemu"], env=self.env, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.strip(), str(self.tree))

    def content(self, name: str) -> str:
        return (self.tree / name).read_text()

    def test_unchanged_inputs_skip_the_import(self) -> None:
        self.sync()
        self.assertEqual((self.content("a.c"), self.content("new.c")),
                         ("two\n", "new 1\n"))
        before = self.stamp.stat().st_mtime_ns
        time.sleep(0.02)
        self.sync()
        self.assertEqual(self.stamp.stat().st_mtime_ns, before)

    def test_changed_inputs_are_taken(self) -> None:
        self.sync()
        self.patch("one", "three")
        self.sync()
        self.assertEqual(self.content("a.c"), "three\n")
        (self.qemu / "new.c").write_text("new 2\n")
        self.sync()
        self.assertEqual(self.content("new.c"), "new 2\n")

    def test_a_tree_changed_by_hand_is_synced_again(self) -> None:
        self.sync()
        (self.tree / "a.c").write_text("edited\n")
        (self.tree / "stray.o").write_text("")
        self.sync()
        self.assertEqual(self.content("a.c"), "two\n")
        self.assertFalse((self.tree / "stray.o").exists())


class SetupWithoutLts(unittest.TestCase):
    def test_says_where_debian_has_the_lts_source(self) -> None:
        """lab/setup on a Debian 12 whose apt sources lack the security
        suite: one line naming the package and the suite, before any
        install (apt, dpkg-query and apt-cache are stand-ins here)."""
        with tempfile.TemporaryDirectory() as d:
            bin_ = Path(d) / "bin"
            bin_.mkdir()
            fakes = {
                # Everything installed but linux-source-6.12.
                "dpkg-query": 'case "$*" in *linux-source-6.12*) exit 1;; '
                              'esac; echo "install ok installed 1"',
                "apt-cache": "exit 100",
                "apt-get": 'echo "apt-get $*" >> "$PAPR_HVPIPE_CACHE/apt"',
                "id": "echo 0",
            }
            for name, body in fakes.items():
                (bin_ / name).write_text(f"#!/bin/sh\n{body}\n")
                (bin_ / name).chmod(0o755)
            env = dict(os.environ, PAPR_HVPIPE_CACHE=d,
                       PATH=f"{bin_}:{os.environ['PATH']}")
            p = subprocess.run([str(LAB / "setup")], env=env, text=True,
                               capture_output=True, timeout=60)
            calls = (Path(d) / "apt").read_text().splitlines()
        self.assertEqual(p.returncode, 1, p.stderr)
        release = dict(ln.split("=", 1) for ln in
                       Path("/etc/os-release").read_text().splitlines()
                       if "=" in ln)["VERSION_CODENAME"].strip('"')
        self.assertIn(f"setup: no linux-source-6.12 in the system's apt "
                      f"sources: Debian {release} has it in "
                      f"{release}-security", p.stderr)
        self.assertEqual([c.split()[1] for c in calls], ["update"])


# A command whose event loop is always inside a task's step, where a signal
# handler that raises would hand the interruption to the task.
BUSY_LOOP = """\
import asyncio, sys
sys.path.insert(0, sys.argv[1])
import lib

async def spin():
    while True:
        sum(range(10 ** 6))
        await asyncio.sleep(0)

async def go():
    task = asyncio.create_task(spin())
    try:
        print("running", flush=True)
        await asyncio.wait([task], timeout=60)
    finally:
        print("cleaned up", flush=True)

lib.main("busy", lambda: asyncio.run(go()))
"""


class PluginKinds(unittest.TestCase):
    """What lab/bench --insns counts as isync, an atomic's load, a barrier
    and an MSR write: lab/plugins/insns.c's decoder (lab/plugins/kind.h),
    on the words the cross assembler makes of each mnemonic."""
    CASES = [("isync", "isync"), ("lwarx 3,0,4", "larx"),
             ("lwarx 3,0,4,1", "larx"), ("ldarx 3,0,4", "larx"),
             ("sync", "sync"), ("lwsync", "sync"), ("ptesync", "sync"),
             ("mtmsr 3", "mtmsr"), ("mtmsrd 3", "mtmsr"),
             ("mtmsrd 3,1", "mtmsr"),
             # Extended opcode 150 under primary 31, isync's under 19.
             ("stwcx. 3,0,4", "-"), ("stdcx. 3,0,4", "-"),
             ("mfmsr 3", "-"), ("eieio", "-"), ("rfid", "-"),
             ("addi 3,3,1", "-"), ("ld 3,8(4)", "-")]

    def test_each_kind(self) -> None:
        asm = "powerpc64le-linux-gnu-as"
        if not shutil.which(asm) or not shutil.which("gcc"):
            self.skipTest(f"no {asm} or gcc (lab/setup installs them)")
        with tempfile.TemporaryDirectory() as tmp:
            t = Path(tmp)
            (t / "k.s").write_text("".join(f"{m}\n" for m, _ in self.CASES))
            for cmd in (
                    [asm, "-mpower9", "-o", t / "k.o", t / "k.s"],
                    ["powerpc64le-linux-gnu-objcopy", "-O", "binary",
                     "-j", ".text", t / "k.o", t / "k.bin"],
                    ["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o",
                     t / "kind-test", LAB / "plugins/kind-test.c"]):
                subprocess.run(cmd, check=True)
            code = (t / "k.bin").read_bytes()
            self.assertEqual(len(code), 4 * len(self.CASES))
            words = [f"{int.from_bytes(code[i:i + 4], 'little'):08x}"
                     for i in range(0, len(code), 4)]
            out = subprocess.run([t / "kind-test", *words], check=True,
                                 stdout=subprocess.PIPE, text=True).stdout
        self.assertEqual(list(zip((m for m, _ in self.CASES),
                                  out.splitlines())), self.CASES)

    def test_a_bad_word_is_refused(self) -> None:
        if not shutil.which("gcc"):
            self.skipTest("no gcc (lab/setup installs it)")
        with tempfile.TemporaryDirectory() as tmp:
            prog = Path(tmp) / "kind-test"
            subprocess.run(["gcc", "-O2", "-o", prog,
                            LAB / "plugins/kind-test.c"], check=True)
            for bad in ("", "12x", "100000000"):
                p = subprocess.run([prog, bad], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
                self.assertEqual((p.returncode, p.stdout), (2, ""), bad)
                self.assertIn("not a 32-bit hex word", p.stderr)


class Interruptions(unittest.TestCase):
    def test_sigterm_in_a_task_stops_the_loop(self) -> None:
        """lib.main: SIGTERM to an asyncio command prints one line, runs
        the cleanup and leaves no task holding the interruption."""
        for _ in range(5):
            p = subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(LAB)],
                                 stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            self.assertEqual(p.stdout.readline(), "running\n")
            time.sleep(0.2)
            p.terminate()
            out, err = p.communicate(timeout=10)
            self.assertEqual((p.returncode, out, err),
                             (143, "cleaned up\n",
                              "busy: interrupted (SIGTERM)\n"))


# Two lab/test stages in run_lanes(), each running a shell marked $MARK-1
# and $MARK-2 for a minute, to be stopped by a signal to the command.
LANES = """\
import importlib.machinery, importlib.util, os, sys, tempfile
from pathlib import Path
loader = importlib.machinery.SourceFileLoader("labtest", sys.argv[1] + "/test")
spec = importlib.util.spec_from_loader(loader.name, loader)
labtest = sys.modules["labtest"] = importlib.util.module_from_spec(spec)
loader.exec_module(labtest)
lib = labtest.lib

def slow(run, mark):
    lib.run(["sh", "-c", "sleep 60", mark])

run = labtest.Run(Path(tempfile.mkdtemp()), None)
lib.main("lanes", lambda: labtest.run_lanes(
    run, [("soak 7.3", slow, os.environ["MARK"] + "-1"),
          ("soak 6.12", slow, os.environ["MARK"] + "-2")]))
"""


# A command started in another thread just after stop_all() (an interruption
# that came while that thread was starting it, before run() listed it).
LATE_START = """\
import subprocess, sys, threading
sys.path.insert(0, sys.argv[1])
import lib

lib.stop_all()
got = []
t = threading.Thread(target=lambda: got.append(
    lib.run(["sh", "-c", "sleep 60", sys.argv[2]],
            stdout=subprocess.DEVNULL).returncode), daemon=True)
t.start()
t.join(20)
print(got)
"""


def processes_with(mark: str) -> list[int]:
    """PIDs whose command line has mark."""
    found = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and mark.encode() in \
                    (d / "cmdline").read_bytes():
                found.append(int(d.name))
        except OSError:
            pass
    return found


class Lanes(unittest.TestCase):
    """lab/test's run_lanes(): the guest stages two at a time."""

    def test_two_at_once_each_counting_its_own(self) -> None:
        both = threading.Barrier(2, timeout=20)
        seen = {}

        def fn(run, name) -> None:
            both.wait()         # Fails (BrokenBarrierError) if one at a time.
            run.case(f"{name} case", True)
            run.env["MINE"] = name
            time.sleep(0.1)
            seen[name] = run.env["MINE"]

        with tempfile.TemporaryDirectory() as d:
            run = labtest.Run(Path(d), None)
            with contextlib.redirect_stdout(io.StringIO()) as out:
                labtest.run_lanes(run, [("soak 7.3", fn, "a"),
                                        ("soak 6.12", fn, "b"),
                                        ("selftests 7.3", fn, "c"),
                                        ("selftests 6.12", fn, "d")])
        self.assertEqual(seen, {"a": "a", "b": "b", "c": "c", "d": "d"})
        self.assertNotIn("MINE", run.env)
        # A helper thread of the main sequence (checkpatch's pool) has
        # the main thread's environment.
        got = []
        helper = threading.Thread(target=lambda: got.append(run.env))
        helper.start()
        helper.join()
        self.assertIs(got[0], run.env)
        cases = {s.name: (s.passed, s.failed) for s in run.stages}
        self.assertEqual(cases, dict.fromkeys(
            ["soak 7.3", "soak 6.12", "selftests 7.3", "selftests 6.12"],
            (1, 0)))
        self.assertEqual(len(out.getvalue().splitlines()), 4)

    def test_a_signal_stops_both_lanes(self) -> None:
        mark = f"lab-lanes-test-{os.getpid()}"
        marks = [f"{mark}-1", f"{mark}-2"]
        p = subprocess.Popen([sys.executable, "-c", LANES, str(LAB)],
                             env=dict(os.environ, MARK=mark),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        try:
            deadline = time.monotonic() + 20
            while not all(processes_with(m) for m in marks):
                if p.poll() is not None:
                    self.fail(f"exited {p.returncode}: {p.stderr.read()}")
                self.assertLess(time.monotonic(), deadline, "not started")
                time.sleep(0.1)
            p.terminate()
            out, err = p.communicate(timeout=30)
        finally:
            p.kill()
            p.wait()
            for m in marks:
                for pid in processes_with(m):
                    os.kill(pid, signal.SIGKILL)
        self.assertEqual((p.returncode, err.splitlines()[-1:]),
                         (143, ["lanes: interrupted (SIGTERM)"]))
        self.assertEqual([processes_with(m) for m in marks], [[], []])

    def test_a_command_started_after_stop_all_stops(self) -> None:
        """lib.stop_all() also stops what a lane starts after it: the lane
        may have been between starting its command and listing it."""
        mark = f"lab-late-start-test-{os.getpid()}"
        try:
            p = subprocess.run([sys.executable, "-c", LATE_START, str(LAB),
                                mark], stdout=subprocess.PIPE, text=True,
                               timeout=40)
        finally:
            for pid in processes_with(mark):
                os.kill(pid, signal.SIGKILL)
        self.assertEqual(p.stdout, f"[{-signal.SIGTERM}]\n")


# kunit.py --json (6.12's has no "misc"; a newer one counts parse errors).
KUNIT_JSON = {
    "name": "KUnit Test Group", "test_cases": [],
    "sub_groups": [
        {"name": "papr_hvpipe", "sub_groups": [], "test_cases": [
            {"name": "hvpipe_test_abi", "status": "PASS"},
            {"name": "hvpipe_test_poll", "status": "FAIL"},
            {"name": "hvpipe_test_measure", "status": "SKIP"},
            {"name": "hvpipe_test_rx", "status": "ERROR"}]},
        {"name": "param", "test_cases": [], "sub_groups": [
            {"name": "hvpipe_test_sizes", "sub_groups": [], "test_cases": [
                {"name": "64", "status": "PASS"},
                {"name": "4048", "status": "PASS"}]}]}]}


class KunitResults(unittest.TestCase):
    def test_counts_and_names(self) -> None:
        passed, failed, skipped, names = labtest.kunit_results(KUNIT_JSON)
        self.assertEqual((passed, failed, skipped), (3, 2, 1))
        self.assertEqual(names, ["papr_hvpipe.hvpipe_test_poll: FAIL",
                                 "papr_hvpipe.hvpipe_test_rx: ERROR"])

    def test_parse_errors_fail(self) -> None:
        group = dict(KUNIT_JSON, misc={"errors": 1})
        self.assertEqual(labtest.kunit_results(group)[1], 3)


class Unittests(unittest.TestCase):
    class Sample(unittest.TestCase):
        def test_pass(self) -> None:
            print("to the log, not the terminal")

        def test_fail(self) -> None:
            self.assertEqual(1, 2)

        def test_error(self) -> None:
            raise OSError("boom")

        @unittest.skip("not here")
        def test_skip(self) -> None:
            pass

    def test_both_suites_in_one_process(self) -> None:
        """lab/test discovers its own tests, then lab/hmc's: every test
        module loads, whatever was discovered before."""
        for top, pattern in ((LAB, "test_lab.py"), (LAB / "hmc", "test*.py"),
                             (LAB, "test_lab.py")):
            found = labtest.suite(top, pattern)
            names = str(found)
            self.assertNotIn("_FailedTest", names)
            self.assertGreater(found.countTestCases(), 10)

    def test_each_outcome_counts(self) -> None:
        """lab/test runs a suite in-process: each test one case."""
        with tempfile.TemporaryDirectory() as d:
            run = Counted()
            run.logdir, run.env = Path(d), {"PATH": os.environ["PATH"]}
            suite = unittest.defaultTestLoader.loadTestsFromTestCase(
                self.Sample)
            labtest.unittests(run, suite, "sample.log")
            log = (Path(d) / "sample.log").read_text()
        got = {n.rsplit(".", 1)[1]: ok for n, ok, _ in run.cases}
        self.assertEqual(got, {"test_pass": True, "test_fail": False,
                               "test_error": False, "test_skip": None})
        self.assertIn("to the log, not the terminal", log)


class Conductor(unittest.TestCase):
    def test_requests(self) -> None:
        """lab/conductor.py against a fake QEMU source: the requests of
        the guest's tests, and the frames they make."""
        sys.path.insert(0, str(LAB / "hmc"))
        import conductor
        import hmc
        from test_hmc import FakeQemu
        with tempfile.TemporaryDirectory() as d:
            fake = FakeQemu(f"{d}/hmc1.sock", after_hello=lambda send: send(
                hmc.OutPayload(b"up")))

            async def go() -> list[str]:
                c = conductor.Conductor(Path(d), 1, lambda s: None)
                await c.connect()
                try:
                    out = [await c.request(w.split()) for w in (
                        "HELLO", "SEND 0 6869", "WAIT 0 acked 1 2000",
                        "RECV 0x02000001 2000", "FAULT 0 rtas-receive:-2:3",
                        "SYNC 0", "STATS 0", "SENDPAT 0 4 2 2",
                        "WAIT 0 acked 3 2000")]
                    with self.assertRaises(ValueError):
                        await c.request(["FAULT", "0", "rtas-recv:-2:3"])
                finally:
                    await c.close()
                return out
            out = asyncio.run(go())
            fake.close()
        self.assertEqual(out[:6], ["OK 0x02000001", "OK", "OK 1", "OK 7570",
                                   "OK", "OK"])
        self.assertIn("tx=1 acked=1", out[6])
        self.assertIn("rx=1", out[6])
        self.assertEqual(out[7:], ["OK", "OK 3"])
        # SENDPAT's bytes, as the guest's lab_pattern() makes them:
        # (seed * 131 + i) % 251, seeds 2 and 3.
        self.assertEqual([f.msg for f in fake.got],
                         [hmc.Payload(b"hi"), hmc.FaultRtas(2, 3, -2),
                          hmc.Nop(), hmc.Payload(bytes([11, 12, 13, 14])),
                          hmc.Payload(bytes([142, 143, 144, 145]))])

    def test_a_subclass_set_while_reading_gets_the_next_frame(self) -> None:
        """lab/soak makes the conductor's sources its own class while their
        readers wait: the first frame after that is the subclass's too (it
        went to the old class's handler, and the first payload of each
        source lost its ACK in the soak's books)."""
        sys.path.insert(0, str(LAB / "hmc"))
        import conductor
        import hmc
        from test_hmc import FakeQemu

        class Noting(conductor.Hmc):
            def _frame(self, f: hmc.Frame) -> None:
                self.noted.append(f.msg)
                super()._frame(f)

        with tempfile.TemporaryDirectory() as d:
            fake = FakeQemu(f"{d}/hmc1.sock")

            async def go() -> list[hmc.Message]:
                c = conductor.Conductor(Path(d), 1, lambda s: None)
                await c.connect()
                try:
                    s = c.sources[0]
                    await asyncio.sleep(0.05)   # the reader waits
                    s.__class__ = Noting
                    s.noted = []
                    s.queue(b"hi")
                    await s.wait_for(lambda: s.counters["acked"] == 1, 5)
                    return s.noted
                finally:
                    await c.close()
            noted = asyncio.run(go())
            fake.close()
        self.assertEqual(noted, [hmc.Ack()])


class ConductorLoss(unittest.TestCase):
    def test_a_lost_connection_is_settled_before_any_reconnect(self) -> None:
        """QEMU hangs up; the HMC connects again (lab/soak's keeper polls
        for that) and hands over a payload while the old connection is
        still closing: the loss must not orphan the new connection's
        payload (it did, and the ACK that came for it was a stray)."""
        sys.path.insert(0, str(LAB / "hmc"))
        import conductor
        import hmc
        conns = []

        async def fake(r: asyncio.StreamReader,
                       w: asyncio.StreamWriter) -> None:
            conns.append(w)
            w.write(hmc.encode(hmc.Hello(hmc.HMC_TYPE + 1, 4048, True,
                                         False), 0))
            if len(conns) == 1:
                await asyncio.sleep(0.1)
                w.close()
                return
            dec = hmc.Decoder()
            while data := await r.read(65536):
                for f in dec.frames(data):
                    await asyncio.sleep(0.5)    # the partition is slow
                    w.write(hmc.encode(hmc.Ack(), f.tag))
            w.close()

        async def go() -> dict[str, int]:
            with tempfile.TemporaryDirectory() as d:
                server = await asyncio.start_unix_server(fake,
                                                         f"{d}/hmc1.sock")
                c = conductor.Conductor(Path(d), 1, lambda s: None)
                s = c.sources[0]
                await c.connect()
                first, close = s.conn, s.conn.close

                async def slow_close() -> None:   # wait_closed() may wait
                    await asyncio.sleep(0.3)
                    await close()
                first.close = slow_close
                try:
                    while s.connected:
                        await asyncio.sleep(0.001)
                    s.queue(b"new")
                    await s.connect(timeout=5)
                    await s.wait_for(lambda: s.counters["acked"] == 1, 2)
                    return s.stats()
                finally:
                    await c.close()
                    server.close()
        stats = asyncio.run(go())
        self.assertEqual((stats["acked"], stats["orphaned"]), (1, 0))


# lab/test imports test_hmc (through this file) before it builds QEMU, then
# names the QEMU in HVPIPE_QEMU for the hmc simulator stage.
LIVE_AFTER_IMPORT = """\
import os, sys, unittest
sys.path.insert(0, sys.argv[1])
import test_hmc
os.environ["HVPIPE_QEMU"] = sys.argv[2]
r = unittest.TextTestRunner(stream=open(os.devnull, "w")).run(
    unittest.defaultTestLoader.loadTestsFromTestCase(test_hmc.LiveTest))
print(r.testsRun, len(r.failures) + len(r.errors), len(r.skipped))
"""


class LiveTestsFindQemuWhenRun(unittest.TestCase):
    def test_a_qemu_named_after_the_import_must_run(self) -> None:
        """Named after the import, a QEMU that cannot run the live tests
        fails them; it used to be looked up at import and skip them (a
        fresh clone's CI skipped the three live tests)."""
        with tempfile.TemporaryDirectory() as d:
            env = dict(os.environ, PAPR_HVPIPE_CACHE=d)
            env.pop("HVPIPE_QEMU", None)
            out = subprocess.run(
                [sys.executable, "-c", LIVE_AFTER_IMPORT, str(LAB / "hmc"),
                 f"{d}/qemu-system-ppc64"], env=env, text=True,
                stdout=subprocess.PIPE, check=True).stdout
        self.assertEqual(out.split(), ["3", "3", "0"])


class SoakKeeper(unittest.TestCase):
    """lab/soak's keeper: a payload that waits behind one the driver gave
    up (receive -5) is refused BUSY and posted again under new tags, which
    is no progress: the stall is seen, and announced once for the pipe."""

    def test_busy_retries_are_a_stall(self) -> None:
        soak = load("soak")

        class Source:
            def __init__(self, srcid: int) -> None:
                self.srcid, self.connected, self.inflight = srcid, True, 1
                self.counters = {"acked": 0, "dropped": 0, "refused": 0}

        async def go() -> tuple[list[int], int, int]:
            args = types.SimpleNamespace(seed=1, stall=0.5)
            k = soak.Soak(args)
            k.manual = set()
            k.injected["recv"][-5] = 1
            announced: list[int] = []

            async def control(s, msg) -> None:
                announced.append(msg.srcid)
            k.control = control
            srcs = [Source(0x02000001), Source(0x02000002)]
            keeper = asyncio.create_task(k.keep(srcs))
            for _ in range(8):          # 1.6 s of BUSY retries
                await asyncio.sleep(0.2)
                for s in srcs:
                    s.inflight += 1
            keeper.cancel()
            return announced, k.reannounced, k.stalls
        announced, again, stalls = asyncio.run(go())
        # Both stalled at 0.6 s: one announcement, both clocks reset; the
        # next comes 0.6 s later at the earliest (1.2 s).
        self.assertIn(len(announced), (1, 2), announced)
        self.assertEqual((again, stalls), (1, len(announced) - 1))


class SoakFates(unittest.TestCase):
    """lab/soak's books of the payloads its HMCs hand to QEMU, against a
    fake QEMU source that ACKs the first payload and then, for the second,
    either says nothing (the connection stays up) or hangs up."""

    def run_source(self, hang_up: bool):
        sys.path.insert(0, str(LAB / "hmc"))
        import conductor
        import hmc
        soak = load("soak")

        async def fake(r: asyncio.StreamReader,
                       w: asyncio.StreamWriter) -> None:
            w.write(hmc.encode(hmc.Hello(hmc.HMC_TYPE + 1, 4048, True,
                                         False), 0))
            dec, payloads = hmc.Decoder(), 0
            while data := await r.read(65536):
                for f in dec.frames(data):
                    if isinstance(f.msg, hmc.Payload):
                        payloads += 1
                        if payloads == 1:
                            w.write(hmc.encode(hmc.Ack(), f.tag))
                        elif hang_up:
                            w.close()
                            return
                    else:
                        w.write(hmc.encode(hmc.Ok(), f.tag))
            w.close()

        async def go():
            with tempfile.TemporaryDirectory() as d:
                server = await asyncio.start_unix_server(fake,
                                                         f"{d}/hmc1.sock")
                c = conductor.Conductor(Path(d), 1, lambda s: None)
                await c.connect()
                s = c.sources[0]
                soak.SoakSource.adopt(s)
                try:
                    s.queue(soak.build(s.srcid, 0))
                    s.queue(soak.build(s.srcid, 1))
                    await s.wait_for(lambda: s.counters["tx"] == 2, 5)
                    if hang_up:
                        await s.wait_for(lambda: not s.connected, 5)
                    else:
                        # As the soak ends: a NOP answered, the payload
                        # still unanswered on a connection that is up.
                        self.assertEqual(await s.control(hmc.Nop()),
                                         (True, ""))
                        s.tally.closed = True
                finally:
                    await c.close()
                    server.close()
                return soak, s
        return asyncio.run(go())

    def test_a_payload_unanswered_on_a_live_connection_fails(self) -> None:
        soak, s = self.run_source(hang_up=False)
        ok, text = soak.fate_check([s])
        self.assertFalse(ok)
        self.assertIn("acked 1,", text)
        self.assertIn("unexplained 1: 0x02000001 #1 (tag ", text)
        # The partition received both: one more than acked, unexplained.
        ok, text = soak.churn_check([s], {s.srcid: {"read": "2"}},
                                    {"dropped_closed": 0,
                                     "dropped_no_handle": 0})
        self.assertFalse(ok, text)

    def test_a_payload_orphaned_by_a_drop_is_either_way(self) -> None:
        soak, s = self.run_source(hang_up=True)
        ok, text = soak.fate_check([s])
        self.assertTrue(ok, text)
        self.assertIn("acked 1,", text)
        self.assertIn("orphaned 1, unexplained 0", text)
        zero = {"dropped_closed": 0, "dropped_no_handle": 0}
        for read in ("1", "2"):
            ok, text = soak.churn_check([s], {s.srcid: {"read": read}}, zero)
            self.assertTrue(ok, text)
        self.assertIn("(+ up to 1 orphaned with their connection)", text)
        # Beyond the orphan, or short of the ACKs: a loss or a duplicate.
        for read in ("0", "3"):
            ok, text = soak.churn_check([s], {s.srcid: {"read": read}}, zero)
            self.assertFalse(ok, text)


# The reference run: one boot of every case but the crashing one, then a boot
# of the crashing case alone (its console ends in the panic).
REFERENCE_TAP = """\
# selftests: powerpc/papr_hvpipe: papr_hvpipe
# ok 1 hvpipe.poll_idle
# not ok 2 hvpipe.poll_in_out
# ok 3 hvpipe.counters_listed # SKIP no /sys/kernel/debug/papr-hvpipe/stats
# not ok 4 hvpipe.read_nonblock
# not ok 5 hvpipe.epoll_idle
not ok 1 selftests: powerpc/papr_hvpipe: papr_hvpipe # exit=1
"""
CRASH_TAP = """\
# selftests: powerpc/papr_hvpipe: papr_hvpipe
# #  RUN           malformed.no_pe.event ...
"""
CRASH_CONSOLE = """\
LAB-BEGIN
# #  RUN           malformed.no_pe.event ...
BUG: Kernel NULL pointer dereference on read at 0x00000008
Oops: Kernel access of bad area, sig: 11 [#1]
Kernel panic - not syncing: Fatal exception in interrupt
"""
EXPECTED = """\
# comment
hvpipe.poll_in_out | fail | poll() never reports POLLOUT
hvpipe.counters_listed | skip | our debugfs counters
hvpipe.poll_idle | fail | fixed by a stable update, say
hvpipe.sources_do_not_cross | flaky | one payload for all sources
hvpipe.threads_concurrent_writers | flaky | one payload for all sources
malformed.no_pe.event | crash BUG: Kernel NULL pointer | no "PE" check
kernel report | WARNING: CPU | the receive lock never taken

"""


class Reference(unittest.TestCase):
    def expected(self, text: str = EXPECTED):
        with tempfile.NamedTemporaryFile("w") as f:
            f.write(text)
            f.flush()
            return labtest.upstream_expected(Path(f.name))

    def judge(self, got, crashes, reports, known):
        run = Counted()
        cases, reports_listed = self.expected()
        notices = labtest.judge_reference(run, got, crashes, reports, cases,
                                          reports_listed, known, set())
        return run, notices

    def test_the_list_file(self) -> None:
        cases, reports = self.expected()
        self.assertEqual(cases["malformed.no_pe.event"],
                         labtest.Expected("crash", "BUG: Kernel NULL pointer",
                                          'no "PE" check'))
        self.assertEqual(cases["hvpipe.counters_listed"].outcome, "skip")
        self.assertEqual(reports, {"WARNING: CPU":
                                   "the receive lock never taken"})
        # The defect is the rest of the line.
        cases, _ = self.expected("hvpipe.x | fail | POLLIN | POLLOUT\n")
        self.assertEqual(cases["hvpipe.x"].defect, "POLLIN | POLLOUT")
        for bad in ("hvpipe.x | fails | why\n", "hvpipe.x | crash | why\n",
                    "hvpipe.x | fail TEXT | why\n", "hvpipe.x | fail\n",
                    "hvpipe.x | fail | \n", " | fail | why\n",
                    "hvpipe.x | fail | a\nhvpipe.x | skip | b\n",
                    "kernel report | WARNING | a\n"
                    "kernel report | WARNING | b\n"):
            with self.assertRaises(labtest.StageError, msg=bad):
                self.expected(bad)

    def test_the_checked_in_list_names_cases_of_the_source(self) -> None:
        cases, _ = labtest.upstream_expected(labtest.UPSTREAM_EXPECTED)
        self.assertLessEqual(set(cases),
                             labtest.source_cases(labtest.SELFTEST_SOURCE))

    def test_the_cases_of_a_source(self) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".c") as f:
            f.write("FIXTURE(a) {};\nFIXTURE_VARIANT_ADD(a, v1) { 1 };\n"
                    "FIXTURE_VARIANT_ADD(a, v2) { 2 };\n"
                    "TEST_F(a, t1)\n{\n}\nTEST_F_TIMEOUT(a, t2, 60)\n"
                    "TEST_F(b, t3)\nTEST(t4)\n")
            f.flush()
            self.assertEqual(labtest.source_cases(Path(f.name)),
                             {"a.v1.t1", "a.v2.t1", "a.v1.t2", "a.v2.t2",
                              "b.t3", "global.t4"})
        self.assertIn("malformed.no_pe.event",
                      labtest.source_cases(labtest.SELFTEST_SOURCE))

    def test_the_crashing_cases_are_left_out_of_the_main_boot(self) -> None:
        self.assertEqual(labtest.excluding(["malformed.no_pe.event",
                                            "hvpipe.poll_idle"]),
                         ["-V", "no_pe", "-T", "poll_idle"])

    def test_a_crash_in_a_boot_of_its_own(self) -> None:
        got, crashes, reports = labtest.boot_outcomes(
            CRASH_TAP, CRASH_CONSOLE, "malformed.no_pe.event")
        self.assertEqual(got, {"malformed.no_pe.event": "crash"})
        self.assertIn("NULL pointer", crashes["malformed.no_pe.event"])
        self.assertEqual(reports, [])
        # A boot that finished has no crash: its reports stay reports.
        got, crashes, reports = labtest.boot_outcomes(
            CRASH_TAP, CRASH_CONSOLE + "LAB-EXIT 0\n",
            "malformed.no_pe.event")
        self.assertEqual((got, crashes, len(reports)), ({}, {}, 3))

    def test_judged_against_the_list(self) -> None:
        got, _, _ = labtest.boot_outcomes(REFERENCE_TAP, "LAB-EXIT 1\n")
        got["malformed.no_pe.event"] = "crash"
        # Flaky: either way, no notice.
        got["hvpipe.sources_do_not_cross"] = "pass"
        got["hvpipe.threads_concurrent_writers"] = "fail"
        known = set(got) | {"hvpipe.reconnect"}
        run, notices = self.judge(
            got, {"malformed.no_pe.event": "BUG: Kernel NULL pointer "
                  "dereference on read at 0x00000008"},
            ["WARNING: CPU: 0 PID: 1 at rtas.c:711", "BUG: sleeping"], known)
        self.assertEqual(run.failed(), ["hvpipe.epoll_idle",
                                        "hvpipe.read_nonblock",
                                        "hvpipe.reconnect", "kernel report"])
        verdict = {n: (ok, d) for n, ok, d in run.cases}
        self.assertEqual(verdict["hvpipe.reconnect"], (False, "did not run"))
        self.assertIn("not in", verdict["hvpipe.read_nonblock"][1])
        self.assertEqual(verdict["kernel report"], (False, "BUG: sleeping"))
        self.assertIs(verdict["hvpipe.poll_in_out"][0], True)
        self.assertIs(verdict["hvpipe.counters_listed"][0], None)
        self.assertIs(verdict["malformed.no_pe.event"][0], True)
        self.assertIs(verdict["hvpipe.sources_do_not_cross"][0], True)
        self.assertIs(verdict["hvpipe.threads_concurrent_writers"][0], True)
        # The listed case that passes is a notice, not a failure.
        self.assertIs(verdict["hvpipe.poll_idle"][0], True)
        self.assertEqual(len(notices), 1)
        self.assertIn("hvpipe.poll_idle passes", notices[0])

    def test_other_outcomes_than_listed_fail(self) -> None:
        known = {"hvpipe.poll_in_out", "hvpipe.counters_listed",
                 "hvpipe.poll_idle", "malformed.no_pe.event",
                 "hvpipe.sources_do_not_cross"}
        got = {"hvpipe.poll_in_out": "skip", "hvpipe.counters_listed": "fail",
               "hvpipe.poll_idle": "crash", "malformed.no_pe.event": "crash",
               "hvpipe.sources_do_not_cross": "skip"}
        run, notices = self.judge(got, {"malformed.no_pe.event":
                                        "Oops: Kernel access of bad area"},
                                  [], known)
        self.assertEqual(sorted(run.failed()), sorted(known))
        verdict = {n: d for n, _, d in run.cases}
        self.assertEqual(verdict["malformed.no_pe.event"],
                         "crashed the kernel: Oops: Kernel access of bad area"
                         " (listed: crash BUG: Kernel NULL pointer)")
        self.assertEqual(verdict["hvpipe.poll_idle"],
                         "crashed the kernel:  (listed: fail)")
        self.assertEqual(verdict["hvpipe.poll_in_out"],
                         "skipped, listed as fail")
        # The listed report was not seen: a notice.
        self.assertEqual(len(notices), 1)
        self.assertIn("WARNING: CPU", notices[0])


# A KCSAN console (abridged): one race outside the driver, one in it.
KCSAN_LOG = """\
[    5.1] ==================================================================
[    5.1] BUG: KCSAN: data-race in tick_nohz_idle_stop_tick / tick_sched_timer
[    5.1] write to 0xc000000001234 of 8 bytes by interrupt on cpu 1:
[    5.1]  tick_sched_timer+0x58/0x190
[    5.1] ==================================================================
[    9.7] ==================================================================
[    9.7] BUG: KCSAN: data-race in hvpipe_rx_one / papr_hvpipe_handle_poll
[    9.7] read to 0xc000000005678 of 4 bytes by task 80 on cpu 0:
[    9.7]  papr_hvpipe_handle_poll+0x40/0x120
[    9.7] ==================================================================
[   12.0] BUG: KCSAN: data-race in _raw_spin_lock / _raw_spin_lock
[   12.0] write to 0xc00000001ffe5cf2 of 2 bytes by interrupt on cpu 1:
[   12.0]  _raw_spin_lock+0xb4/0xf0
[   12.0]  hvpipe_rx_one+0xa8/0x1cf4
[   12.0] ==================================================================
"""


class KcsanReports(unittest.TestCase):
    def test_a_race_naming_the_driver_counts_the_others_do_not(self) -> None:
        # The third is a race in the lock's own code, which the driver
        # called: not the driver's.
        self.assertEqual([ours for _, ours in vm.kcsan_reports(KCSAN_LOG)],
                         [False, True, False])
        found = vm.scan(KCSAN_LOG)
        self.assertEqual(len(found), 1)
        self.assertIn("hvpipe_rx_one / papr_hvpipe_handle_poll", found[0])

    def test_other_reports_still_count(self) -> None:
        found = vm.scan(KCSAN_LOG + "[   13.0] WARNING: CPU: 0 at x\n")
        self.assertEqual(len(found), 2)


if __name__ == "__main__":
    unittest.main()


class BenchConsoles(unittest.TestCase):
    """lab/bench's consoles without --log: gone after a run that ends
    well or is interrupted, kept after one that fails (its message names
    them); with --log, kept."""

    def run_in(self, tmp: str, exc: BaseException | None) -> Path:
        """The console directory of a run that raises exc (None: ends
        well), with TMPDIR tmp."""
        bench = load("bench")
        old = tempfile.tempdir
        tempfile.tempdir = tmp
        try:
            with contextlib.suppress(SystemExit, KeyboardInterrupt):
                with bench.console_dir(None) as logs:
                    (logs / "ours-1.console").write_text("booted\n")
                    if exc:
                        raise exc
        finally:
            tempfile.tempdir = old
        self.assertEqual(logs.parent, Path(tmp))
        return logs

    def test_removed_unless_the_run_fails(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            self.assertFalse(self.run_in(tmp, None).exists())
            self.assertFalse(self.run_in(tmp, SystemExit(0)).exists())
            self.assertFalse(self.run_in(tmp, KeyboardInterrupt()).exists())
            failed = self.run_in(tmp, SystemExit(1))
            self.assertTrue((failed / "ours-1.console").is_file())
            self.assertEqual(os.listdir(tmp), [failed.name])

    def test_log_is_kept(self) -> None:
        bench = load("bench")
        with tempfile.TemporaryDirectory() as tmp:
            given = Path(tmp) / "bench"
            with bench.console_dir(given) as logs:
                (logs / "ours-1.console").write_text("booted\n")
            self.assertEqual(logs, given)
            self.assertTrue((given / "ours-1.console").is_file())


class BenchTable(unittest.TestCase):
    """lab/bench's guest CPU rows, and the guest program it builds."""

    # hvpipe-echo -t's medians (us) in one guest, as Bench.result() gives.
    CPU = {"write": 12.0, "read": 30.0, "irq": 16.0, "work": 0.5,
           "rtas_send": 5.0, "rtas_recv": 20.0, "rtas_check": 4.0,
           "syscall_read": 2.5, "syscall_write": 2.0, "write_rtas": 15.0,
           "away": 140.0, "wake": 38.0, "wakeups": 1.0}

    @staticmethod
    def build(d: Path) -> Path:
        """A kernel build directory, as far as the table looks."""
        (d / "include/config").mkdir(parents=True)
        (d / "include/config/kernel.release").write_text("7.3.4\n")
        (d / ".config").write_text("CONFIG_PPC64=y\n")
        return d

    def table(self, cpu: dict, hvpipe_ns: tuple[int, ...]
              ) -> tuple[list[tuple], list[str], dict[str, list[str]]]:
        """lab/bench's table for one kernel, "ours", with a guest per
        hvpipe round trip time (virtio-serial's 200 us) and the guest CPU
        medians cpu in each: its cpu_rows(), its lines, and the words of
        each "ours ..." line by its second word."""
        bench = load("bench")
        with tempfile.TemporaryDirectory() as d:
            k = bench.Kernel("ours", self.build(Path(d)))
            for ns in hvpipe_ns:
                k.add(types.SimpleNamespace(
                    rtts={("hvpipe", 64): [ns] * 10,
                          ("virtio-serial", 64): [200_000] * 10},
                    cpu={64: cpu}, many=(0, 0.0), many_direct=None))
            args = types.SimpleNamespace(sizes=[64], rounds=1, count=10,
                                         warmup=0, sources=1, many=10)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                bench.print_table([k], args, datetime.datetime.now(), "")
            cpu_rows = bench.cpu_rows(k, 64)
        lines = out.getvalue().splitlines()
        rows = {ln.split()[1]: ln.split()[2:] for ln in lines
                if ln.startswith("ours ")}
        return cpu_rows, lines, rows

    def test_the_system_call_is_not_the_drivers(self) -> None:
        cpu_rows, lines, rows = self.table(self.CPU, (200_000, 250_000))
        self.assertEqual(cpu_rows, [("send", 12.0, 2.0, 5.0),
                                    ("receive", 46.5, 2.5, 24.0)])
        # Each guest's own ratio, lowest and highest.
        self.assertEqual(rows["hvpipe"][-2:], ["0.89", "0.80-1.00"])
        self.assertIn("ours                          64      12.0    140.0"
                      "     38.0     30.0", lines)
        # total, syscall, RTAS, driver = total - syscall - RTAS, ratio
        self.assertEqual(rows["send"], ["64", "12.0", "2.0", "5.0", "5.0",
                                        "1.00"])
        self.assertEqual(rows["receive"], ["64", "46.5", "2.5", "24.0",
                                           "20.0", "0.83", "1.00"])

    def test_an_rtas_interval_longer_than_the_call_is_no_figure(self) -> None:
        """A median RTAS interval longer than the call's total (the host
        held QEMU during traced calls) gives no driver time, not a negative
        one, and the table says why."""
        _, lines, rows = self.table(dict(self.CPU, rtas_send=11.0),
                                    (200_000,))
        self.assertEqual(rows["send"], ["64", "12.0", "2.0", "11.0", "-",
                                        "-"])
        self.assertEqual(rows["receive"][4:6], ["20.0", "0.83"])
        self.assertTrue(any(ln.startswith("-: the RTAS interval")
                            for ln in lines), lines)

    def test_many_sources_counts_the_readers_own_receives(self) -> None:
        bench = load("bench")
        console = ("driver stats before many: received 100\r\n"
                   "driver stats before many: received_direct 98\r\n"
                   "hvpipe-echo: result hvpipe 64 many:\r\n"
                   "driver stats: received 300\r\n"
                   "driver stats: received_direct 248\r\n"
                   "driver stats: received_direct_x 7\r\n")
        self.assertEqual(bench.many_direct(console), (150, 200))
        # Upstream's driver has no counters; nor has a run without the part.
        self.assertIsNone(bench.many_direct("driver stats: received 3\n"))
        self.assertIsNone(bench.many_direct(""))
        with tempfile.TemporaryDirectory() as d:
            k = bench.Kernel("ours", self.build(Path(d)))
            for direct in ((150, 200), (190, 200)):
                k.add(types.SimpleNamespace(rtts={}, cpu={}, many=(200, 0.1),
                                            many_direct=direct))
            args = types.SimpleNamespace(sizes=[], rounds=2, count=10,
                                         warmup=0, sources=8, many=25)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                bench.print_table([k], args, datetime.datetime.now(), "")
        self.assertIn("ours: received by their readers themselves 340 of "
                      "400 (the driver's counters; the rest went the work "
                      "item's way)", out.getvalue().splitlines())

    def test_layout_is_refused_where_upstream_is_not_built(self) -> None:
        for other in (["--ours-only"], ["--upstream", "/nonexistent"]):
            r = subprocess.run([str(LAB / "bench"), "--layout", *other],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("--layout builds upstream's kernel", r.stderr)

    def test_each_kernel_is_booted_first_as_often(self) -> None:
        bench = load("bench")
        a, b = bench.Kernel("ours", Path()), bench.Kernel("up", Path())
        order = [(r, k.name) for r, k in bench.turns([a, b], 4)]
        self.assertEqual(order, [(0, "ours"), (0, "up"), (1, "up"),
                                 (1, "ours"), (2, "ours"), (2, "up"),
                                 (3, "up"), (3, "ours")])
        self.assertEqual([k.name for _, k in bench.turns([a], 3)],
                         ["ours"] * 3)

    def test_instructions_per_message_by_function(self) -> None:
        bench = load("bench")
        with tempfile.TemporaryDirectory() as d:
            smap = Path(d) / "System.map"
            smap.write_text("c000000000001000 T read_path\n"
                            "c000000000001100 D some_data\n"
                            "c000000000002000 t irq_handler\n")
            syms = bench.text_symbols(smap)
            self.assertEqual(syms[1], ["read_path", "irq_handler"])
            few, many = Path(d) / "few", Path(d) / "many"
            # address, instructions of the block, times it ran
            few.write_text("c000000000001000 10 100\n"
                           "c000000000001180 4 100\n"
                           "c000000000002010 5 7\n"
                           "10000100 3 50\n")
            many.write_text("c000000000001000 10 200\n"
                            "c000000000001180 4 150\n"
                            "c000000000001180 2 50\n"
                            "c000000000002010 5 7\n"
                            "10000100 3 150\n")
            # Without the header line: instructions alone.
            a = bench.counts_by_function(few, syms)["insns"]
            b = bench.counts_by_function(many, syms)["insns"]
            ra = bench.counts_by_function(few, syms)["blocks"]
            rb = bench.counts_by_function(many, syms)["blocks"]
        # A block past a data symbol still counts for the function before.
        self.assertEqual(a, {"read_path": 1400, "irq_handler": 35,
                             "(user space)": 150})
        self.assertEqual(bench.per_message(a, b, 100),
                         {"read_path": 13.0, "irq_handler": 0.0,
                          "(user space)": 3.0})
        # Blocks run, a translation of the same address counted with it.
        self.assertEqual(bench.per_message(ra, rb, 100),
                         {"read_path": 2.0, "irq_handler": 0.0,
                          "(user space)": 1.0})

    def test_instructions_of_each_kind_by_function(self) -> None:
        bench = load("bench")
        with tempfile.TemporaryDirectory() as d:
            smap = Path(d) / "System.map"
            smap.write_text("c000000000001000 T spin_lock\n"
                            "c000000000002000 t irq_handler\n")
            syms = bench.text_symbols(smap)
            counts = Path(d) / "counts"
            # The plugin names the kinds in its header line.
            counts.write_text("# vaddr insns runs isync larx sync mtmsr\n"
                              "c000000000001000 6 10 0 1 1 0\n"
                              "c000000000001040 3 10 1 0 0 0\n"
                              "c000000000002000 9 4 0 2 0 1\n"
                              "10000100 5 100 0 1 0 0\n")
            self.assertEqual(bench.counts_by_function(counts, syms),
                             {"insns": {"spin_lock": 90, "irq_handler": 36,
                                        "(user space)": 500},
                              "isync": {"spin_lock": 10},
                              "larx": {"spin_lock": 10, "irq_handler": 8,
                                       "(user space)": 100},
                              "sync": {"spin_lock": 10},
                              "mtmsr": {"irq_handler": 4},
                              "blocks": {"spin_lock": 20, "irq_handler": 4,
                                         "(user space)": 100}})

    def test_the_guest_program_builds_cleanly(self) -> None:
        cc = shutil.which("powerpc64le-linux-gnu-gcc")
        if not cc:
            self.skipTest("no powerpc64le-linux-gnu-gcc (lab/setup installs "
                          "it)")
        with tempfile.TemporaryDirectory() as d:
            # The one uapi header ours includes that the cross libc's
            # headers may predate (lab/bench uses a kernel build's).
            (Path(d) / "asm").mkdir()
            (Path(d) / "asm/papr-miscdev.h").write_text(
                "#define PAPR_MISCDEV_IOC_ID 0xb2\n")
            r = subprocess.run(
                [cc, "-static", "-O2", "-Wall", "-Wextra", "-Werror",
                 "-I", str(REPO / "arch/powerpc/include/uapi"), "-I", d,
                 "-o", str(Path(d) / "hvpipe-echo"),
                 str(LAB / "guest/hvpipe-echo.c")],
                capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
