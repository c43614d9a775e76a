"""Tests of lab/hmc (codec, Source, qtest partition) and of lab/hmc-sim.

Run from the repo root:  python3 -m unittest discover -s lab/hmc -v
The live tests need a qemu-system-ppc64 with hvpipe: $HVPIPE_QEMU (lab/test
names the one it built), or else the lab build in $PAPR_HVPIPE_CACHE (default
/var/cache/papr-hvpipe).  They fail when $HVPIPE_QEMU cannot run them, and
are skipped, with the reason, when it is unset and there is no build.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path
from typing import Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hmc  # noqa: E402
from hmc import ErrorCode as EC, FrameType as FT  # noqa: E402

LAB = Path(__file__).resolve().parent.parent
HMC_SIM = LAB / "hmc-sim"
SRC1, SRC2 = 0x02000001, 0x02000002


def frame(ftype: int, body: bytes = b"", tag: int = 5, **kw) -> bytes:
    return hmc.encode_raw(ftype, tag, body, **kw)


# Codec

ROUND_TRIP = [
    hmc.Payload(b"x"), hmc.Payload(bytes(range(256)) * 15 + b"\0" * 208),
    hmc.Nop(), hmc.FaultRtas(1, 3, -2), hmc.FaultRtas(2, 0, 0x7fffffff),
    hmc.FaultRtas(2, 255, -(1 << 31)), hmc.DelayEvents(0),
    hmc.DelayEvents(0xffffffff), hmc.SpuriousEvent(0xdeadbeef, 0xff),
    hmc.MalformedEvent(1, 0xe0, False, SRC1), hmc.MalformedEvent(4, 0, True, 0),
    hmc.DropConnection(0), hmc.DropConnection(1, 1500), hmc.DropConnection(4),
    hmc.ClearFaults(), hmc.Hello(SRC1, 4048, True, False),
    hmc.Hello(SRC2, 4048, False, True), hmc.OutPayload(b"\xff" * 4048),
    hmc.Ack(), hmc.Dropped(1), hmc.Dropped(2), hmc.Ok(),
    hmc.Error(6, 1, "a payload of this source is still waiting"),
    hmc.Error(1, 0x55, ""), hmc.Error(3, 0x99, "x" * 200),
    hmc.State(True), hmc.State(False), hmc.State(True, slot_busy=True),
]


class CodecTest(unittest.TestCase):
    def test_round_trip_every_frame_type(self) -> None:
        seen = set()
        for i, msg in enumerate(ROUND_TRIP):
            with self.subTest(msg=msg):
                data = hmc.encode(msg, 0x1000 + i)
                self.assertEqual(data[:4], b"HP\x01" + bytes([msg.TYPE]))
                f = hmc.decode(data)
                self.assertEqual(f.tag, 0x1000 + i)
                self.assertEqual(f.msg, msg)
                self.assertEqual(f.type, msg.TYPE)
                seen.add(msg.TYPE)
        self.assertEqual(seen, set(FT))

    def test_doc_example_bytes(self) -> None:
        self.assertEqual(hmc.encode(hmc.Payload(b"hello"), 7).hex(" "),
                         "48 50 01 01 00 00 00 07 00 00 00 05 68 65 6c 6c 6f")
        self.assertEqual(hmc.decode(bytes.fromhex("485001830000000700000000")),
                         hmc.Frame(7, hmc.Ack()))

    def test_body_layouts(self) -> None:
        self.assertEqual(hmc.FaultRtas(1, 2, -2).body(),
                         bytes.fromhex("01020000fffffffe"))
        self.assertEqual(hmc.SpuriousEvent(SRC1, 2).body(),
                         bytes.fromhex("0200000102000000"))
        self.assertEqual(hmc.MalformedEvent(3, 0xe0, True, SRC2).body(),
                         bytes.fromhex("03e0010002000002"))
        self.assertEqual(hmc.DropConnection(1, 300).body(),
                         bytes.fromhex("010000000000012c"))
        self.assertEqual(hmc.Hello(SRC1, 4048, True, True).body(),
                         bytes.fromhex("020000010fd00101"))
        self.assertEqual(hmc.Error(4, 1, "ab").body(),
                         bytes.fromhex("040100006162"))
        self.assertEqual(hmc.State(True).body(), bytes.fromhex("01000000"))
        self.assertEqual(hmc.State(False, True).body(),
                         bytes.fromhex("00010000"))

    MALFORMED = [
        # (what, bytes, expected code)
        ("short header", b"HP\x01\x01\0\0\0\0\0\0\0", EC.BAD_HEADER),
        ("bad magic", frame(1, b"x", magic=0x4851), EC.BAD_HEADER),
        ("bad version 0", frame(1, b"x", version=0), EC.BAD_HEADER),
        ("bad version 2", frame(1, b"x", version=2), EC.BAD_HEADER),
        ("body over 4096", frame(1, b"", length=4097), EC.TOO_LONG),
        ("body shorter than header says", frame(1, b"abc", length=4),
         EC.BAD_LENGTH),
        ("body longer than header says", frame(1, b"abc", length=2),
         EC.BAD_LENGTH),
        ("unknown type 0x00", frame(0x00), EC.BAD_TYPE),
        ("unknown type 0x03", frame(0x03), EC.BAD_TYPE),
        ("unknown type 0x16", frame(0x16), EC.BAD_TYPE),
        ("unknown type 0x80", frame(0x80), EC.BAD_TYPE),
        ("unknown type 0x88", frame(0x88), EC.BAD_TYPE),
        ("PAYLOAD empty", frame(0x01), EC.BAD_LENGTH),
        ("PAYLOAD 4049", frame(0x01, bytes(4049)), EC.BAD_LENGTH),
        ("NOP with body", frame(0x02, b"\0"), EC.BAD_LENGTH),
        ("FAULT_RTAS 7 bytes", frame(0x10, bytes(7)), EC.BAD_LENGTH),
        ("FAULT_RTAS 9 bytes", frame(0x10, b"\1" + bytes(8)), EC.BAD_LENGTH),
        ("FAULT_RTAS function 0", frame(0x10, bytes(8)), EC.BAD_VALUE),
        ("FAULT_RTAS function 3", frame(0x10, b"\3\1" + bytes(6)),
         EC.BAD_VALUE),
        ("FAULT_RTAS reserved", frame(0x10, b"\1\1\0\1" + bytes(4)),
         EC.BAD_VALUE),
        ("DELAY_EVENTS 3 bytes", frame(0x11, bytes(3)), EC.BAD_LENGTH),
        ("DELAY_EVENTS 5 bytes", frame(0x11, bytes(5)), EC.BAD_LENGTH),
        ("SPURIOUS_EVENT 7 bytes", frame(0x12, bytes(7)), EC.BAD_LENGTH),
        ("SPURIOUS_EVENT reserved", frame(0x12, bytes(7) + b"\1"),
         EC.BAD_VALUE),
        ("MALFORMED_EVENT 4 bytes", frame(0x13, b"\1" + bytes(3)),
         EC.BAD_LENGTH),
        ("MALFORMED_EVENT kind 0", frame(0x13, bytes(8)), EC.BAD_VALUE),
        ("MALFORMED_EVENT kind 5", frame(0x13, b"\5" + bytes(7)),
         EC.BAD_VALUE),
        ("MALFORMED_EVENT flags 2", frame(0x13, b"\1\0\2" + bytes(5)),
         EC.BAD_VALUE),
        ("MALFORMED_EVENT reserved", frame(0x13, b"\1\0\0\1" + bytes(4)),
         EC.BAD_VALUE),
        ("DROP_CONNECTION 12 bytes", frame(0x14, bytes(12)), EC.BAD_LENGTH),
        ("DROP_CONNECTION moment 5", frame(0x14, b"\5" + bytes(7)),
         EC.BAD_VALUE),
        ("DROP_CONNECTION reserved", frame(0x14, b"\0\0\1\0" + bytes(4)),
         EC.BAD_VALUE),
        ("CLEAR_FAULTS with body", frame(0x15, bytes(4)), EC.BAD_LENGTH),
        ("HELLO 7 bytes", frame(0x81, bytes(7)), EC.BAD_LENGTH),
        ("HELLO sysparm 2", frame(0x81, bytes.fromhex("020000010fd00200")),
         EC.BAD_VALUE),
        ("HELLO flags 2", frame(0x81, bytes.fromhex("020000010fd00102")),
         EC.BAD_VALUE),
        ("OUT PAYLOAD empty", frame(0x82), EC.BAD_LENGTH),
        ("OUT PAYLOAD 4049", frame(0x82, bytes(4049)), EC.BAD_LENGTH),
        ("ACK with body", frame(0x83, b"\0"), EC.BAD_LENGTH),
        ("DROPPED empty", frame(0x84), EC.BAD_LENGTH),
        ("DROPPED reason 0", frame(0x84, bytes(4)), EC.BAD_VALUE),
        ("DROPPED reason 3", frame(0x84, b"\0\0\0\3"), EC.BAD_VALUE),
        ("OK with body", frame(0x85, b"\0"), EC.BAD_LENGTH),
        ("ERROR 3 bytes", frame(0x86, b"\6\1\0"), EC.BAD_LENGTH),
        ("ERROR text 201", frame(0x86, b"\6\1\0\0" + b"x" * 201),
         EC.BAD_LENGTH),
        ("ERROR code 0", frame(0x86, b"\0\1\0\0"), EC.BAD_VALUE),
        ("ERROR code 9", frame(0x86, b"\x09\1\0\0"), EC.BAD_VALUE),
        ("ERROR reserved", frame(0x86, b"\6\1\0\1"), EC.BAD_VALUE),
        ("ERROR text not ASCII", frame(0x86, b"\6\1\0\0\xe9"), EC.BAD_VALUE),
        ("ERROR text with NUL", frame(0x86, b"\6\1\0\0ab\0"), EC.BAD_VALUE),
        ("STATE 1 byte", frame(0x87, b"\1"), EC.BAD_LENGTH),
        ("STATE value 2", frame(0x87, b"\2\0\0\0"), EC.BAD_VALUE),
        ("STATE reserved", frame(0x87, b"\1\0\1\0"), EC.BAD_VALUE),
        ("STATE flags 2", frame(0x87, b"\1\2\0\0"), EC.BAD_VALUE),
    ]

    def test_every_malformed_frame_rejected(self) -> None:
        for what, data, code in self.MALFORMED:
            with self.subTest(what):
                with self.assertRaises(hmc.ProtocolError) as cm:
                    hmc.decode(data)
                self.assertEqual(cm.exception.code, code, str(cm.exception))

    def test_encode_rejects_bad_fields(self) -> None:
        bad = [
            (hmc.Payload(b""), EC.BAD_LENGTH),
            (hmc.Payload(bytes(4049)), EC.BAD_LENGTH),
            (hmc.FaultRtas(0, 1, -2), EC.BAD_VALUE),
            (hmc.FaultRtas(1, 256, -2), EC.BAD_VALUE),
            (hmc.FaultRtas(1, 1, 1 << 31), EC.BAD_VALUE),
            (hmc.DelayEvents(-1), EC.BAD_VALUE),
            (hmc.DelayEvents(1 << 32), EC.BAD_VALUE),
            (hmc.SpuriousEvent(1 << 32, 1), EC.BAD_VALUE),
            (hmc.SpuriousEvent(SRC1, 256), EC.BAD_VALUE),
            (hmc.MalformedEvent(5), EC.BAD_VALUE),
            (hmc.DropConnection(5), EC.BAD_VALUE),
            (hmc.DropConnection(1, -1), EC.BAD_VALUE),
            (hmc.Dropped(3), EC.BAD_VALUE),
            (hmc.Error(9, 1), EC.BAD_VALUE),
            (hmc.Error(1, 1, "\xe9"), EC.BAD_VALUE),
        ]
        for msg, code in bad:
            with self.subTest(msg=msg):
                with self.assertRaises(hmc.ProtocolError) as cm:
                    hmc.encode(msg, 1)
                self.assertEqual(cm.exception.code, code)
        with self.assertRaises(hmc.ProtocolError):
            hmc.encode(hmc.Nop(), -1)
        with self.assertRaises(hmc.ProtocolError):
            hmc.encode(hmc.Nop(), 1 << 32)

    def test_decoder_stream(self) -> None:
        msgs = [hmc.Hello(SRC1), hmc.OutPayload(b"abc"), hmc.Ack(),
                hmc.State(True)]
        stream = b"".join(hmc.encode(m, i) for i, m in enumerate(msgs))
        dec = hmc.Decoder()
        got = []
        for b in stream:                        # one byte at a time
            got += dec.frames(bytes([b]))
        self.assertEqual([f.msg for f in got], msgs)
        self.assertEqual([f.tag for f in got], [0, 1, 2, 3])
        self.assertEqual(dec.pending, 0)
        self.assertEqual(dec.frames(stream[:5]), [])
        self.assertEqual(dec.pending, 5)

    def test_decoder_skips_bad_body_and_breaks_on_bad_header(self) -> None:
        dec = hmc.Decoder()
        dec.feed(frame(0x83, b"junk") + hmc.encode(hmc.Ok(), 9))
        with self.assertRaises(hmc.ProtocolError) as cm:
            dec.next()
        self.assertEqual(cm.exception.code, EC.BAD_LENGTH)
        self.assertEqual(dec.next(), hmc.Frame(9, hmc.Ok()))
        dec.feed(frame(0x85, magic=0x1234) + hmc.encode(hmc.Ok(), 10))
        for _ in range(2):                      # broken for good
            with self.assertRaises(hmc.ProtocolError) as cm:
                dec.next()
            self.assertEqual(cm.exception.code, EC.BAD_HEADER)

    def test_srcid(self) -> None:
        self.assertEqual(hmc.parse_srcid("0x02000001"), SRC1)
        self.assertEqual(hmc.parse_srcid("0x0200ffff"), 0x0200ffff)
        self.assertEqual(hmc.parse_srcid(str(SRC2)), SRC2)
        for bad in ("0x01000001", "0x02010000", "0x102000001", "-1", "two",
                    "", "0x"):
            with self.subTest(bad):
                with self.assertRaises(ValueError):
                    hmc.parse_srcid(bad)

    def test_sizes(self) -> None:
        self.assertEqual(hmc.parse_sizes("64,4048"), [64, 4048])
        self.assertEqual(hmc.parse_sizes("1"), [1])
        for bad, why in (("64,x", "expected numbers"), ("", "expected"),
                         ("0", "0 is not 1 to 4048"),
                         ("64,4049", "4049 is not 1 to 4048"),
                         ("64,64", "a size twice")):
            with self.subTest(bad):
                with self.assertRaisesRegex(ValueError, why):
                    hmc.parse_sizes(bad)

    def test_pattern(self) -> None:
        """The bytes the guest's lab_pattern() makes too."""
        self.assertEqual(hmc.pattern(4, 2), bytes([11, 12, 13, 14]))
        self.assertEqual(hmc.pattern(3, 250), bytes([120, 121, 122]))
        self.assertEqual(len({hmc.pattern(64, n) for n in range(16)}), 16)

    def test_address(self) -> None:
        self.assertEqual(hmc.parse_address("unix:hmc1.sock"),
                         (False, "unix", "hmc1.sock"))
        self.assertEqual(hmc.parse_address("listen:tcp:127.0.0.1:4444"),
                         (True, "tcp", ("127.0.0.1", 4444)))
        self.assertEqual(hmc.parse_address("tcp:[::1]:1"),
                         (False, "tcp", ("::1", 1)))
        for bad in ("hmc1.sock", "unix:", "udp:x:1", "tcp:localhost",
                    "tcp:localhost:0", "tcp:localhost:70000",
                    "tcp:192.168.1.1:80", "tcp:example.org:80",
                    "unix:/" + "x" * 120):
            with self.subTest(bad):
                with self.assertRaises(ValueError):
                    hmc.parse_address(bad)


