"""The only place sockets are created: every factory applies the hygiene of DESIGN.md section 6
(finite LINGER, handshake and heartbeat timeouts, MAXMSGSIZE, HWMs) and optional CurveZMQ.

Binding sockets (ROUTER, XPUB) are CURVE servers; connecting sockets (DEALER, SUB) are clients and
need the server's public key in `CurveKeys.server_public`.
"""

from __future__ import annotations

import ctypes
import hashlib
import secrets

import zmq

from protocol.wire.codec import DEFAULT_LIMITS
from protocol.transport.keys import ZAP_DOMAIN, CurveKeys

LINGER_MS = 1000
HANDSHAKE_IVL_MS = 5000
HEARTBEAT_IVL_MS = 1000  # ZMTP ping interval; a connection silent for 5 intervals is dropped (and redialled)
# Between neighbours: each agent pings its N - 1 publishers. At 1 s each (and the publishers pinging back),
# the N (N - 1) links of a 128-agent cluster carried ~66,000 pings and pongs a second, which took both
# cores. So each agent sends at most this many pings a second in all: every HEARTBEAT_IVL_MS while it has
# at most this many neighbours, proportionally less often beyond; publishers only answer.
PEER_PINGS_PER_S = 20
DEFAULT_HWM = 10000
DEFAULT_MAX_MSG_SIZE = DEFAULT_LIMITS.max_frame_bytes
# Inbound bounds of the servers (a peer sending more is disconnected; at most HWM messages queue per
# connection before ZeroMQ stops reading it): the coordinator hears only control messages, the env server
# control messages and STEPs (8 bytes per parallel world: 1 MiB is 100k+ worlds).
CONTROL_MAX_MSG_SIZE = 64 * 2**10
STEP_MAX_MSG_SIZE = 2**20
SERVER_RCV_HWM = 100


def router(ctx: zmq.Context, *, max_msg_size: int = DEFAULT_MAX_MSG_SIZE, hwm: int = DEFAULT_HWM,
           curve: CurveKeys | None = None, rcv_hwm: int | None = None) -> zmq.Socket:
    """A ROUTER that fails loudly (EHOSTUNREACH) when routing to an unknown peer; `max_msg_size` and
    `rcv_hwm` bound what each connection can queue at us."""
    sock = _socket(ctx, zmq.ROUTER, max_msg_size, hwm, curve, server=True)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    if rcv_hwm is not None:
        sock.setsockopt(zmq.RCVHWM, rcv_hwm)
    return sock


def dealer(ctx: zmq.Context, *, routing_id: bytes | None = None,
           max_msg_size: int = DEFAULT_MAX_MSG_SIZE, hwm: int = DEFAULT_HWM,
           curve: CurveKeys | None = None) -> zmq.Socket:
    """A DEALER. Deliberately NOT IMMEDIATE (DESIGN.md asked for it): with IMMEDIATE=1, messages that
    arrived but were not read yet are discarded when the peer disconnects, so a server's last reply
    before it exits is lost (tests/test_protocol_topics_sockets.py::test_dealer_keeps_last_reply)."""
    sock = _socket(ctx, zmq.DEALER, max_msg_size, hwm, curve, server=False)
    if routing_id is not None:
        sock.setsockopt(zmq.ROUTING_ID, routing_id)
    return sock


def xpub(ctx: zmq.Context, *, max_msg_size: int = DEFAULT_MAX_MSG_SIZE, hwm: int = DEFAULT_HWM,
         curve: CurveKeys | None = None, manual: bool = False, rcv_hwm: int | None = None) -> zmq.Socket:
    """An XPUB that reports every subscription (XPUB_VERBOSE), even repeated ones. With `manual`
    (XPUB_MANUAL) a subscription takes effect only when the application grants it (agent/publisher.py).
    Its inbound side carries only subscriptions: `max_msg_size` and `rcv_hwm` bound what a peer can queue.
    It sends no pings: its subscribers ping it (`sub`), and it answers."""
    sock = _socket(ctx, zmq.XPUB, max_msg_size, hwm, curve, server=True, heartbeat_ms=0)
    sock.setsockopt(zmq.XPUB_VERBOSE, 1)
    if manual:
        sock.setsockopt(zmq.XPUB_MANUAL, 1)
    if rcv_hwm is not None:
        sock.setsockopt(zmq.RCVHWM, rcv_hwm)
    return sock


def sub(ctx: zmq.Context, *, max_msg_size: int = DEFAULT_MAX_MSG_SIZE, hwm: int = DEFAULT_HWM,
        curve: CurveKeys | None = None, heartbeat_ms: int = HEARTBEAT_IVL_MS) -> zmq.Socket:
    """A SUB socket (subscribe to topics after creating it), pinging its publisher every `heartbeat_ms`."""
    return _socket(ctx, zmq.SUB, max_msg_size, hwm, curve, server=False, heartbeat_ms=heartbeat_ms)


