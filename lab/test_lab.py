"""Tests of how the lab judges results: what lab/selftests and lab/test
count as passed, failed or skipped.  A mistake there hides failures, so it
is tested like the rest.

Run from the repo root:  python3 -m unittest lab/test_lab.py -v
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import tempfile
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
    """Just what judge_selftests() uses of a Run."""

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


if __name__ == "__main__":
    unittest.main()