def event_log(srcid: int, ev: int, *, log_type: int = 0xE6,
              pe: bool = True, pe_len: int = 16, ext: Optional[int] = None
              ) -> bytes:
    """An hvpipe log laid out as in qemu/docs/system/ppc/hvpipe.rst."""
    body = bytes([0x86, 0, 0x8E]) + bytes(9) + b"IBM\0"
    body += struct.pack(">HH", 0x5048, 48) + bytes(44)
    body += struct.pack(">HH", 0x5548, 24) + bytes(20)
    if pe:
        body += struct.pack(">HHB3xIB3x", 0x5045, pe_len, 1, srcid, ev)
    ext = len(body) if ext is None else ext
    return struct.pack(">II", 0x06240000 | log_type, ext) + body


class EventLogTest(unittest.TestCase):
    def test_well_formed(self) -> None:
        log = event_log(SRC2, 2)
        self.assertEqual(len(log), 112)
        self.assertEqual(hmc.parse_event_log(log), hmc.Event(SRC2, 2))

    def test_malformed(self) -> None:
        cases = {
            "wrong type": event_log(SRC1, 1, log_type=0xE0),
            "no PE": event_log(SRC1, 1, pe=False),
            "truncated": event_log(SRC1, 1, ext=98)[:106],
            "short PE": event_log(SRC1, 1, pe_len=8, ext=96)[:104],
            "header only": event_log(SRC1, 1)[:6],
        }
        for what, log in cases.items():
            with self.subTest(what):
                with self.assertRaises(ValueError):
                    hmc.parse_event_log(log)


