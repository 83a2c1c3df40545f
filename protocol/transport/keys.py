"""CurveZMQ (DESIGN.md section 6): key files `NAME.key` (public) and `NAME.key_secret` (mode 0600), one pair
per process of a run (coordinator, envserver, learner, agent<i>), and the ZAP allow-list built from them."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
import zmq.utils.z85
from zmq.auth.thread import ThreadAuthenticator

from protocol.wire.messages import CENTRAL_LEARNER_ID, COORDINATOR_ID, ENVSERVER_ID

ZAP_DOMAIN = b"ssmarl"  # set on every CURVE server socket; the authenticator serves exactly this domain


@dataclass(frozen=True)
class CurveKeys:
    """A process's own key pair, plus the server's public key when this side connects."""

    public: bytes
    secret: bytes
    server_public: bytes | None = None


def generate_keypair(directory: Path, name: str) -> tuple[Path, Path]:
    """Write a new key pair into `directory`; returns (public file, secret file).

    The secret file is created 0600 before any key is written to it, and never overwritten.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    secret = directory / f"{name}.key_secret"
    os.close(os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    os.chmod(secret, 0o600)  # in case the umask dropped bits from the mode above
    public_file, secret_file = zmq.auth.create_certificates(directory, name)
    return Path(public_file), Path(secret_file)


def load_public(path: Path) -> bytes:
    """The public key stored in a `.key` or `.key_secret` file."""
    public, _ = zmq.auth.load_certificate(path)
    return public


def load_keys(secret_file: Path, server_public_file: Path | None = None) -> CurveKeys:
    """This process's key pair from its secret file, and the server's public key if it connects."""
    public, secret = zmq.auth.load_certificate(secret_file)
    if secret is None:
        raise ValueError(f"{secret_file} holds no secret key")
    server = load_public(server_public_file) if server_public_file is not None else None
    return CurveKeys(public, secret, server)


def key_name(src: int) -> str:
    """The key file name of a process by its sender id: coordinator, envserver, learner, agent<i>."""
    return {COORDINATOR_ID: "coordinator", ENVSERVER_ID: "envserver", CENTRAL_LEARNER_ID: "learner"}.get(
        src, f"agent{src}")


def run_key_names(agents: int, learner: bool) -> list[str]:
    """Every key a run of `agents` agents needs (the central learner's too, for algo cl)."""
    servers = [COORDINATOR_ID, ENVSERVER_ID, *([CENTRAL_LEARNER_ID] if learner else [])]
    return [key_name(src) for src in [*servers, *range(agents)]]


class NamedKeyAuthenticator(ThreadAuthenticator):
    """ZAP handler that admits exactly the allow-listed public keys and gives each connection the key's
    name as its User-Id, which receivers compare with the `src` a message claims."""

    def __init__(self, ctx: zmq.Context, names: dict[bytes, str]):
        super().__init__(ctx, log=logging.getLogger("zap"))
        self.names = names

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self.names[zmq.utils.z85.encode(client_public_key)]


class KeyRing:
    """A run's key directory as one process sees it: its own key pair and every process's public key.

    Binding sockets are CURVE servers that admit only the keys of the directory (ZAP, fail closed);
    connecting sockets authenticate the server they dial by its public key."""

    def __init__(self, directory: Path, me: int):
        self.directory = Path(directory)
        self.me = me
        secret = self.directory / f"{key_name(me)}.key_secret"
        if not secret.exists():
            raise FileNotFoundError(f"{secret}: no secret key for {key_name(me)} (make one with ss-keys)")
        self.own = load_keys(secret)
        self.publics = {path.stem: load_public(path) for path in sorted(self.directory.glob("*.key"))}

    def server(self) -> CurveKeys:
        """The keys of a socket this process binds."""
        return self.own

    def client(self, server: int) -> CurveKeys:
        """The keys of a socket this process connects to process `server` with."""
        name = key_name(server)
        if name not in self.publics:
            raise FileNotFoundError(f"{self.directory}/{name}.key: no public key for {name}")
        return CurveKeys(self.own.public, self.own.secret, self.publics[name])

    def authenticator(self, ctx: zmq.Context) -> NamedKeyAuthenticator:
        """Start the ZAP handler of `ctx`: only the directory's keys get in, each named by its file."""
        auth = NamedKeyAuthenticator(ctx, {public: name for name, public in self.publics.items()})
        auth.start()
        auth.configure_curve(domain=ZAP_DOMAIN.decode(), location=str(self.directory))
        logging.getLogger("zap").info("CurveZMQ on: %s admits the %d keys of %s", key_name(self.me),
                                      len(self.publics), self.directory)
        return auth


def server_keys(keys: KeyRing | None) -> CurveKeys | None:
    """CURVE keys for a socket we bind (None: plain TCP)."""
    return None if keys is None else keys.server()


def client_keys(keys: KeyRing | None, server: int) -> CurveKeys | None:
    """CURVE keys for a socket we connect to process `server` with (None: plain TCP)."""
    return None if keys is None else keys.client(server)


def claims_own_id(user_id: str | None, src: int) -> bool:
    """True when there is no CURVE identity to check, or the authenticated key is that of `src`."""
    return user_id is None or user_id == key_name(src)