def unpredictable_routing_ids() -> None:
    """Seed the C library's rand(), from which libzmq starts a ROUTER's auto-generated routing ids.

    libzmq (4.3.5) aborts the process (socket_base.cpp, add_out_pipe) when the id it generates for a new
    connection, 0x00 + a counter, is already held by a client that chose it. The counter starts at rand(),
    which nothing seeds: 0x6b8b4567 in every process (glibc), so a client could take the next ids and crash
    any of our servers. Seeded from the OS, the start is one of 2^32 values; our logs never show an id
    (`routing_label`). Under CurveZMQ only the run's keys get that far (README, "Security")."""
    try:
        ctypes.CDLL(None).srand(secrets.randbits(32))
    except (OSError, AttributeError):  # no C library rand() to seed: libzmq's start is whatever it is
        pass


unpredictable_routing_ids()  # before any socket of this process exists
_LABEL_KEY = secrets.token_bytes(16)  # per process: a routing id's label says nothing about the id


def routing_label(routing_id: bytes) -> str:
    """How a connection's routing id appears in our logs: a keyed digest, never the id (which would show
    where the ROUTER's id counter stands)."""
    return "#" + hashlib.blake2b(routing_id, key=_LABEL_KEY, digest_size=4).hexdigest()


def recv_authenticated(sock: zmq.Socket) -> tuple[list[bytes], str | None]:
    """One multipart message and, on a CURVE server socket, the User-Id its sender's key was given by
    the ZAP handler (KeyRing.authenticator); None on plain sockets, and for a message libzmq made itself,
    which has no metadata: an XPUB's unsubscription when a subscriber leaves (callers refuse what needs
    an identity and has none)."""
    parts = sock.recv_multipart(copy=False)
    user_id = None
    if sock.getsockopt(zmq.CURVE_SERVER):
        try:
            user_id = parts[-1].get("User-Id")
        except zmq.ZMQError:  # EINVAL: no such property (a message libzmq made itself)
            pass
    return [part.bytes for part in parts], user_id


def bind(sock: zmq.Socket, endpoint: str) -> str:
    """Bind to `endpoint` and return the endpoint peers can dial; port 0 means any free port."""
    if endpoint.endswith(":0"):
        return bind_random(sock, endpoint.removeprefix("tcp://").rsplit(":", 1)[0])
    sock.bind(endpoint)
    return endpoint


def bind_random(sock: zmq.Socket, host: str = "127.0.0.1") -> str:
    """Bind to a free TCP port on `host`; return the actual endpoint (tcp://host:port)."""
    sock.bind(f"tcp://{host}:*")
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


def peer_heartbeat_ms(links: int) -> int:
    """The ZMTP ping interval of each of an agent's `links` subscriptions: HEARTBEAT_IVL_MS, or longer so
    that the agent sends at most PEER_PINGS_PER_S pings a second."""
    return max(HEARTBEAT_IVL_MS, links * 1000 // PEER_PINGS_PER_S)


def _socket(ctx: zmq.Context, kind: int, max_msg_size: int, hwm: int, curve: CurveKeys | None,
            *, server: bool, heartbeat_ms: int = HEARTBEAT_IVL_MS) -> zmq.Socket:
    """A socket with our limits; ZMTP pings every `heartbeat_ms` (0: none sent; a peer's are still answered),
    the connection given up after 5 intervals without traffic."""
    sock = ctx.socket(kind)
    timeout_ms = 5 * (heartbeat_ms or HEARTBEAT_IVL_MS)
    try:
        for option, value in (
            (zmq.LINGER, LINGER_MS),
            (zmq.HANDSHAKE_IVL, HANDSHAKE_IVL_MS),
            (zmq.HEARTBEAT_IVL, heartbeat_ms),
            (zmq.HEARTBEAT_TIMEOUT, timeout_ms),
            (zmq.HEARTBEAT_TTL, timeout_ms),
            (zmq.MAXMSGSIZE, max_msg_size),
            (zmq.SNDHWM, hwm),
            (zmq.RCVHWM, hwm),
        ):
            sock.setsockopt(option, value)
        if curve is not None:
            _apply_curve(sock, curve, server=server)
    except Exception:
        sock.close(linger=0)
        raise
    return sock


def _apply_curve(sock: zmq.Socket, curve: CurveKeys, *, server: bool) -> None:
    if server:
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_SECRETKEY, curve.secret)
        # CURVE alone admits any client that knows our public key: ask the context's ZAP handler
        # (KeyRing.authenticator), and refuse every client if there is none (fail closed).
        sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
        sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
        return
    if curve.server_public is None:
        raise ValueError("a connecting CURVE socket needs the server's public key")
    sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, curve.secret)
    sock.setsockopt(zmq.CURVE_SERVERKEY, curve.server_public)