# A fake QEMU source socket for the client and the CLI

class FakeQemu:
    """Unix socket server playing one QEMU source in a thread.

    Sends HELLO on connect, then answers PAYLOAD with ``on_payload`` (ACK
    by default) and control frames with OK; records what it got.
    """

    def __init__(self, path: str, srcid: int = SRC1, *, enabled: bool = True,
                 on_payload: Optional[Callable] = None,
                 after_hello: Callable = lambda send: None,
                 close_after_hello: bool = False):
        self.path, self.srcid, self.enabled = path, srcid, enabled
        self.on_payload = on_payload or (lambda f, send: send(hmc.Ack(), f.tag))
        self.after_hello = after_hello
        self.close_after_hello = close_after_hello
        self.got: list[hmc.Frame] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.sock.settimeout(20)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        out_tag = 1

        def send(msg: hmc.Message, tag: Optional[int] = None) -> None:
            nonlocal out_tag
            if tag is None:
                tag, out_tag = out_tag, out_tag + 1
            conn.sendall(hmc.encode(msg, tag))
        with conn:
            send(hmc.Hello(self.srcid, 4048, self.enabled, False), 0)
            if self.close_after_hello:
                return
            self.after_hello(send)
            dec = hmc.Decoder()
            conn.settimeout(20)
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                for f in dec.frames(data):
                    self.got.append(f)
                    if isinstance(f.msg, hmc.Payload):
                        self.on_payload(f, send)
                    else:
                        send(hmc.Ok(), f.tag)

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


