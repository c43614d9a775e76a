"""The host side of a lab guest with the hvpipe model: HMC sources and the
control channel the guest's tests use to drive them.

lab/run-guest --hvpipe N starts QEMU with ``hvpipe=on`` and N sources,
``0x02000001`` to ``0x0200000N``, each on a unix-socket chardev that QEMU
serves.  The conductor connects to every source and plays its HMC, and serves
a control channel to the guest over a virtio-serial port named
``org.papr-hvpipe.lab`` (in the guest: the /dev/vportNpM whose
/sys/class/virtio-ports/vportNpM/name says so).

Control protocol
================

Lines of ASCII, one request and one reply each.  A request is
``<id> <VERB> [arg ...]``, with ``<id>`` any token without blanks chosen by
the guest; the reply is ``<id> OK [result ...]`` or ``<id> ERR <reason>``.  A
guest that sees a reply with another id drops it (a late reply to a request
whose test was killed).  ``<src>`` is a source ID (``0x02000001``) or an index
(``0``); ``<hex>`` is a payload in hexadecimal; numbers are decimal unless
they start with ``0x`` (statuses and source IDs may be negative or any
32-bit value).

============================================ ================================
Request                                      Reply, effect
============================================ ================================
``HELLO``                                    ``OK <srcid> ...``: the sources,
                                             once all are connected
``RESET``                                    every source connected, echo
                                             off, queues, inboxes and
                                             counters emptied, faults
                                             cleared; ``OK <n>``: payloads
                                             the guest had left unreceived
                                             (their events are raised
                                             again, see Conductor.reset)
``ECHO <src> 0|1``                           the source sends back every
                                             payload it receives
``SEND <src> <hex> [<delay_ms>]``            queue one payload to the
                                             partition (after the delay)
``SENDPAT <src> <len> <seed> [<count>]``     queue ``count`` (1) payloads of
                                             ``hmc.pattern(len, seed + k)``
``RECV <src> <timeout_ms>``                  ``OK <hex>``: oldest payload the
                                             source received, or ``ERR
                                             timeout``
``STATS <src>``                              ``OK name=value ...``: the
                                             counters below
``WAIT <src> <counter> <value> <timeout_ms>`` until counter >= value:
                                             ``OK <v>`` or ``ERR timeout <v>``
``DISCONNECT <src>``                         the HMC closes its connection
``CONNECT <src>``                            the HMC connects again (waits for
                                             QEMU's HELLO)
``SYNC <src>``                               a NOP round trip: QEMU has
                                             handled all that came before
``FAULT <src> <fault>``                       inject a fault, spelled as
                                             lab/hmc-sim's ``--inject``
                                             (``rtas-receive:-2:3``,
                                             ``drop:after:200``, ``clear``;
                                             hmc.FAULTS lists them)
``LOG <text>``                               written to the conductor's log
============================================ ================================

FAULT replies ``OK`` or ``ERR <code> <text>`` with QEMU's error code.

Counters (STATS, WAIT): ``connected`` (0 or 1), ``param64`` (system parameter
64 as QEMU last said), ``tx`` (payloads handed to QEMU), ``acked`` (received
by the partition), ``dropped`` (QEMU discarded them), ``refused`` (QEMU
refused them, other than busy), ``orphaned`` (in flight when the
connection closed: QEMU discarded them, or the partition may still receive
them but the ACK is lost), ``rx`` (payloads from the partition),
``queued`` (payloads not yet acked or dropped, including the one in flight),
``inbox`` (received payloads not yet taken with RECV), ``hellos``.

Payload pattern (shared with the guest helper): byte ``i`` of
``hmc.pattern(len, seed)`` is ``(seed * 131 + i) % 251``.

A source has room for one payload in QEMU, so the conductor keeps its own
queue per source and hands QEMU the next payload when the last one was
acked or dropped; a payload refused as busy (after a reconnect, while the
old one is pending) is retried.

The chardev protocol is specified in qemu/docs/system/ppc/hvpipe.rst.
"""

from __future__ import annotations

import asyncio
import collections
import sys
from pathlib import Path
from typing import Callable

# The chardev protocol's host side is the HMC simulator's library.
import hmc


class ProtocolError(Exception):
    pass


