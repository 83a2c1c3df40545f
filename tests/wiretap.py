"""See what really went over the wire: a recording TCP forwarder and a ZMTP 3.x stream parser.

`WireTap` listens on a free loopback port and forwards every connection it accepts to a target port,
recording the raw bytes of both directions. Give peers the tap's endpoint instead of the real one
(e.g. `ss-agent --advertise`) and every byte between them passes through, and is kept by, the tap.

`parse_zmtp` reads one recorded direction of a ZeroMQ connection (ZMTP 3.0/3.1, NULL mechanism):
the 64-byte greeting, then frames; commands (READY, PING/PONG, SUBSCRIBE/CANCEL) are set apart and
message frames are grouped into multipart messages by their MORE flag.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

HOST = "127.0.0.1"
CHUNK = 65536

# ---- the recording forwarder -------------------------------------------------------------------


@dataclass
class Connection:
    """One forwarded TCP connection: every byte of each direction, in order."""

    to_server: bytearray = field(default_factory=bytearray)  # from the side that connected (client)
    to_client: bytearray = field(default_factory=bytearray)  # from the side the tap connects to


class WireTap:
    """A transparent TCP forwarder on 127.0.0.1 that records both directions of every connection.

    Threads: one accepts; per connection, one pumps client -> target and one target -> client. A
    connection accepted before the target listens waits for it (up to `connect_timeout_s`), so
    peers may be started in any order. `close()` (or leaving the `with` block) stops accepting,
    lets open connections end on their own within `grace_s` (their peers exiting closes them),
    cuts the rest and joins every thread. Read `connections` after that for complete recordings.
    """

    def __init__(self, target_port: int, connect_timeout_s: float = 60.0):
        self.target_port = target_port
        self.connect_timeout_s = connect_timeout_s
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._connections: list[Connection] = []
        self._sockets: list[socket.socket] = []
        self._links: list[threading.Thread] = []
        self._listener = socket.create_server((HOST, 0))
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept, name=f"wiretap:{self.port}", daemon=True)
        self._acceptor.start()

    @property
    def endpoint(self) -> str:
        """The tap as a ZeroMQ endpoint: tcp://127.0.0.1:<port>."""
        return f"tcp://{HOST}:{self.port}"

    @property
    def connections(self) -> list[Connection]:
        """Copies of the recordings so far, in the order the connections were accepted."""
        with self._lock:
            return [Connection(bytearray(c.to_server), bytearray(c.to_client)) for c in self._connections]

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # the listener was shut down by close()
                return
            with self._lock:
                if self._closing.is_set():
                    client.close()
                    return
                conn = Connection()
                self._connections.append(conn)
                self._sockets.append(client)
                link = threading.Thread(target=self._link, args=(client, conn), daemon=True,
                                        name=f"wiretap:{self.port}:{len(self._connections)}")
                self._links.append(link)
            link.start()

    def _connect_target(self) -> socket.socket | None:
        """Connect to the target, waiting while it does not listen yet; None on timeout or close()."""
        end = time.monotonic() + self.connect_timeout_s
        while True:
            try:
                upstream = socket.create_connection((HOST, self.target_port))
            except ConnectionRefusedError:
                if time.monotonic() > end or self._closing.wait(0.02):
                    return None
                continue
            with self._lock:
                if self._closing.is_set():  # close() may already have cut the sockets it knew
                    upstream.close()
                    return None
                self._sockets.append(upstream)
            return upstream

    def _link(self, client: socket.socket, conn: Connection) -> None:
        upstream = self._connect_target()
        if upstream is None:
            client.close()
            return
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as ZeroMQ does: no added latency
        back = threading.Thread(target=self._pump, args=(upstream, client, conn.to_client), daemon=True)
        back.start()
        self._pump(client, upstream, conn.to_server)
        back.join()
        client.close()
        upstream.close()

    def _pump(self, src: socket.socket, dst: socket.socket, record: bytearray) -> None:
        """Copy src -> dst until src ends, recording every byte read (even if dst is already gone)."""
        forwarding = True
        while True:
            try:
                data = src.recv(CHUNK)
            except OSError:
                break
            if not data:
                break
            with self._lock:
                record += data
            if forwarding:
                try:
                    dst.sendall(data)
                except OSError:
                    forwarding = False
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self, grace_s: float = 10.0) -> None:
        """Stop accepting; wait up to `grace_s` for open connections to end, cut the rest; join all."""
        with self._lock:
            self._closing.set()
        _shutdown(self._listener)
        self._acceptor.join()
        self._listener.close()
        end = time.monotonic() + grace_s
        for link in self._links:
            link.join(max(0.0, end - time.monotonic()))
        with self._lock:
            for sock in self._sockets:
                _shutdown(sock)
        for link in self._links:
            link.join()

    def __enter__(self) -> "WireTap":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # not connected, or already closed
        pass