class SourceClientTest(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "s.sock")

    def tearDown(self) -> None:
        self.dir.cleanup()

    def test_exchange_with_fake(self) -> None:
        fake = FakeQemu(self.path, after_hello=lambda send: (
            send(hmc.OutPayload(b"from partition")), send(hmc.State(False))))

        async def go() -> None:
            async with await hmc.Source.connect("unix:" + self.path) as src:
                self.assertEqual(src.srcid, SRC1)
                self.assertEqual(await src.wait_payload(), b"from partition")
                await src.recv(FT.STATE)
                self.assertFalse(src.enabled)
                tag = await src.send_payload(b"hi")
                await src.wait_ack(tag)
                await src.fault("rtas-receive:-2:3")
                await src.fault("drop:on-event")
                await src.fault("malformed:short-pe:next")
                await src.nop()
        asyncio.run(go())
        fake.close()
        self.assertEqual([f.msg for f in fake.got], [
            hmc.Payload(b"hi"), hmc.FaultRtas(2, 3, -2),
            hmc.DropConnection(3), hmc.MalformedEvent(4, 0, True, 0),
            hmc.Nop()])
        self.assertEqual(len({f.tag for f in fake.got}), 5)

    def test_listen(self) -> None:
        """listen: mode: QEMU (here a thread) connects to us."""
        got: list[bytes] = []

        def qemu_side() -> None:
            for _ in range(100):
                try:
                    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    c.connect(self.path)
                    break
                except OSError:
                    c.close()
                    time.sleep(0.02)
            c.sendall(hmc.encode(hmc.Hello(SRC2), 0) +
                      hmc.encode(hmc.OutPayload(b"up"), 1))
            got.append(c.recv(4096))
            c.close()
        t = threading.Thread(target=qemu_side)
        t.start()

        async def go() -> hmc.Source:
            src = await hmc.Source.listen("unix:" + self.path)
            self.assertEqual(src.srcid, SRC2)
            self.assertEqual(await src.wait_payload(), b"up")
            await src.send(hmc.Nop())
            with self.assertRaises(hmc.ConnectionClosed):
                await src.recv(timeout=5)
            await src.close()
            return src
        src = asyncio.run(go())
        t.join(5)
        self.assertTrue(src.closed)
        self.assertEqual([hmc.decode(g) for g in got], [hmc.Frame(1, hmc.Nop())])

    def test_listen_leaves_a_file_alone(self) -> None:
        """listen: on a path that is a file, not a socket: fail, keep it."""
        Path(self.path).write_text("precious")

        async def go() -> None:
            with self.assertRaises(hmc.ConnectionClosed):
                await hmc.Source.listen("unix:" + self.path, timeout=0.2)
        asyncio.run(go())
        self.assertEqual(Path(self.path).read_text(), "precious")

    def test_errors(self) -> None:
        fake = FakeQemu(self.path, on_payload=lambda f, send: send(
            hmc.Error(EC.BUSY, FT.PAYLOAD, "busy"), f.tag))

        async def go() -> None:
            src = await hmc.Source.connect("unix:" + self.path)
            tag = await src.send_payload(b"x")
            with self.assertRaises(hmc.ModelError) as cm:
                await src.wait_ack(tag)
            self.assertEqual(cm.exception.code, EC.BUSY)
            with self.assertRaises(hmc.HmcTimeout):
                await src.recv(FT.OUT_PAYLOAD, timeout=0.2)
            await src.close()
            with self.assertRaises(hmc.ConnectionClosed):
                await src.send_payload(b"x")
            with self.assertRaises(hmc.ConnectionClosed):
                await hmc.Source.connect("unix:" + self.path + ".none")
        asyncio.run(go())
        fake.close()