class Hmc:
    """One HMC the conductor plays on one spapr-hvpipe-source chardev: a
    connection (an hmc.Source, made again on CONNECT and RESET), the queue
    of payloads to the partition, the inbox of its payloads, the counters."""

    def __init__(self, srcid: int, path: Path,
                 log: Callable[[str], None]) -> None:
        self.srcid, self.path, self.log = srcid, path, log
        self.echo = False
        self.param64 = 0
        self.outq: collections.deque[bytes] = collections.deque()
        self.inflight: int | None = None
        self.inflight_data = b""
        self.inbox: collections.deque[bytes] = collections.deque()
        self.counters = dict.fromkeys(("tx", "acked", "dropped", "refused",
                                       "orphaned", "rx", "hellos"), 0)
        self.changed = asyncio.Condition()
        self.waiters: dict[int, asyncio.Future[hmc.Message | None]] = {}
        self.conn: hmc.Source | None = None
        self.reader: asyncio.Task[None] | None = None
        self.retry: asyncio.TimerHandle | None = None

    @property
    def connected(self) -> bool:
        return self.conn is not None and not self.conn.closed

    # --- connection -------------------------------------------------------

    async def connect(self, timeout: float = 30) -> None:
        """Connect (retrying while QEMU starts) and wait for HELLO."""
        if self.connected:
            return
        try:
            self.conn = await hmc.Source.connect(
                f"unix:{self.path}", timeout=timeout, retry=timeout)
        except hmc.HmcError as e:
            raise ProtocolError(f"0x{self.srcid:08x}: {e}") from None
        self.counters["hellos"] += 1
        self.param64 = int(self.conn.hello.enabled)
        self.reader = asyncio.create_task(self._read(self.conn))
        self._pump()

    async def disconnect(self) -> None:
        if self.conn:
            await self.conn.close()
        if self.reader:
            await asyncio.gather(self.reader, return_exceptions=True)
        self.conn = self.reader = None

    async def _read(self, conn: hmc.Source) -> None:
        try:
            while True:
                # The handler is looked up once the frame is here, not
                # before the wait: a subclass set meanwhile (lab/soak's)
                # handles it.
                f = await conn.recv(timeout=None)
                self._frame(f)
                async with self.changed:
                    self.changed.notify_all()
        except hmc.ConnectionClosed as e:
            if conn.protocol_error:
                self.log(f"0x{self.srcid:08x}: {e}")
        finally:
            # Before any wait: a reconnect meanwhile (lab/soak's keeper)
            # would hand over a payload that this would take for the lost
            # connection's.
            self._lost()
            await conn.close()
            async with self.changed:
                self.changed.notify_all()

    def _lost(self) -> None:
        for fut in self.waiters.values():
            if not fut.done():
                fut.set_result(None)
        self.waiters.clear()
        # QEMU discards a queued payload of a source that goes away; one
        # already pending stays with the partition, its ACK lost.
        if self.inflight is not None:
            self.inflight = None
            self.counters["orphaned"] += 1

    def _frame(self, f: hmc.Frame) -> None:
        msg = f.msg
        if isinstance(msg, hmc.OutPayload):
            self.counters["rx"] += 1
            if self.echo:
                self.queue(msg.data)
            else:
                self.inbox.append(msg.data)
        elif isinstance(msg, (hmc.Ack, hmc.Dropped)):
            if f.tag == self.inflight:
                self.inflight = None
                self.counters["acked" if isinstance(msg, hmc.Ack)
                              else "dropped"] += 1
            self._pump()
        elif isinstance(msg, hmc.State):
            self.param64 = int(msg.enabled)
        elif isinstance(msg, (hmc.Ok, hmc.Error)):
            fut = self.waiters.pop(f.tag, None)
            if fut and not fut.done():
                fut.set_result(msg)
            elif f.tag == self.inflight and isinstance(msg, hmc.Error):
                self.inflight = None
                if msg.code == hmc.ErrorCode.BUSY:
                    # Slot still taken by a payload of an old connection.
                    self.outq.appendleft(self.inflight_data)
                    loop = asyncio.get_running_loop()
                    self.retry = loop.call_later(0.05, self._pump)
                else:
                    self.counters["refused"] += 1
                    self.log(f"0x{self.srcid:08x}: payload refused: "
                             f"{msg.text}")
                    self._pump()

    # --- payloads ---------------------------------------------------------

    def queue(self, data: bytes) -> None:
        """Queue a payload to the partition."""
        if not 1 <= len(data) <= hmc.MAX_PAYLOAD:
            raise ValueError(f"payload of {len(data)} bytes")
        self.outq.append(data)
        self._pump()

    def _pump(self) -> None:
        if self.inflight is None and self.outq and self.connected:
            self.inflight_data = self.outq.popleft()
            self.inflight = self.conn.post(hmc.Payload(self.inflight_data))
            self.counters["tx"] += 1

    async def recv(self, timeout: float) -> bytes | None:
        """The oldest payload from the partition, or None on timeout."""
        if await self.wait_for(lambda: bool(self.inbox), timeout):
            return self.inbox.popleft()
        return None

    async def control(self, msg: hmc.Message,
                      timeout: float = 10) -> tuple[bool, str]:
        """Send a control frame; (True, "") on OK, else (False, why)."""
        if not self.connected:
            return False, "not connected"
        fut = asyncio.get_running_loop().create_future()
        self.waiters[self.conn.post(msg)] = fut
        try:
            answer = await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            return False, "no answer from QEMU"
        if isinstance(answer, hmc.Ok):
            return True, ""
        if answer is None:
            return False, "disconnected"
        return False, f"{int(answer.code)} {answer.text}"

    def stats(self) -> dict[str, int]:
        return {"connected": int(self.connected), "param64": self.param64,
                **self.counters,
                "queued": len(self.outq) + (self.inflight is not None),
                "inbox": len(self.inbox)}

    async def wait_for(self, cond: Callable[[], bool], timeout: float) -> bool:
        try:
            async with self.changed:
                await asyncio.wait_for(self.changed.wait_for(cond), timeout)
            return True
        except asyncio.TimeoutError:
            return cond()

    def reset(self) -> None:
        self.echo = False
        self.outq.clear()
        self.inbox.clear()
        if self.retry:
            self.retry.cancel()
        for k in self.counters:
            if k != "hellos":
                self.counters[k] = 0


