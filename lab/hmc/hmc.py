"""HMC simulator library for the QEMU hvpipe model (Python 3 stdlib only).

Three layers, each usable on its own:

* Frame codec for the chardev protocol of qemu/docs/system/ppc/hvpipe.rst:
  one class per frame type (``Payload``, ``Nop``, ``FaultRtas`` ... for host
  to QEMU; ``Hello``, ``OutPayload``, ``Ack`` ... for QEMU to host),
  ``encode(msg, tag)`` / ``decode(data)`` for a whole frame and ``Decoder``
  for a byte stream.  Decoding is strict: every malformed frame raises
  ``ProtocolError`` whose ``code`` is the ``ErrorCode`` QEMU would answer.
  ``encode_raw()`` builds anything, valid or not, to test QEMU's checks.

* ``Source``: an asyncio client for one source chardev.  ``Source.connect``
  connects to a socket QEMU listens on (``unix:PATH``, ``tcp:HOST:PORT``);
  ``Source.listen`` waits for QEMU to connect (``listen:unix:PATH`` ...).
  ``send_payload``/``wait_ack``, ``recv``/``wait_payload``, ``fault`` (a
  fault spelled as lab/hmc-sim's ``--inject``, see FAULTS) and ``nop``.

* The partition side without a kernel: ``Machine.start`` runs QEMU with
  ``-accel qtest``; ``QTest`` speaks the qtest text protocol and
  ``Partition`` makes the RTAS calls of a guest (send, receive,
  check-exception, system parameter 64) with buffers in the RMA.

Typical use::

    m = await Machine.start(qemu, [0x02000001])
    src = await m.connect(0x02000001)          # HELLO already read
    await m.partition.set_sysparm64(1)
    tag = await src.send_payload(b"hello")
    ev = await m.partition.wait_event()       # Event(0x02000001, 1)
    status, srcid, data = await m.partition.receive()
    await src.wait_ack(tag)
    await m.close()
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import ctypes
import enum
import functools
import os
import signal
import stat
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Iterable, Optional, Sequence, Union

__all__ = [
    "MAGIC", "VERSION", "HEADER_SIZE", "MAX_BODY", "MAX_PAYLOAD",
    "MAX_ERROR_TEXT", "HMC_TYPE", "FrameType", "ErrorCode", "DropReason",
    "RtasFunction", "DropMoment", "MalformedKind", "EventType",
    "HmcError", "ProtocolError", "ModelError", "PayloadDropped",
    "ConnectionClosed", "HmcTimeout", "QTestError",
    "Message", "Payload", "Nop", "FaultRtas", "DelayEvents", "SpuriousEvent",
    "MalformedEvent", "DropConnection", "ClearFaults", "Hello", "OutPayload",
    "Ack", "Dropped", "Ok", "Error", "State", "Frame",
    "encode", "encode_raw", "decode", "decode_header", "Decoder",
    "FAULTS", "parse_fault",
    "parse_srcid", "check_srcid", "parse_address", "pattern", "parse_sizes",
    "Source",
    "QTest", "Partition", "Event", "parse_event_log", "Machine",
    "build_qemu", "die_with_parent",
]

MAGIC = 0x4850              # "HP"
VERSION = 1
HEADER_SIZE = 12
MAX_BODY = 4096
MAX_PAYLOAD = 4048
MAX_ERROR_TEXT = 200
HMC_TYPE = 0x02000000       # HVPIPE_HMC_ID_MASK
_HDR = struct.Struct(">HBBII")


class FrameType(enum.IntEnum):
    """Frame types; 0x0n/0x1n go to QEMU, 0x8n come from QEMU."""
    PAYLOAD = 0x01
    NOP = 0x02
    FAULT_RTAS = 0x10
    DELAY_EVENTS = 0x11
    SPURIOUS_EVENT = 0x12
    MALFORMED_EVENT = 0x13
    DROP_CONNECTION = 0x14
    CLEAR_FAULTS = 0x15
    HELLO = 0x81
    OUT_PAYLOAD = 0x82
    ACK = 0x83
    DROPPED = 0x84
    OK = 0x85
    ERROR = 0x86
    STATE = 0x87


class ErrorCode(enum.IntEnum):
    """Codes of an ERROR frame (and of ProtocolError.code)."""
    BAD_HEADER = 1
    TOO_LONG = 2
    BAD_TYPE = 3
    BAD_LENGTH = 4
    BAD_VALUE = 5
    BUSY = 6
    DISABLED = 7
    NO_FAULTS = 8


class DropReason(enum.IntEnum):
    RESET = 1
    DISABLED = 2


class RtasFunction(enum.IntEnum):
    SEND = 1
    RECEIVE = 2


class DropMoment(enum.IntEnum):
    NOW = 0
    AFTER_MS = 1
    ON_SEND = 2
    ON_EVENT = 3
    ON_RECEIVE = 4


class MalformedKind(enum.IntEnum):
    WRONG_TYPE = 1
    NO_PE = 2
    TRUNCATED = 3
    SHORT_PE = 4


class EventType(enum.IntEnum):
    PAYLOAD = 0x01
    LOST = 0x02


def _name(enum_cls: type, value: int) -> str:
    try:
        return enum_cls(value).name
    except ValueError:
        return str(value)


# Exceptions

class HmcError(Exception):
    """Base of every error raised by this library."""


class ProtocolError(HmcError):
    """A malformed frame; ``code`` is the ErrorCode QEMU would answer."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = ErrorCode(code)


class ModelError(HmcError):
    """QEMU answered one of our frames with ERROR."""

    def __init__(self, error: "Error", tag: int):
        self.error = error
        self.code = error.code
        self.tag = tag
        super().__init__(f"QEMU refused {_name(FrameType, error.frame_type)}"
                         f" (tag {tag}): {_name(ErrorCode, error.code)}"
                         + (f": {error.text}" if error.text else ""))


class PayloadDropped(HmcError):
    """QEMU answered DROPPED: the payload will never reach the partition."""

    def __init__(self, reason: int, tag: int):
        self.reason = reason
        self.tag = tag
        super().__init__(f"payload (tag {tag}) dropped: "
                         f"{_name(DropReason, reason)}")


class ConnectionClosed(HmcError):
    """The source connection is closed (by QEMU, or it could not be made)."""


class HmcTimeout(HmcError, TimeoutError):
    """Nothing matching arrived in time."""


class QTestError(HmcError):
    """The qtest protocol answered FAIL/ERR, or QEMU went away."""


# Frame bodies.  A fixed body is described once, by LAYOUT: its fields in
# order, each (name, struct code, allowed), where name None is a reserved
# field (zero), and allowed is None (any value the code holds), BOOL (0 or
# 1, a bool here) or the set of valid values.  Encoding and strict decoding
# both follow it.

BOOL = frozenset((0, 1))