class NoWriter:
    """A Source's writer for tests that only feed it frames."""

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass


class SourceWaitersTest(unittest.TestCase):
    """recv(): frames go to the waiter they match, none is lost."""

    def test_each_waiter_gets_its_frame(self) -> None:
        async def go() -> None:
            reader = asyncio.StreamReader()
            src = hmc.Source(reader, NoWriter())
            ack = asyncio.create_task(src.wait_ack(7))
            out = asyncio.create_task(src.wait_payload())
            await asyncio.sleep(0)
            reader.feed_data(hmc.encode(hmc.Ack(), 7) +
                             hmc.encode(hmc.OutPayload(b"a"), 1) +
                             hmc.encode(hmc.OutPayload(b"b"), 2))
            self.assertEqual(await out, b"a")
            await ack
            self.assertEqual(src.inbox(), [hmc.Frame(2, hmc.OutPayload(b"b"))])
            await src.close()
        asyncio.run(go())

    def test_a_cancelled_waiter_gives_its_frame_back(self) -> None:
        async def go() -> None:
            reader = asyncio.StreamReader()
            src = hmc.Source(reader, NoWriter())
            first = asyncio.create_task(src.wait_payload())
            await asyncio.sleep(0)
            reader.feed_data(hmc.encode(hmc.OutPayload(b"a"), 1) +
                             hmc.encode(hmc.OutPayload(b"b"), 2))
            # The reader hands "a" to first; first has not run yet.
            await asyncio.sleep(0)
            self.assertTrue(first.cancel(), "first ran already")
            with self.assertRaises(asyncio.CancelledError):
                await first
            self.assertEqual([await src.wait_payload(timeout=1)
                              for _ in range(2)], [b"a", b"b"])
            await src.close()
        asyncio.run(go())

    def test_a_timed_out_waiter_leaves_later_frames_alone(self) -> None:
        async def go() -> None:
            reader = asyncio.StreamReader()
            src = hmc.Source(reader, NoWriter())
            with self.assertRaisesRegex(hmc.HmcTimeout,
                                        "no OUT_PAYLOAD within 0.05 s"):
                await src.wait_payload(timeout=0.05)
            self.assertEqual(src._waiters, [])
            reader.feed_data(hmc.encode(hmc.OutPayload(b"late"), 1))
            await asyncio.sleep(0.01)
            self.assertEqual(src.inbox(),
                             [hmc.Frame(1, hmc.OutPayload(b"late"))])
            self.assertEqual(await src.wait_payload(timeout=1), b"late")
            await src.close()
        asyncio.run(go())

    def test_the_close_wakes_every_waiter(self) -> None:
        async def go() -> None:
            reader = asyncio.StreamReader()
            src = hmc.Source(reader, NoWriter())
            waits = [asyncio.create_task(src.wait_payload(timeout=None)),
                     asyncio.create_task(src.wait_state(False, timeout=None))]
            await asyncio.sleep(0)
            reader.feed_eof()
            for w in waits:
                with self.assertRaises(hmc.ConnectionClosed):
                    await asyncio.wait_for(w, 5)
        asyncio.run(go())


# The command