def num(text: str) -> int:
    return int(text, 0)


class Conductor:
    """The sources of one guest and its control channel."""

    def __init__(self, sockdir: Path, nsources: int,
                 log: Callable[[str], None] | None = None,
                 play: bool = True) -> None:
        """play False: leave the source sockets (Hmc.path) to the
        caller, who plays the HMCs some other way (lab/bench uses lab/hmc);
        the control channel then answers only HELLO and LOG."""
        self.sockdir = sockdir
        self.play = play
        self.log = log or (lambda s: print(f"conductor: {s}", file=sys.stderr))
        self.sources = [Hmc(hmc.HMC_TYPE + i + 1, sockdir / f"hmc{i + 1}.sock",
                               self.log) for i in range(nsources)]
        self.ctl_path = sockdir / "ctl.sock"
        self.server: asyncio.AbstractServer | None = None
        self.ready = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.console: list[str] = []
        self.console_changed = asyncio.Condition()

    async def console_line(self, line: str) -> None:
        """Note a line of the guest's console (lab/vm.py feeds them)."""
        self.console.append(line)
        async with self.console_changed:
            self.console_changed.notify_all()

    async def wait_console(self, text: str, timeout: float) -> bool:
        """Wait until a console line contains text."""
        def seen() -> bool:
            return any(text in line for line in self.console)
        try:
            async with self.console_changed:
                await asyncio.wait_for(self.console_changed.wait_for(seen),
                                       timeout)
        except asyncio.TimeoutError:
            pass
        return seen()

    def qemu_args(self) -> list[str]:
        """QEMU options for the sources and the control port."""
        args = []
        for i, s in enumerate(self.sources, 1):
            args += ["-chardev", f"socket,id=hmc{i},path={s.path},"
                     "server=on,wait=off",
                     "-device", f"spapr-hvpipe-source,srcid=0x{s.srcid:08x},"
                     f"chardev=hmc{i},x-fault-injection=on"]
        args += ["-device", "virtio-serial-pci,id=labser",
                 "-chardev", f"socket,id=labctl,path={self.ctl_path}",
                 "-device", "virtserialport,bus=labser.0,"
                 "name=org.papr-hvpipe.lab,chardev=labctl"]
        return args

    async def listen(self) -> None:
        """Serve the control channel; call before QEMU starts."""
        self.server = await asyncio.start_unix_server(self._client,
                                                      str(self.ctl_path))

    async def connect(self) -> None:
        """Connect every source (when playing them); call once QEMU runs."""
        if self.play:
            await asyncio.gather(*(s.connect() for s in self.sources))
        self.ready.set()

    async def close(self) -> None:
        if self.server:
            self.server.close()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*(s.disconnect() for s in self.sources),
                             return_exceptions=True)

    def source(self, text: str) -> Hmc:
        n = num(text)
        for s in self.sources:
            if s.srcid == n:
                return s
        if 0 <= n < len(self.sources):
            return self.sources[n]
        raise ValueError(f"no source {text}")

    async def _client(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                line = await reader.readline()
            except ConnectionError:
                break
            if not line:
                break
            words = line.decode(errors="replace").split()
            if not words:
                continue
            rid, words = words[0], words[1:]
            try:
                reply = await self.request(words)
            except (ValueError, IndexError, KeyError) as e:
                reply = f"ERR bad request: {e}"
            except Exception as e:  # keep serving whatever one request did
                reply = f"ERR {type(e).__name__}: {e}"
            writer.write(f"{rid} {reply}\n".encode())
            await writer.drain()

    async def request(self, w: list[str]) -> str:
        """Carry out one request (the words after the id); the reply."""
        verb = w[0].upper() if w else ""
        if verb == "HELLO":
            await self.ready.wait()
            return "OK " + " ".join(f"0x{s.srcid:08x}" for s in self.sources)
        if verb == "LOG":
            self.log("guest: " + " ".join(w[1:]))
            return "OK"
        if not self.play:
            return "ERR the sources are played by another program"
        if verb == "RESET":
            return await self.reset()
        src = self.source(w[1])
        if verb == "ECHO":
            src.echo = bool(num(w[2]))
            while src.echo and src.inbox:
                src.queue(src.inbox.popleft())
            return "OK"
        if verb in ("SEND", "SENDPAT"):
            if verb == "SEND":
                payloads = [bytes.fromhex(w[2])]
                delay = num(w[3]) if len(w) > 3 else 0
            else:
                count = num(w[4]) if len(w) > 4 else 1
                payloads = [hmc.pattern(num(w[2]), num(w[3]) + k)
                            for k in range(count)]
                delay = 0
            for p in payloads:
                if not 1 <= len(p) <= hmc.MAX_PAYLOAD:
                    return f"ERR payload of {len(p)} bytes"
            if delay:
                self._later(delay / 1000, src, payloads)
            else:
                for p in payloads:
                    src.queue(p)
            return "OK"
        if verb == "RECV":
            data = await src.recv(num(w[2]) / 1000)
            return "ERR timeout" if data is None else f"OK {data.hex()}"
        if verb == "STATS":
            return "OK " + " ".join(f"{k}={v}" for k, v in src.stats().items())
        if verb == "WAIT":
            name, value = w[2], num(w[3])
            if name not in src.stats():
                return f"ERR no counter {name}"
            await src.wait_for(lambda: src.stats()[name] >= value,
                               num(w[4]) / 1000)
            v = src.stats()[name]
            return f"OK {v}" if v >= value else f"ERR timeout {v}"
        if verb == "DISCONNECT":
            await src.disconnect()
            return "OK"
        if verb == "CONNECT":
            await src.connect(timeout=10)
            return "OK"
        if verb == "SYNC":
            ok, why = await src.control(hmc.Nop())
            return "OK" if ok else f"ERR {why}"
        if verb == "FAULT":
            ok, why = await src.control(hmc.parse_fault(w[2]))
            return "OK" if ok else f"ERR {why}"
        return f"ERR unknown request {verb}"

    def _later(self, delay: float, src: Hmc, payloads: list[bytes]) -> None:
        async def send() -> None:
            await asyncio.sleep(delay)
            for p in payloads:
                src.queue(p)
        task = asyncio.create_task(send())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def reset(self) -> str:
        for t in list(self.tasks):
            t.cancel()
        for s in self.sources:
            s.reset()
        await asyncio.gather(*(s.connect(timeout=10) for s in self.sources))
        ok, why = await self.sources[0].control(hmc.ClearFaults())
        if not ok:
            return f"ERR CLEAR_FAULTS: {why}"
        # A payload handed to QEMU is the partition's until it takes it.
        for s in self.sources:
            await s.wait_for(lambda s=s: s.inflight is None, 2)
        stuck = [s for s in self.sources if s.inflight is not None]
        # One the partition was told about but never received blocks the
        # pipe for good (a guest that gave up after a failed receive, say):
        # announce it again so that the next test starts with a free pipe.
        for s in stuck:
            self.log(f"RESET: 0x{s.srcid:08x} payload unreceived, raising "
                     "its event again")
            await s.control(hmc.SpuriousEvent(s.srcid, 1))
            await s.wait_for(lambda s=s: s.inflight is None, 2)
        still = sum(s.inflight is not None for s in self.sources)
        for s in self.sources:
            s.reset()
        if still:
            return f"ERR pipe blocked: {still} payloads never received"
        return f"OK {len(stuck)}"