# ---- the ZMTP 3.x parser -----------------------------------------------------------------------

GREETING_BYTES = 64
MORE, LONG, COMMAND = 0x01, 0x02, 0x04


class ZmtpError(ValueError):
    """The bytes are not a well-formed ZMTP 3.x stream (or one we cannot read: encrypted)."""


@dataclass(frozen=True)
class ZmtpStream:
    """One direction of a ZMTP connection: its messages (tuples of frames) and commands (name, data)."""

    messages: tuple[tuple[bytes, ...], ...]
    commands: tuple[tuple[str, bytes], ...]

    @property
    def subscriptions(self) -> list[bytes]:
        """Topics of the SUBSCRIBE commands, in order."""
        return [data for name, data in self.commands if name == "SUBSCRIBE"]


def parse_zmtp(data: bytes) -> ZmtpStream:
    """Parse one recorded direction of a ZMTP 3.x connection, every byte of it.

    A stream that ends inside the greeting (a connection closed during the handshake) holds nothing.
    Raises ZmtpError on a bad greeting, a non-NULL (encrypted) mechanism, unknown flag bits, a frame
    cut short, a command inside a multipart message, or a stream ending inside a multipart message.
    """
    data = bytes(data)
    if len(data) < GREETING_BYTES:
        _check_greeting(data)
        return ZmtpStream((), ())
    _check_greeting(data[:GREETING_BYTES])
    messages: list[tuple[bytes, ...]] = []
    commands: list[tuple[str, bytes]] = []
    parts: list[bytes] = []
    pos = GREETING_BYTES
    while pos < len(data):
        flags = data[pos]
        if flags & ~(MORE | LONG | COMMAND):
            raise ZmtpError(f"byte {pos}: unknown frame flags {flags:#04x}")
        head = 9 if flags & LONG else 2
        if pos + head > len(data):
            raise ZmtpError(f"byte {pos}: frame header cut short")
        size = int.from_bytes(data[pos + 1:pos + head], "big")
        body, pos = data[pos + head:pos + head + size], pos + head + size
        if pos > len(data):
            raise ZmtpError(f"frame of {size} bytes cut short at byte {len(data)}")
        if flags & COMMAND:
            if parts or flags & MORE:
                raise ZmtpError(f"command frame inside a multipart message (before byte {pos})")
            commands.append(_command(body))
            continue
        parts.append(body)
        if not flags & MORE:
            messages.append(tuple(parts))
            parts = []
    if parts:
        raise ZmtpError(f"stream ends inside a multipart message ({len(parts)} frames)")
    return ZmtpStream(tuple(messages), tuple(commands))


def _check_greeting(greeting: bytes) -> None:
    """Signature 0xFF ... 0x7F, major version 3, mechanism NULL (as far as the bytes go)."""
    expected = {0: 0xFF, 9: 0x7F, 10: 3}
    for at, value in expected.items():
        if at < len(greeting) and greeting[at] != value:
            raise ZmtpError(f"not a ZMTP 3.x greeting (byte {at} is {greeting[at]:#04x}, expected {value:#04x})")
    mechanism = greeting[12:32].rstrip(b"\0")
    if len(greeting) >= 32 and mechanism != b"NULL":
        raise ZmtpError(f"mechanism {mechanism!r}: only NULL (unencrypted) streams can be read")


def _command(body: bytes) -> tuple[str, bytes]:
    """(name, data) of a command frame body: a 1-byte name length, the name, then its data."""
    if not body or 1 + body[0] > len(body):
        raise ZmtpError(f"malformed command frame {body[:16]!r}")
    return body[1:1 + body[0]].decode("ascii", "replace"), body[1 + body[0]:]