class CliTest(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "s.sock")
        self.src = f"0x02000001=unix:{self.path}"

    def tearDown(self) -> None:
        self.dir.cleanup()

    def run_sim(self, *args: str, stdin: bytes = b"", timeout: float = 20
                ) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(HMC_SIM), *args],
                              input=stdin, capture_output=True,
                              timeout=timeout)

    def assert_error(self, p: subprocess.CompletedProcess, code: int,
                     text: str) -> None:
        err = p.stderr.decode()
        self.assertEqual(p.returncode, code, err)
        self.assertNotIn("Traceback", err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertTrue(err.startswith("hmc-sim: error: "), err)
        self.assertIn(text, err)

    def test_bad_arguments(self) -> None:
        big = os.path.join(self.dir.name, "big")
        Path(big).write_bytes(bytes(4049))
        empty = os.path.join(self.dir.name, "empty")
        Path(empty).write_bytes(b"")
        s = self.src
        cases = [
            ([], "at least one --source"),
            (["--source", "0x03000001=unix:hmc.sock"], "not of the HMC type"),
            (["--source", "0x02010001=unix:hmc.sock"], "reserved byte"),
            (["--source", "0x1ffffffff=unix:hmc.sock"], "not a 32-bit"),
            (["--source", "hmc=unix:hmc.sock"], "is not a number"),
            (["--source", "0x02000001"], "expected SRCID=ADDRESS"),
            (["--source", "0x02000001=pipe:/x"], "expected unix:PATH"),
            (["--source", "0x02000001=tcp:10.1.2.3:5"], "only loopback"),
            (["--source", s, "--source", s], "given twice"),
            (["--source", s, "--to", "0x02000002"], "not one of the --source"),
            (["--source", s, "--to", "0x05000001"], "not of the HMC type"),
            (["--source", s, "--text", "x" * 4049], "too large"),
            (["--source", s, "--text", ""], "payload is empty"),
            (["--source", s, "--file", big], "4049 bytes is too large"),
            (["--source", s, "--file", empty], "payload is empty"),
            (["--source", s, "--file", "/nonexistent/f"], "cannot read"),
            (["--source", s, "--file", self.dir.name], "cannot read"),
            (["--source", s, "--hex", "0g"], "not hexadecimal"),
            (["--source", s, "--inject", "boom"], "unknown fault"),
            (["--source", s, "--inject", "rtas-send"], "number of fields"),
            (["--source", s, "--inject", "rtas-send:x"], "not a number"),
            (["--source", s, "--inject", "rtas-send:-2:256"], "out of range"),
            (["--source", s, "--inject", "delay:-1"], "out of range"),
            (["--source", s, "--inject", "malformed:odd:next"], "kind must"),
            (["--source", s, "--inject", "drop:later"], "moment must"),
            (["--source", s, "--inject", "drop:after"], "needs a time"),
            (["--source", s, "--stdin", "--file", "-"], "both read stdin"),
            (["--source", s, "--count", "0"], "at least 1"),
            (["--source", s, "--timeout", "-1"], "must not be negative"),
            (["--source", s, "--bogus"], "unrecognized arguments"),
        ]
        for args, text in cases:
            with self.subTest(args=args):
                self.assert_error(self.run_sim(*args), 2, text)
        p = self.run_sim("--source", s, "--file", "-", stdin=bytes(4049))
        self.assert_error(p, 2, "too large")

    def test_missing_and_refused_socket(self) -> None:
        self.assert_error(self.run_sim("--source", self.src, "--text", "x"),
                          3, "No such file")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self.path)                   # bound, not listening
        self.assert_error(self.run_sim("--source", self.src, "--text", "x"),
                          3, "refused")
        s.close()

    def test_closed_by_peer(self) -> None:
        fake = FakeQemu(self.path, close_after_hello=True)
        p = self.run_sim("--source", self.src)
        fake.close()
        self.assert_error(p, 3, "connection closed by QEMU")

    def test_wrong_hello(self) -> None:
        fake = FakeQemu(self.path, srcid=SRC2)
        p = self.run_sim("--source", self.src, "--text", "x")
        fake.close()
        self.assert_error(p, 3, "is source 0x02000002, not 0x02000001")

    def test_ack_timeout(self) -> None:
        fake = FakeQemu(self.path, on_payload=lambda f, send: None)
        p = self.run_sim("--source", self.src, "--text", "x", "--timeout",
                         "0.5")
        fake.close()
        self.assert_error(p, 4, "no ACK")

    def test_refused_and_dropped(self) -> None:
        fake = FakeQemu(self.path, on_payload=lambda f, send: send(
            hmc.Error(EC.DISABLED, FT.PAYLOAD, "not enabled"), f.tag))
        p = self.run_sim("--source", self.src, "--text", "x")
        fake.close()
        self.assert_error(p, 1, "DISABLED: not enabled")
        os.unlink(self.path)
        fake = FakeQemu(self.path, on_payload=lambda f, send: send(
            hmc.Dropped(hmc.DropReason.RESET), f.tag))
        p = self.run_sim("--source", self.src, "--text", "x")
        fake.close()
        self.assert_error(p, 1, "dropped: RESET")

    def test_send_in_order_after_enablement(self) -> None:
        def enable_later(send):
            time.sleep(0.3)
            send(hmc.State(True))
        fake = FakeQemu(self.path, enabled=False, after_hello=enable_later)
        blob = os.path.join(self.dir.name, "blob")
        Path(blob).write_bytes(bytes(range(256)) * 15)
        p = self.run_sim("--source", self.src, "--text", "héllo", "--hex",
                         "00ff", "--file", blob, "--stdin",
                         stdin=b"line one\n\nline two\n")
        fake.close()
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertEqual([f.msg for f in fake.got], [
            hmc.Payload("héllo".encode()), hmc.Payload(b"\0\xff"),
            hmc.Payload(bytes(range(256)) * 15), hmc.Payload(b"line one"),
            hmc.Payload(b"line two")])
        out = p.stdout.decode()
        self.assertIn("waiting for the partition to enable hvpipe", out)
        self.assertIn("STATE system parameter 64=1", out)
        self.assertEqual(out.count("ACK tag"), 5)

    def test_print_echo_inject(self) -> None:
        fake = FakeQemu(self.path, after_hello=lambda send: (
            send(hmc.OutPayload(b"hi there")),
            send(hmc.OutPayload(bytes(range(20))))))
        p = self.run_sim("--source", self.src, "--echo", "--count", "2",
                         "--inject", "rtas-send:-2:3", "--inject",
                         "rtas-receive:9902", "--inject", "delay:250",
                         "--inject", "spurious:0x07000000:lost",
                         "--inject", "malformed:truncated:next",
                         "--inject", "malformed:wrong-type:0x02000001:0xe0",
                         "--inject", "drop:after:1500", "--inject", "clear")
        fake.close()
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        out = p.stdout.decode()
        self.assertRegex(out, r"\d\d:\d\d:\d\d\.\d{6} 0x02000001 PAYLOAD 8 "
                         r"bytes: hi there")
        self.assertIn("PAYLOAD 20 bytes (binary):", out)
        self.assertIn("  0000  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e "
                      "0f  |................|", out)
        got = [f.msg for f in fake.got]
        self.assertEqual([m for m in got if not isinstance(m, hmc.Payload)], [
            hmc.FaultRtas(1, 3, -2), hmc.FaultRtas(2, 1, 9902),
            hmc.DelayEvents(250), hmc.SpuriousEvent(0x07000000, 2),
            hmc.MalformedEvent(3, 0, True, 0),
            hmc.MalformedEvent(1, 0xe0, False, SRC1),
            hmc.DropConnection(1, 1500), hmc.ClearFaults()])
        self.assertEqual([m for m in got if isinstance(m, hmc.Payload)], [
            hmc.Payload(b"hi there"), hmc.Payload(bytes(range(20)))])
        self.assertEqual(out.count("echoed"), 2)
        self.assertEqual(out.count("injected"), 8)