# On the paths every frame takes (the header, payloads, tags), checks
# format their message only once they fail: a round trip runs through
# them a dozen times, and lab/bench times round trips.

def _check(cond: bool, code: ErrorCode, message: str) -> None:
    if not cond:
        raise ProtocolError(code, message)


def _check_u(value: int, bits: int, what: str) -> None:
    if not (isinstance(value, int) and 0 <= value < (1 << bits)):
        raise ProtocolError(ErrorCode.BAD_VALUE,
                            f"{what} {value!r} is not a u{bits}")


def _check_field(what: str, code: str, allowed, value) -> None:
    bits = struct.calcsize(code) * 8
    lo, hi = (-(1 << bits - 1), 1 << bits - 1) if code.islower() else \
        (0, 1 << bits)
    _check(isinstance(value, int) and lo <= value < hi, ErrorCode.BAD_VALUE,
           f"{what} {value!r} is not a{' s' if lo else ' u'}{bits}")
    _check(allowed is None or value in allowed, ErrorCode.BAD_VALUE,
           f"{what} {value!r} must be one of {sorted(allowed or ())}")


class Message:
    """A frame body.  Subclasses set TYPE, and LAYOUT (see above) or their
    own body()/parse()."""

    TYPE: ClassVar[FrameType]
    LAYOUT: ClassVar[tuple] = ()
    _registry: ClassVar[dict] = {}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        Message._registry[int(cls.TYPE)] = cls

    @classmethod
    def _format(cls) -> str:
        return ">" + "".join(code for _, code, _ in cls.LAYOUT)

    def body(self) -> bytes:
        """The encoded body; raises ProtocolError for out-of-range fields."""
        values = []
        for name, code, allowed in self.LAYOUT:
            value = int(getattr(self, name)) if name else 0
            _check_field(f"{self.TYPE.name}: {name}", code, allowed, value)
            values.append(value)
        return struct.pack(self._format(), *values)

    @classmethod
    def parse(cls, body: bytes) -> "Message":
        """Strictly decode a body of this type."""
        layout = struct.Struct(cls._format())
        if len(body) != layout.size:
            raise ProtocolError(ErrorCode.BAD_LENGTH,
                                f"{cls.TYPE.name}: body of {len(body)} "
                                f"bytes, must be {layout.size}")
        fields = []
        for (name, _, allowed), value in zip(cls.LAYOUT,
                                             layout.unpack(body)):
            if (name is None or allowed) and \
                    value not in (allowed or (0,)):
                raise ProtocolError(ErrorCode.BAD_VALUE,
                                    f"{cls.TYPE.name}: "
                                    f"{name or 'reserved field'} is {value}")
            if name:
                fields.append(bool(value) if allowed is BOOL else value)
        return cls(*fields)


@dataclass(frozen=True)
class Payload(Message):
    """Host -> QEMU: a payload for the partition (1..4048 bytes)."""
    TYPE: ClassVar[FrameType] = FrameType.PAYLOAD
    data: bytes

    def body(self) -> bytes:
        self._check_data(self.data)
        return bytes(self.data)

    @classmethod
    def _check_data(cls, body: bytes) -> None:
        if not isinstance(body, (bytes, bytearray)):
            raise ProtocolError(ErrorCode.BAD_VALUE,
                                f"{cls.TYPE.name}: payload must be bytes")
        if not 1 <= len(body) <= MAX_PAYLOAD:
            raise ProtocolError(ErrorCode.BAD_LENGTH,
                                f"{cls.TYPE.name}: payload of {len(body)} "
                                f"bytes, must be 1 to {MAX_PAYLOAD}")

    @classmethod
    def parse(cls, body: bytes) -> "Payload":
        cls._check_data(body)
        return cls(bytes(body))


@dataclass(frozen=True)
class OutPayload(Payload):
    """QEMU -> host: the partition's payload (ibm,send-hvpipe-msg)."""
    TYPE: ClassVar[FrameType] = FrameType.OUT_PAYLOAD


@dataclass(frozen=True)
class Nop(Message):
    """Host -> QEMU: answered OK once everything sent before is handled."""
    TYPE: ClassVar[FrameType] = FrameType.NOP


@dataclass(frozen=True)
class FaultRtas(Message):
    """Host -> QEMU: the next ``count`` calls of ``function`` answer ``status``."""
    TYPE: ClassVar[FrameType] = FrameType.FAULT_RTAS
    LAYOUT: ClassVar[tuple] = (("function", "B", set(RtasFunction)),
                               ("count", "B", None), (None, "H", None),
                               ("status", "i", None))
    function: int
    count: int
    status: int


@dataclass(frozen=True)
class DelayEvents(Message):
    """Host -> QEMU: raise every genuine event ``ms`` (virtual clock) later."""
    TYPE: ClassVar[FrameType] = FrameType.DELAY_EVENTS
    LAYOUT: ClassVar[tuple] = (("ms", "I", None),)
    ms: int


@dataclass(frozen=True)
class SpuriousEvent(Message):
    """Host -> QEMU: raise an event log for any source ID and event type."""
    TYPE: ClassVar[FrameType] = FrameType.SPURIOUS_EVENT
    LAYOUT: ClassVar[tuple] = (("srcid", "I", None), ("event_type", "B", None),
                               (None, "B", None), (None, "H", None))
    srcid: int
    event_type: int


@dataclass(frozen=True)
class MalformedEvent(Message):
    """Host -> QEMU: a malformed event log (now, or the next genuine one)."""
    TYPE: ClassVar[FrameType] = FrameType.MALFORMED_EVENT
    LAYOUT: ClassVar[tuple] = (("kind", "B", set(MalformedKind)),
                               ("log_type", "B", None), ("next", "B", BOOL),
                               (None, "B", None), ("srcid", "I", None))
    kind: int
    log_type: int = 0
    next: bool = False
    srcid: int = 0


@dataclass(frozen=True)
class DropConnection(Message):
    """Host -> QEMU: QEMU closes this connection at ``moment``."""
    TYPE: ClassVar[FrameType] = FrameType.DROP_CONNECTION
    LAYOUT: ClassVar[tuple] = (("moment", "B", set(DropMoment)),
                               (None, "B", None), (None, "H", None),
                               ("arg", "I", None))
    moment: int
    arg: int = 0


@dataclass(frozen=True)
class ClearFaults(Message):
    """Host -> QEMU: cancel every fault injection."""
    TYPE: ClassVar[FrameType] = FrameType.CLEAR_FAULTS


@dataclass(frozen=True)
class Hello(Message):
    """QEMU -> host, on every connect (tag 0)."""
    TYPE: ClassVar[FrameType] = FrameType.HELLO
    LAYOUT: ClassVar[tuple] = (("srcid", "I", None),
                               ("max_payload", "H", None),
                               ("enabled", "B", BOOL),
                               ("slot_busy", "B", BOOL))
    srcid: int
    max_payload: int = MAX_PAYLOAD
    enabled: bool = False
    slot_busy: bool = False


