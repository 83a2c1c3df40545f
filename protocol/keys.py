"""CurveZMQ key files (DESIGN.md section 6): `NAME.key` (public) and `NAME.key_secret` (mode 0600)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import zmq.auth


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