# Live: a real QEMU under -accel qtest

def find_qemu() -> tuple[Optional[str], str]:
    cands = [os.environ["HVPIPE_QEMU"]] if os.environ.get("HVPIPE_QEMU") else \
        sorted(glob.glob(os.path.join(os.environ.get(
            "PAPR_HVPIPE_CACHE", "/var/cache/papr-hvpipe"),
            "build", "qemu-*", "qemu-system-ppc64")))
    if not cands:
        return None, "no qemu-system-ppc64 built (run lab/build-qemu)"
    why = ""
    for q in cands:
        try:
            p = subprocess.run([q, "-device", "help"], capture_output=True,
                               text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            why = why or f"{q}: {e}"
            continue
        if "spapr-hvpipe-source" in p.stdout:
            return q, ""
        why = why or f"{q} has no spapr-hvpipe-source (run lab/build-qemu)"
    return None, why


# Found when a live test runs, not when this module is imported: lab/test
# imports it (test_lab.py) before it builds QEMU and names it.
QEMU: Optional[str] = None


class Qmp:
    """Just enough QMP for a migration: one command at a time."""

    def __init__(self, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, path: str) -> "Qmp":
        for _ in range(250):
            try:
                q = cls(*await asyncio.open_unix_connection(path))
                break
            except OSError:
                await asyncio.sleep(0.02)
        else:
            raise hmc.HmcError(f"no QMP socket {path}")
        await q.reader.readline()                   # the greeting
        await q.cmd("qmp_capabilities")
        return q

    async def cmd(self, name: str, **args) -> object:
        self.writer.write(json.dumps({"execute": name,
                                      "arguments": args}).encode() + b"\n")
        while True:
            rsp = json.loads(await self.reader.readline())
            if "error" in rsp:
                raise hmc.HmcError(f"QMP {name}: {rsp['error']}")
            if "return" in rsp:
                return rsp["return"]

    def close(self) -> None:
        self.writer.close()


class LiveTest(unittest.TestCase):
    def setUp(self) -> None:
        global QEMU
        QEMU, why_not = find_qemu()
        if QEMU is None:
            # A QEMU named by the caller must run them: no skipping then.
            if os.environ.get("HVPIPE_QEMU"):
                self.fail(f"HVPIPE_QEMU: {why_not}")
            self.skipTest(why_not)

    def test_library_against_qemu(self) -> None:
        asyncio.run(asyncio.wait_for(self._library(), 60))

    async def _library(self) -> None:
        async with await hmc.Machine.start(QEMU, [SRC1, SRC2]) as m:
            p = m.partition
            src = await m.connect(SRC1)
            self.assertEqual(src.hello, hmc.Hello(SRC1, 4048, False, False))
            # Disabled: the payload is refused, the send answers -4
            with self.assertRaises(hmc.ModelError) as cm:
                await src.wait_ack(await src.send_payload(b"early"))
            self.assertEqual(cm.exception.code, EC.DISABLED)
            self.assertEqual(await p.send(SRC1, b"x"), -4)
            self.assertEqual(await p.set_sysparm64(1), 0)
            await src.wait_state(True)
            self.assertEqual(await p.get_sysparm64(), (0, 1))
            # HMC -> partition: event, exact bytes, ACK
            data = bytes(range(256)) * 15 + b"end"
            tag = await src.send_payload(data)
            self.assertEqual(await p.wait_event(), hmc.Event(SRC1, 1))
            self.assertEqual(await p.receive(), (0, SRC1, data))
            await src.wait_ack(tag)
            self.assertEqual(await p.poll_event(), None)
            # partition -> HMC
            self.assertEqual(await p.send(SRC1, b"to the HMC"), 0)
            self.assertEqual(await src.wait_payload(), b"to the HMC")
            # a never-connected source and a non-HMC ID
            self.assertEqual(await p.send(SRC2, b"x"), -4)
            self.assertEqual(await p.send(0x03000001, b"x"), -3)
            # fault injection through the library
            await src.fault("rtas-send:-2:2")
            self.assertEqual([await p.send(SRC1, b"f") for _ in range(3)],
                             [-2, -2, 0])
            self.assertEqual(await src.wait_payload(), b"f")
            await src.fault("spurious:0x0200beef:lost")
            self.assertEqual(await p.wait_event(), hmc.Event(0x0200beef, 2))
            await src.fault(f"malformed:no-pe:{SRC1:#x}")
            with self.assertRaisesRegex(ValueError, "no \"PE\" section"):
                await p.poll_event()
            # a malformed control frame is answered with ERROR
            await src.send_raw(frame(0x14, b"\x09" + bytes(7), tag=77))
            f = await src.recv(FT.ERROR, 77)
            self.assertEqual((f.msg.code, f.msg.frame_type),
                             (EC.BAD_VALUE, 0x14))
            # QEMU drops the connection when asked
            await src.fault("drop:now")
            with self.assertRaises(hmc.ConnectionClosed):
                await src.recv(FT.OUT_PAYLOAD, timeout=5)
            self.assertEqual(await p.wait_event(), hmc.Event(SRC1, 2))
            await src.close()

    def test_wait_state_after_migration(self) -> None:
        asyncio.run(asyncio.wait_for(self._migration(), 60))

    async def _migration(self) -> None:
        """A host on the destination waits for the pipe to be enabled, as
        hmc-sim does: the migrated state's STATE 1 wakes it up."""
        with tempfile.TemporaryDirectory(prefix="hvpipe-") as d:
            state, qmp = os.path.join(d, "state"), os.path.join(d, "qmp")

            def extra(name: str, *more: str) -> list[str]:
                return ["-qmp", f"unix:{qmp}{name},server=on,wait=off", *more]
            async with await hmc.Machine.start(QEMU, [SRC1],
                                               extra=extra("a")) as a:
                self.assertEqual(await a.partition.set_sysparm64(1), 0)
                q = await Qmp.connect(qmp + "a")
                await q.cmd("migrate", uri=f"exec:cat > {state}")
                while (status := (await q.cmd("query-migrate"))["status"]) \
                        != "completed":
                    self.assertNotEqual(status, "failed")
                    await asyncio.sleep(0.02)
                q.close()
            async with await hmc.Machine.start(
                    QEMU, [SRC1], extra=extra("b", "-incoming", "defer")) as b:
                src = await b.connect(SRC1)
                self.assertFalse(src.hello.enabled)
                q = await Qmp.connect(qmp + "b")
                await q.cmd("migrate-incoming", uri=f"exec:cat {state}")
                q.close()
                await src.wait_state(True)
                tag = await src.send_payload(b"after migration")
                self.assertEqual(await b.partition.wait_event(),
                                 hmc.Event(SRC1, 1))
                self.assertEqual(await b.partition.receive(),
                                 (0, SRC1, b"after migration"))
                await src.wait_ack(tag)
                await src.close()

    def test_cli_against_qemu(self) -> None:
        asyncio.run(asyncio.wait_for(self._cli(), 60))

    async def _cli(self) -> None:
        async with await hmc.Machine.start(QEMU, [SRC1, SRC2]) as m:
            p = m.partition
            self.assertEqual(await p.set_sysparm64(1), 0)
            sim = await asyncio.create_subprocess_exec(
                sys.executable, str(HMC_SIM), "--source",
                f"{SRC2:#010x}=unix:{m.paths[SRC2]}", "--text", "from hmc-sim",
                "--echo", "--count", "1", "--timeout", "20",
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self.assertEqual(await p.wait_event(timeout=20),
                             hmc.Event(SRC2, 1))
            self.assertEqual(await p.receive(), (0, SRC2, b"from hmc-sim"))
            self.assertEqual(await p.send(SRC2, b"ping"), 0)
            self.assertEqual(await p.wait_event(timeout=20),
                             hmc.Event(SRC2, 1))
            self.assertEqual(await p.receive(), (0, SRC2, b"ping"))
            out, err = await asyncio.wait_for(sim.communicate(), 20)
            self.assertEqual(sim.returncode, 0, err.decode())
            text = out.decode()
            self.assertIn("0x02000002 PAYLOAD 4 bytes: ping", text)
            self.assertEqual(text.count("ACK tag"), 2, text)


if __name__ == "__main__":
    unittest.main()