@dataclass(frozen=True)
class Ack(Message):
    """QEMU -> host: the partition received the payload with this tag."""
    TYPE: ClassVar[FrameType] = FrameType.ACK


@dataclass(frozen=True)
class Dropped(Message):
    """QEMU -> host: the payload with this tag will never be received."""
    TYPE: ClassVar[FrameType] = FrameType.DROPPED
    LAYOUT: ClassVar[tuple] = (("reason", "I", set(DropReason)),)
    reason: int


@dataclass(frozen=True)
class Ok(Message):
    """QEMU -> host: the control frame with this tag was done."""
    TYPE: ClassVar[FrameType] = FrameType.OK


@dataclass(frozen=True)
class Error(Message):
    """QEMU -> host: the frame with this tag was refused (a fixed part, as
    LAYOUT, then up to 200 bytes of ASCII text)."""
    TYPE: ClassVar[FrameType] = FrameType.ERROR
    LAYOUT: ClassVar[tuple] = (("code", "B", set(ErrorCode)),
                               ("frame_type", "B", None), (None, "H", None))
    code: int
    frame_type: int
    text: str = ""

    def body(self) -> bytes:
        _check(self.text.isascii() and len(self.text) <= MAX_ERROR_TEXT,
               ErrorCode.BAD_VALUE,
               f"ERROR: text must be ASCII, at most {MAX_ERROR_TEXT} bytes")
        return super().body() + self.text.encode("ascii")

    @classmethod
    def parse(cls, body: bytes) -> "Error":
        _check(4 <= len(body) <= 4 + MAX_ERROR_TEXT, ErrorCode.BAD_LENGTH,
               f"ERROR: body of {len(body)} bytes, must be 4 to "
               f"{4 + MAX_ERROR_TEXT}")
        head = super().parse(body[:4])
        text = bytes(body[4:])
        _check(text.isascii() and b"\0" not in text, ErrorCode.BAD_VALUE,
               "ERROR: text is not ASCII")
        return cls(head.code, head.frame_type, text.decode("ascii"))


@dataclass(frozen=True)
class State(Message):
    """QEMU -> host: system parameter 64 changed, or a loaded state runs;
    slot_busy: a payload this connection did not send takes the slot."""
    TYPE: ClassVar[FrameType] = FrameType.STATE
    LAYOUT: ClassVar[tuple] = (("enabled", "B", BOOL),
                               ("slot_busy", "B", BOOL), (None, "H", None))
    enabled: bool
    slot_busy: bool = False


@dataclass(frozen=True)
class Frame:
    """A decoded frame: its tag and its typed message."""
    tag: int
    msg: Message

    @property
    def type(self) -> FrameType:
        return self.msg.TYPE


# Codec

def encode_raw(ftype: int, tag: int, body: bytes = b"", *, magic: int = MAGIC,
               version: int = VERSION, length: Optional[int] = None) -> bytes:
    """Build a frame without any check (to feed QEMU malformed frames)."""
    n = len(body) if length is None else length
    return struct.pack(">HBBII", magic & 0xffff, version & 0xff, ftype & 0xff,
                       tag & 0xffffffff, n & 0xffffffff) + bytes(body)


def encode(msg: Message, tag: int = 0) -> bytes:
    """Encode a valid frame; raises ProtocolError for out-of-range fields."""
    _check_u(tag, 32, "tag")
    body = msg.body()
    return encode_raw(msg.TYPE, tag, body)


def decode_header(header: bytes) -> tuple[int, int, int]:
    """Check a 12-byte header; returns (type, tag, body length)."""
    if len(header) != HEADER_SIZE:
        raise ProtocolError(ErrorCode.BAD_HEADER, f"header of {len(header)} "
                            f"bytes, must be {HEADER_SIZE}")
    magic, version, ftype, tag, length = _HDR.unpack(header)
    if magic != MAGIC:
        raise ProtocolError(ErrorCode.BAD_HEADER, f"bad magic 0x{magic:04x}, "
                            f"must be 0x{MAGIC:04x}")
    if version != VERSION:
        raise ProtocolError(ErrorCode.BAD_HEADER, "bad protocol version "
                            f"{version}, must be {VERSION}")
    if length > MAX_BODY:
        raise ProtocolError(ErrorCode.TOO_LONG,
                            f"body of {length} bytes, at most {MAX_BODY}")
    return ftype, tag, length


def _parse_body(ftype: int, body: bytes) -> Message:
    cls = Message._registry.get(ftype)
    if cls is None:
        raise ProtocolError(ErrorCode.BAD_TYPE,
                            f"unknown frame type 0x{ftype:02x}")
    return cls.parse(bytes(body))


def decode(data: bytes) -> Frame:
    """Decode exactly one whole frame (any direction)."""
    ftype, tag, length = decode_header(bytes(data[:HEADER_SIZE]))
    _check(len(data) == HEADER_SIZE + length, ErrorCode.BAD_LENGTH,
           f"frame of {len(data)} bytes, header says {HEADER_SIZE + length}")
    return Frame(tag, _parse_body(ftype, data[HEADER_SIZE:]))


class Decoder:
    """Incremental decoder of a byte stream: feed() bytes, then next().

    next() returns the next whole frame, or None until more bytes come.  A
    frame with a bad body raises ProtocolError after it was consumed, so
    decoding can go on with the next frame.  A bad header breaks the
    decoder for good (framing is lost, as in QEMU): next() raises again.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._broken: Optional[ProtocolError] = None

    @property
    def pending(self) -> int:
        """Bytes held back (an incomplete frame)."""
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next(self) -> Optional[Frame]:
        if self._broken:
            raise self._broken
        if len(self._buf) < HEADER_SIZE:
            return None
        try:
            ftype, tag, length = decode_header(bytes(self._buf[:HEADER_SIZE]))
        except ProtocolError as e:
            self._broken = e
            raise
        if len(self._buf) < HEADER_SIZE + length:
            return None
        body = bytes(self._buf[HEADER_SIZE:HEADER_SIZE + length])
        del self._buf[:HEADER_SIZE + length]
        return Frame(tag, _parse_body(ftype, body))

    def frames(self, data: bytes = b"") -> list[Frame]:
        """feed(data), then every whole frame (errors raise, see next())."""
        self.feed(data)
        out: list[Frame] = []
        while (f := self.next()) is not None:
            out.append(f)
        return out


# Faults as the lab spells them (lab/hmc-sim --inject, the conductor's FAULT)

FAULTS = """\
  rtas-send:STATUS[:COUNT]     next COUNT (1) ibm,send-hvpipe-msg calls
  rtas-receive:STATUS[:COUNT]  ... ibm,receive-hvpipe-msg calls answer STATUS
                               (-2, 9900..9905, -1, -3, -4, -5, 42...);
                               COUNT 0 cancels
  delay:MS                     raise events MS ms (virtual clock) late
  spurious:SRCID[:TYPE]        event log for any SRCID; TYPE payload, lost
                               or 0..255 (default payload)
  malformed:KIND:next|SRCID[:LOGTYPE]
                               KIND wrong-type, no-pe, truncated, short-pe;
                               'next' malforms the next genuine event
  drop:now | drop:after:MS | drop:on-send | drop:on-event | drop:on-receive
                               QEMU closes this source's connection then
  clear                        cancel every fault
"""


def _number(text: str, what: str, lo: int, hi: int) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not lo <= value <= hi:
        raise ValueError(f"{what} {value} is out of range ({lo} to {hi})")
    return value


def parse_fault(spec: str) -> Message:
    """The control frame of a fault spelled as in FAULTS; ValueError with
    the reason if it is not one."""
    kind, *args = spec.split(":")
    u32 = (0, 0xffffffff)

    def nargs(lo: int, hi: int) -> None:
        if not lo <= len(args) <= hi:
            raise ValueError("wrong number of fields")

    def name(enum_cls: type, text: str, what: str) -> int:
        try:
            return int(enum_cls[text.upper().replace("-", "_")])
        except KeyError:
            raise ValueError(f"{what} must be one of " + ", ".join(
                m.name.lower().replace("_", "-") for m in enum_cls)) from None

    if kind.startswith("rtas-"):
        nargs(1, 2)
        fn = name(RtasFunction, kind[5:], "rtas-FUNCTION")
        status = _number(args[0], "status", -(1 << 31), (1 << 31) - 1)
        count = _number(args[1], "count", 0, 255) if len(args) > 1 else 1
        return FaultRtas(fn, count, status)
    if kind == "delay":
        nargs(1, 1)
        return DelayEvents(_number(args[0], "ms", *u32))
    if kind == "spurious":
        nargs(1, 2)
        srcid = _number(args[0], "source ID", *u32)
        ev = int(EventType.PAYLOAD)
        if len(args) > 1:
            ev = int(EventType[args[1].upper()]) if args[1].upper() in \
                EventType.__members__ else _number(args[1], "event type",
                                                   0, 255)
        return SpuriousEvent(srcid, ev)
    if kind == "malformed":
        nargs(2, 3)
        shape = name(MalformedKind, args[0], "kind")
        nxt = args[1] == "next"
        srcid = 0 if nxt else _number(args[1], "source ID", *u32)
        log_type = _number(args[2], "log type", 0, 255) if len(args) > 2 \
            else 0
        return MalformedEvent(shape, log_type, nxt, srcid)
    if kind == "drop":
        nargs(1, 2)
        moment = name(DropMoment, "after-ms" if args[0] == "after" else
                      args[0], "moment")
        if moment == DropMoment.AFTER_MS and len(args) != 2:
            raise ValueError("'after' needs a time (after:MS)")
        if moment != DropMoment.AFTER_MS and len(args) != 1:
            raise ValueError("only 'after' takes a time (after:MS)")
        ms = _number(args[1], "ms", *u32) if len(args) == 2 else 0
        return DropConnection(moment, ms)
    if kind == "clear":
        nargs(0, 0)
        return ClearFaults()
    raise ValueError(f"unknown fault {kind!r} (rtas-send, rtas-receive, "
                     "delay, spurious, malformed, drop, clear)")


# Source IDs and addresses

def check_srcid(srcid: int) -> int:
    """Return srcid if it is an HMC source ID 0x0200QQQQ, else ValueError."""
    if not 0 <= srcid <= 0xffffffff:
        raise ValueError(f"source ID {srcid:#x} is not a 32-bit value")
    if srcid & 0xff000000 != HMC_TYPE:
        raise ValueError(f"source ID 0x{srcid:08x} is not of the HMC type "
                         "(must be 0x02RRQQQQ)")
    if srcid & 0x00ff0000:
        raise ValueError(f"source ID 0x{srcid:08x} has a non-zero reserved "
                         "byte (must be 0x0200QQQQ)")
    return srcid


def parse_srcid(text: str) -> int:
    """Parse '0x02000001' (or decimal) into a checked HMC source ID."""
    try:
        value = int(text, 0)
    except ValueError:
        raise ValueError(f"source ID {text!r} is not a number "
                         "(expected e.g. 0x02000001)") from None
    return check_srcid(value)


_LOOPBACK = ("localhost", "::1", "[::1]")


def parse_address(text: str) -> tuple[bool, str, Union[str, tuple[str, int]]]:
    """Parse a source address into (listen, 'unix'|'tcp', path|(host, port)).

    Forms: ``unix:PATH``, ``tcp:HOST:PORT`` (connect to QEMU's server) and
    the same prefixed with ``listen:`` (QEMU connects to us).  TCP hosts
    must be loopback addresses.
    """
    listen = text.startswith("listen:")
    rest = text[len("listen:"):] if listen else text
    kind, sep, where = rest.partition(":")
    if not sep or kind not in ("unix", "tcp") or not where:
        raise ValueError(f"address {text!r}: expected unix:PATH or "
                         "tcp:HOST:PORT, optionally prefixed with listen:")
    if kind == "unix":
        if len(os.fsencode(where)) >= 108:
            raise ValueError(f"address {text!r}: unix socket path too long")
        return listen, kind, where
    host, sep, port_s = where.rpartition(":")
    if not sep or not host or not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise ValueError(f"address {text!r}: expected tcp:HOST:PORT")
    if host not in _LOOPBACK and not host.startswith("127."):
        raise ValueError(f"address {text!r}: only loopback hosts are allowed")
    return listen, kind, (host.strip("[]"), int(port_s))


# Test payloads

@functools.lru_cache(maxsize=256)
def pattern(length: int, seed: int) -> bytes:
    """The lab's test payload: byte i is (seed * 131 + i) % 251.  The
    guest's tests compute it too (lab_pattern() in the kselftest's lab.c)
    to check what the conductor's SENDPAT sent; seeds 0 to 250 give
    distinct payloads.  Made once per length and seed (the benchmarks
    call it between timed round trips)."""
    return bytes((seed * 131 + i) % 251 for i in range(length))


def parse_sizes(text: str) -> list[int]:
    """Payload sizes as the benchmarks take them ("64,4048"): each 1 to
    MAX_PAYLOAD, none twice; ValueError says what is wrong."""
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise ValueError("expected numbers such as 64,4048") from None
    bad = [s for s in sizes if not 1 <= s <= MAX_PAYLOAD]
    if bad:
        raise ValueError(f"{bad[0]} is not 1 to {MAX_PAYLOAD}")
    if len(set(sizes)) != len(sizes):
        raise ValueError("a size twice")
    return sizes


# Source client

def _error_text(e: BaseException) -> str:
    return e.strerror if isinstance(e, OSError) and e.strerror else str(e) or \
        type(e).__name__


def _unlink_socket(path: str) -> None:
    """Remove a stale unix socket at path before listening there; anything
    else at path stays, and listening fails (OSError)."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


_EXPIRED = object()     # what an expired recv() timer settles its future with


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(_EXPIRED)


class Source:
    """One source (HMC) connection to QEMU's chardev.

    A reader task decodes every frame.  ``recv()`` takes the oldest frame
    matching its filter and leaves the others in an inbox, so a test can
    wait for an ACK while a partition PAYLOAD sits in the inbox.  A frame
    that a waiting ``recv()`` matches goes straight to it (the first waiter
    whose filter matches): no other waiter wakes up for it, which keeps a
    round trip to a few turns of the event loop.  Tags of frames we send
    come from a per-connection counter starting at 1.
    """

    def __init__(self, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, name: str = "source"):
        self.name = name
        self.hello: Optional[Hello] = None
        self.enabled: Optional[bool] = None     # last HELLO/STATE value
        self.protocol_error: Optional[ProtocolError] = None
        self._reader = reader
        self._writer = writer
        # Frames nobody waited for, each with its arrival number (order).
        self._inbox: list[tuple[int, Frame]] = []
        self._arrived = 0
        # recv() calls waiting: (filter, future of the frame), oldest first.
        self._waiters: list[tuple[Callable[[Frame], bool],
                                  asyncio.Future]] = []
        # wait_state() calls waiting for the next HELLO/STATE or the close.
        self._state_waiters: list[asyncio.Future] = []
        self._closed = False
        self._tag = 0
        self._task = asyncio.ensure_future(self._read_loop())

    # Connection

    @classmethod
    async def connect(cls, address: str, *, timeout: float = 5.0,
                      hello: bool = True, retry: float = 0.0) -> "Source":
        """Connect to (or, with ``listen:``, wait for) QEMU at ``address``.

        With ``hello`` the HELLO frame is awaited and stored in ``.hello``.
        ``retry`` seconds: keep retrying a refused connection that long
        (QEMU's server socket comes back a moment after a disconnect).
        Raises ConnectionClosed (refused, missing socket) or HmcTimeout.
        """
        listen, kind, where = parse_address(address)
        if listen:
            return await cls._listen(kind, where, address, timeout, hello)
        deadline = time.monotonic() + max(retry, 0.0)
        while True:
            try:
                if kind == "unix":
                    coro = asyncio.open_unix_connection(where)
                else:
                    coro = asyncio.open_connection(*where)
                reader, writer = await asyncio.wait_for(coro, timeout)
                break
            except asyncio.TimeoutError:
                raise HmcTimeout(f"{address}: no connection within "
                                 f"{timeout:g} s") from None
            except OSError as e:
                if time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                    continue
                raise ConnectionClosed(f"cannot connect to {address}: "
                                       f"{_error_text(e)}") from None
        src = cls(reader, writer, address)
        if hello:
            await src._await_hello(timeout)
        return src

    @classmethod
    async def _listen(cls, kind: str, where, address: str, timeout: float,
                      hello: bool) -> "Source":
        fut: asyncio.Future = asyncio.get_running_loop().create_future()

        def accept(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            if fut.done():
                w.close()
            else:
                fut.set_result((r, w))
        try:
            if kind == "unix":
                _unlink_socket(where)
                server = await asyncio.start_unix_server(accept, where)
            else:
                server = await asyncio.start_server(accept, *where)
        except OSError as e:
            raise ConnectionClosed(f"cannot listen on {address}: "
                                   f"{_error_text(e)}") from None
        try:
            reader, writer = await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise HmcTimeout(f"{address}: QEMU did not connect within "
                             f"{timeout:g} s") from None
        finally:
            server.close()
        src = cls(reader, writer, address)
        if hello:
            await src._await_hello(timeout)
        return src

    @classmethod
    async def listen(cls, address: str, **kw) -> "Source":
        """Wait for QEMU to connect to ``address`` (unix:PATH, tcp:H:P)."""
        if not address.startswith("listen:"):
            address = "listen:" + address
        return await cls.connect(address, **kw)

    async def _await_hello(self, timeout: float) -> None:
        f = await self.recv(FrameType.HELLO, timeout=timeout)
        assert isinstance(f.msg, Hello)
        self.hello = f.msg

    @property
    def srcid(self) -> Optional[int]:
        """The source ID announced by HELLO."""
        return self.hello.srcid if self.hello else None

    @property
    def closed(self) -> bool:
        """True once the connection is closed (by either side)."""
        return self._closed

    async def close(self) -> None:
        """Close the connection (QEMU sees the source disconnect)."""
        self._task.cancel()
        try:
            await self._task
        except (asyncio.CancelledError, Exception):
            pass
        self._closed = True
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (OSError, ConnectionError):
            pass

    async def __aenter__(self) -> "Source":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _read_loop(self) -> None:
        dec = Decoder()
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                dec.feed(data)
                fatal = False
                while True:
                    try:
                        f = dec.next()
                    except ProtocolError as e:
                        self.protocol_error = e
                        if e.code in (ErrorCode.BAD_HEADER, ErrorCode.TOO_LONG):
                            fatal = True
                            break
                        continue
                    if f is None:
                        break
                    self._deliver(f)
                if fatal:
                    break
        except (OSError, ConnectionError):
            pass
        finally:
            self._closed = True
            self._wake_state()
            for _, fut in self._waiters:
                if not fut.done():
                    fut.set_result(None)
            self._waiters.clear()

    def _deliver(self, f: Frame) -> None:
        """Hand a received frame to the first recv() waiting for it, else
        keep it in the inbox."""
        self._arrived += 1
        if isinstance(f.msg, (Hello, State)):
            self.enabled = f.msg.enabled
            self._wake_state()
        for i, (match, fut) in enumerate(self._waiters):
            if not fut.done() and match(f):
                del self._waiters[i]
                fut.set_result((self._arrived, f))
                return
        self._inbox.append((self._arrived, f))

    def _wake_state(self) -> None:
        for fut in self._state_waiters:
            if not fut.done():
                fut.set_result(None)
        self._state_waiters.clear()

    # Sending

    def next_tag(self) -> int:
        """A fresh tag for a frame we send."""
        self._tag = (self._tag + 1) & 0xffffffff or 1
        return self._tag

    async def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (valid frames or not)."""
        if self._closed:
            raise ConnectionClosed(f"{self.name}: connection closed")
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (OSError, ConnectionError) as e:
            self._closed = True
            raise ConnectionClosed(f"{self.name}: connection closed: "
                                   f"{_error_text(e)}") from None

    def post(self, msg: Message) -> int:
        """Write one frame without waiting for the socket to drain (for a
        caller that cannot wait); returns its tag.  A closed connection
        shows in the reader (closed, recv) as for any frame."""
        tag = self.next_tag()
        if not self._closed:
            self._writer.write(encode(msg, tag))
        return tag

    async def send(self, msg: Message, tag: Optional[int] = None) -> int:
        """Encode and send one frame; returns its tag."""
        tag = self.next_tag() if tag is None else tag
        await self.send_raw(encode(msg, tag))
        return tag

    async def send_payload(self, data: bytes, tag: Optional[int] = None) -> int:
        """Queue a payload for the partition; returns its tag (see wait_ack)."""
        return await self.send(Payload(bytes(data)), tag)

    # Receiving

    async def recv(self, types: Union[None, int, Iterable[int]] = None,
                   tag: Optional[int] = None, *,
                   timeout: Optional[float] = 5.0) -> Frame:
        """Take the oldest received frame of ``types`` (and ``tag``).

        Frames that do not match stay in the inbox.  Raises HmcTimeout after
        ``timeout`` seconds (None: no limit) and ConnectionClosed when the
        connection is closed with no matching frame left.
        """
        if isinstance(types, int):
            want: Optional[set] = {int(types)}
        else:
            want = None if types is None else {int(t) for t in types}

        def match(f: Frame) -> bool:
            return (want is None or int(f.type) in want) and \
                (tag is None or f.tag == tag)

        for i, (_, f) in enumerate(self._inbox):
            if match(f):
                del self._inbox[i]
                return f
        if self._closed:
            raise self._closed_by_qemu()
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._waiters.append((match, fut))
        # A timer that settles the future, rather than asyncio.timeout():
        # this is every round trip's path, and lab/bench times it.
        timer = None if timeout is None else \
            loop.call_later(timeout, _expire, fut)
        try:
            got = await fut
        except asyncio.CancelledError:
            # A frame handed over as the caller was cancelled goes back,
            # in its place, for the next recv().
            if fut.done() and not fut.cancelled() and fut.result():
                n, f = fut.result()
                bisect.insort(self._inbox, (n, f), key=lambda x: x[0])
            raise
        finally:
            if timer:
                timer.cancel()
            if not fut.done() or fut.cancelled() or fut.result() is _EXPIRED:
                self._waiters = [w for w in self._waiters
                                 if w[1] is not fut]
        if got is _EXPIRED:
            what = "frame" if want is None else "/".join(
                _name(FrameType, t) for t in sorted(want))
            raise HmcTimeout(f"{self.name}: no {what} within {timeout:g} s")
        if got is None:             # the connection closed meanwhile
            raise self._closed_by_qemu()
        return got[1]

    def _closed_by_qemu(self) -> ConnectionClosed:
        why = f" ({self.protocol_error})" if self.protocol_error else ""
        return ConnectionClosed(f"{self.name}: connection closed by QEMU{why}")

    def inbox(self) -> list[Frame]:
        """The frames received and not taken yet (a copy)."""
        return [f for _, f in self._inbox]

    async def wait_payload(self, timeout: Optional[float] = 5.0) -> bytes:
        """The next payload the partition sent (ibm,send-hvpipe-msg)."""
        f = await self.recv(FrameType.OUT_PAYLOAD, timeout=timeout)
        assert isinstance(f.msg, OutPayload)
        return f.msg.data

    async def wait_reply(self, tag: int, ok: int = FrameType.OK,
                         timeout: Optional[float] = 5.0) -> Frame:
        """Wait for the answer to our frame ``tag``: ``ok`` type, else raise.

        ERROR raises ModelError, DROPPED raises PayloadDropped.
        """
        f = await self.recv({int(ok), FrameType.ERROR, FrameType.DROPPED},
                            tag, timeout=timeout)
        if isinstance(f.msg, Error) and ok != FrameType.ERROR:
            raise ModelError(f.msg, tag)
        if isinstance(f.msg, Dropped) and ok != FrameType.DROPPED:
            raise PayloadDropped(f.msg.reason, tag)
        return f

    async def wait_ack(self, tag: int, timeout: Optional[float] = 5.0) -> None:
        """Wait until the partition received payload ``tag``.

        Raises ModelError (refused: BUSY, DISABLED, ...), PayloadDropped,
        HmcTimeout or ConnectionClosed.
        """
        await self.wait_reply(tag, FrameType.ACK, timeout)

    async def wait_state(self, enabled: bool = True,
                         timeout: Optional[float] = 5.0) -> None:
        """Return once system parameter 64 is ``enabled`` (last HELLO or
        STATE received; the STATE frames stay in the inbox)."""
        try:
            async with asyncio.timeout(timeout):
                while self.enabled != enabled:
                    if self._closed:
                        raise ConnectionClosed(
                            f"{self.name}: connection closed by QEMU")
                    fut = asyncio.get_running_loop().create_future()
                    self._state_waiters.append(fut)
                    await fut
        except TimeoutError:
            raise HmcTimeout(f"{self.name}: system parameter 64 not "
                             f"{int(enabled)} within {timeout:g} s") from None

    # Control frames (fault injection); each waits for OK

    async def control(self, msg: Message,
                      timeout: Optional[float] = 5.0) -> None:
        """Send a control frame and wait for its OK (ModelError on ERROR)."""
        tag = await self.send(msg)
        await self.wait_reply(tag, FrameType.OK, timeout)

    async def nop(self, timeout: Optional[float] = 5.0) -> None:
        """Round trip: everything sent before has been handled by QEMU."""
        await self.control(Nop(), timeout)

    async def fault(self, fault: Union[str, Message]) -> None:
        """Inject a fault, spelled as in FAULTS (``rtas-receive:-2:3``,
        ``drop:on-event``, ``clear``) or given as its control frame, and
        wait for QEMU's OK."""
        await self.control(parse_fault(fault) if isinstance(fault, str)
                           else fault)


# The partition side, through qtest

class QTest:
    """Client of QEMU's qtest text protocol (one command per line)."""

    def __init__(self, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter):
        self._reader = reader
        self._writer = writer
        self._lock = asyncio.Lock()

    async def cmds(self, *lines: str) -> list[str]:
        """Send several commands at once; returns the text after each OK.

        Pipelining saves round trips: qtest handles lines in order.
        """
        async with self._lock:
            self._writer.write("".join(l + "\n" for l in lines).encode())
            out: list[str] = []
            try:
                await self._writer.drain()
                while len(out) < len(lines):
                    raw = await self._reader.readline()
                    if not raw:
                        raise QTestError("qtest: QEMU closed the connection")
                    line = raw.decode().rstrip("\n")
                    if line.startswith("IRQ "):
                        continue        # asynchronous, with irq_intercept
                    word, _, rest = line.partition(" ")
                    if word != "OK":
                        raise QTestError(f"qtest: {lines[len(out)]!r}: {line}")
                    out.append(rest)
            except (OSError, ConnectionError) as e:
                raise QTestError(f"qtest: {_error_text(e)}") from None
            return out

    async def cmd(self, line: str) -> str:
        return (await self.cmds(line))[0]

    async def write(self, addr: int, data: bytes) -> None:
        if data:
            await self.cmd(f"b64write {addr:#x} {len(data)} "
                           f"{base64.b64encode(data).decode()}")

    async def read(self, addr: int, size: int) -> bytes:
        return base64.b64decode(await self.cmd(f"b64read {addr:#x} {size}"))

    async def writel(self, addr: int, value: int) -> None:
        await self.cmd(f"writel {addr:#x} {value & 0xffffffff:#x}")

    async def readl(self, addr: int) -> int:
        return int(await self.cmd(f"readl {addr:#x}"), 0)

    async def writeq(self, addr: int, value: int) -> None:
        await self.cmd(f"writeq {addr:#x} {value & (2**64 - 1):#x}")

    async def clock_step(self, ns: Optional[int] = None) -> int:
        """Advance QEMU_CLOCK_VIRTUAL by ns (None: to the next deadline)."""
        return int(await self.cmd("clock_step" + (f" {ns}" if ns else "")))

    async def rtas(self, name: str, args: Sequence[int], nret: int,
                   args_addr: int, rets_addr: int, *,
                   before: Sequence[str] = (),
                   after: Sequence[str] = ()) -> tuple[list[int], list[str]]:
        """Call RTAS ``name`` in one round trip.

        ``before``/``after``: more qtest commands sent in the same batch
        (e.g. a b64write of the buffer, a b64read of the result).  Returns
        the nret outputs as signed s32 and the answers to ``after``.
        """
        lines = list(before)
        lines += [f"writel {args_addr + 4 * i:#x} {a & 0xffffffff:#x}"
                  for i, a in enumerate(args)]
        lines.append(f"rtas {name} {len(args)} {args_addr:#x} {nret} "
                     f"{rets_addr:#x}")
        at = len(lines) - 1
        if nret:
            lines.append(f"b64read {rets_addr:#x} {4 * nret}")
        lines += list(after)
        res = await self.cmds(*lines)
        if int(res[at]) != 0:
            raise QTestError(f"qtest: no RTAS function {name!r}")
        rets = list(struct.unpack(f">{nret}i", base64.b64decode(res[at + 1]))) \
            if nret else []
        return rets, res[len(res) - len(after):] if after else []


@dataclass(frozen=True)
class Event:
    """An hvpipe event log from check-exception."""
    srcid: int
    event_type: int


def parse_event_log(log: bytes) -> Event:
    """Strictly parse an hvpipe RTAS error log (type 0xE6, "PE" section).

    Raises ValueError describing the first thing wrong with it.
    """
    if len(log) < 8:
        raise ValueError(f"log of {len(log)} bytes, shorter than its header")
    summary, ext_len = struct.unpack(">II", log[:8])
    if summary & 0xff != 0xE6:
        raise ValueError(f"log type 0x{summary & 0xff:02x}, not 0xE6")
    if not summary & 0x00040000:
        raise ValueError("no extended log")
    end = 8 + ext_len
    if end > len(log):
        raise ValueError(f"extended length {ext_len} beyond the buffer")
    # v6 header (16 bytes), then sections: u16 id, u16 length, ...
    pos = 8 + 16
    while pos + 4 <= end:
        sid, slen = struct.unpack(">HH", log[pos:pos + 4])
        if slen < 8 or pos + slen > end:
            raise ValueError(f"section 0x{sid:04x} of length {slen} does not "
                             "fit the log")
        if sid == 0x5045:
            if slen < 8 + 5:
                raise ValueError(f"\"PE\" section of length {slen} has no data")
            srcid, ev = struct.unpack(">IB", log[pos + 8:pos + 13])
            return Event(srcid, ev)
        pos += slen
    raise ValueError("no \"PE\" section")


class Partition:
    """A guest without a kernel: hvpipe RTAS calls made through qtest.

    Buffers sit at fixed addresses of the RMA (0x100000 up).
    """

    ARGS = 0x100000
    RETS = 0x100100
    SYSPARM = 0x100200
    SEND = 0x101000     # work area: buffer list, payload right after it
    RECV = 0x102000     # work area for receive
    LOG = 0x103000
    LOG_MAX = 2048
    NO_ERRORS_FOUND = 1
    EVENT_MASK = 0x04000000

    def __init__(self, qtest: QTest):
        self.qtest = qtest

    async def rtas(self, name: str, args: Sequence[int], nret: int,
                   **kw) -> list[int]:
        """Any RTAS call with its arguments at ARGS; the nret outputs."""
        rets, _ = await self.qtest.rtas(name, args, nret, self.ARGS,
                                        self.RETS, **kw)
        return rets

    async def set_sysparm64(self, value: int) -> int:
        """ibm,set-system-parameter 64 to ``value``; returns the status."""
        data = base64.b64encode(struct.pack(">HB", 1, value)).decode()
        return (await self.rtas("ibm,set-system-parameter",
                                [64, self.SYSPARM], 1, before=[
                                    f"b64write {self.SYSPARM:#x} 3 {data}"]))[0]

    async def get_sysparm64(self) -> tuple[int, int]:
        """ibm,get-system-parameter 64; returns (status, value or -1)."""
        rets, after = await self.qtest.rtas(
            "ibm,get-system-parameter", [64, self.SYSPARM, 16], 1, self.ARGS,
            self.RETS, after=[f"b64read {self.SYSPARM:#x} 3"])
        raw = base64.b64decode(after[0])
        return rets[0], raw[2] if rets[0] == 0 else -1

    def payload_commands(self, data: bytes) -> list[str]:
        """qtest commands writing a one-pair buffer list and ``data`` into
        the send work area (list at SEND, payload right after it)."""
        block = struct.pack(">QQQ", 24, self.SEND + 24, len(data)) + bytes(data)
        return [f"b64write {self.SEND:#x} {len(block)} "
                f"{base64.b64encode(block).decode()}"]

    async def send(self, srcid: int, data: Optional[bytes] = None) -> int:
        """ibm,send-hvpipe-msg of ``data`` to ``srcid``; returns the status.

        ``data`` None sends what the work area already holds.
        """
        before = self.payload_commands(data) if data is not None else []
        return (await self.rtas("ibm,send-hvpipe-msg", [srcid, self.SEND], 1,
                                before=before))[0]

    async def receive(self, size: int = 4096,
                      prefetch: int = 0) -> tuple[int, int, bytes]:
        """ibm,receive-hvpipe-msg; returns (status, source ID, payload).

        ``prefetch`` bytes of the buffer are read in the same round trip
        (a payload no longer than that needs no second one).
        """
        after = [f"b64read {self.RECV:#x} {prefetch}"] if prefetch else []
        rets, res = await self.qtest.rtas("ibm,receive-hvpipe-msg",
                                          [self.RECV, size], 3, self.ARGS,
                                          self.RETS, after=after)
        status, srcid, n = rets
        data = b""
        if status == 0 and n > 0:
            if n <= prefetch:
                data = base64.b64decode(res[0])[:n]
            else:
                data = await self.qtest.read(self.RECV, n)
        return status, srcid & 0xffffffff, data

    async def check_exception(self, length: int = LOG_MAX) -> tuple[int, bytes]:
        """check-exception with the hvpipe mask; (status, log bytes)."""
        first = min(length, 128)
        rets, res = await self.qtest.rtas(
            "check-exception", [0x500, 0, self.EVENT_MASK, 1, self.LOG, length],
            1, self.ARGS, self.RETS, after=[f"b64read {self.LOG:#x} {first}"])
        if rets[0] != 0:
            return rets[0], b""
        log = base64.b64decode(res[0])
        if len(log) < 8:
            return rets[0], log
        total = min(8 + struct.unpack(">I", log[4:8])[0], length)
        if total > first:
            log = await self.qtest.read(self.LOG, total)
        return rets[0], log[:total]

    async def poll_event(self) -> Optional[Event]:
        """One check-exception: the parsed event, or None if there is none.

        A log that does not parse raises ValueError (see parse_event_log).
        """
        status, log = await self.check_exception()
        if status == self.NO_ERRORS_FOUND:
            return None
        if status != 0:
            raise QTestError(f"check-exception answered {status}")
        return parse_event_log(log)

    async def wait_event(self, timeout: float = 5.0,
                         interval: float = 0.002) -> Event:
        """Poll check-exception until an hvpipe event comes (HmcTimeout)."""
        deadline = time.monotonic() + timeout
        while True:
            ev = await self.poll_event()
            if ev is not None:
                return ev
            if time.monotonic() > deadline:
                raise HmcTimeout(f"no hvpipe event within {timeout:g} s")
            await asyncio.sleep(interval)


def die_with_parent(sig: int = signal.SIGKILL):
    """A preexec_fn for subprocess and asyncio: the child gets sig when the
    process that started it exits, however it exits (Linux
    PR_SET_PDEATHSIG), so no QEMU outlives its runner."""
    parent = os.getpid()
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def child() -> None:
        # PR_SET_PDEATHSIG is 1.  A parent already gone is not signalled.
        if prctl(1, int(sig), 0, 0, 0) or os.getppid() != parent:
            os._exit(127)
    return child


def build_qemu(repo: Optional[Path] = None) -> Path:
    """Run lab/build-qemu (incremental; may wait for the lab lock) and
    return the qemu-system-ppc64 path.  Raises HmcError on failure."""
    repo = repo or Path(__file__).resolve().parents[2]
    try:
        p = subprocess.run([str(repo / "lab" / "build-qemu")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, check=False)
    except OSError as e:
        raise HmcError(f"lab/build-qemu: {_error_text(e)}") from None
    lines = p.stdout.strip().splitlines()
    if p.returncode or not lines:
        tail = "\n".join(p.stderr.strip().splitlines()[-5:])
        raise HmcError(f"lab/build-qemu failed ({p.returncode}):\n{tail}")
    binary = Path(lines[-1]) / "qemu-system-ppc64"
    if not os.access(binary, os.X_OK):
        raise HmcError(f"no QEMU binary at {binary}")
    return binary


class Machine:
    """A pseries QEMU with hvpipe under ``-accel qtest`` (no guest code).

    Every source is a unix socket server (``wait=off``) in ``workdir``;
    ``connect(srcid)`` returns a Source on it.  ``partition`` drives RTAS.
    """

    def __init__(self) -> None:
        self.proc: Optional[asyncio.subprocess.Process] = None
        self.qtest: QTest
        self.partition: Partition
        self.workdir = Path()
        self.paths: dict[int, str] = {}
        self.log_path = Path()
        self._tmp: Optional[tempfile.TemporaryDirectory] = None
        self._qtest_writer: Optional[asyncio.StreamWriter] = None

    @classmethod
    async def start(cls, qemu: Union[str, Path], srcids: Sequence[int], *,
                    workdir: Optional[Path] = None, memory: str = "512M",
                    extra: Sequence[str] = (), timeout: float = 20.0,
                    faults: bool = True) -> "Machine":
        """Start QEMU and connect qtest; raises HmcError if it fails.
        faults: the sources accept fault injection (x-fault-injection)."""
        m = cls()
        if workdir is None:
            m._tmp = tempfile.TemporaryDirectory(prefix="hvpipe-")
            workdir = Path(m._tmp.name)
        m.workdir = Path(workdir)
        m.log_path = m.workdir / "qemu.log"
        qsock = m.workdir / "qtest.sock"
        args = [str(qemu), "-machine", "pseries,hvpipe=on", "-m", memory,
                "-accel", "qtest", "-qtest", f"unix:{qsock}",
                "-qtest-log", "/dev/null",
                "-display", "none", "-nodefaults", "-monitor", "none",
                "-serial", "none"]
        for i, srcid in enumerate(srcids):
            check_srcid(srcid)
            path = str(m.workdir / f"src{i}.sock")
            m.paths[srcid] = path
            args += ["-chardev", f"socket,id=hmc{i},path={path},server=on,"
                     "wait=off", "-device",
                     f"spapr-hvpipe-source,srcid={srcid:#010x},chardev=hmc{i}"
                     + (",x-fault-injection=on" if faults else "")]
        args += list(extra)

        fut: asyncio.Future = asyncio.get_running_loop().create_future()

        def accept(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            if not fut.done():
                fut.set_result((r, w))
            else:
                w.close()
        server = await asyncio.start_unix_server(accept, str(qsock))
        try:
            with open(m.log_path, "wb") as log:
                m.proc = await asyncio.create_subprocess_exec(
                    *args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    preexec_fn=die_with_parent())
            died = asyncio.ensure_future(m.proc.wait())
            done, _ = await asyncio.wait({fut, died}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if fut not in done:
                died.cancel()
                await m.close()
                why = "exited" if died in done else "did not connect to qtest"
                raise HmcError(f"QEMU {why}: {m.log_tail()}")
            died.cancel()
        finally:
            server.close()
        reader, writer = fut.result()
        m._qtest_writer = writer
        m.qtest = QTest(reader, writer)
        m.partition = Partition(m.qtest)
        return m

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip()
        except OSError:
            return ""
        return " / ".join(text.splitlines()[-lines:])

    async def connect(self, srcid: int, **kw) -> Source:
        """A Source connected to ``srcid``'s socket, HELLO read."""
        kw.setdefault("retry", 5.0)
        return await Source.connect("unix:" + self.paths[srcid], **kw)

    async def close(self) -> None:
        """Stop QEMU (SIGTERM, then SIGKILL) and remove the work dir."""
        if self._qtest_writer:
            self._qtest_writer.close()
            self._qtest_writer = None
        if self.proc and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._tmp:
            self._tmp.cleanup()
            self._tmp = None

    async def __aenter__(self) -> "Machine":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
