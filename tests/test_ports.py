"""The launcher's port picks: free, distinct, and below the ephemeral range that outgoing connections use."""

from __future__ import annotations

import socket

from coordinator.launcher import ephemeral_floor, free_port


def test_picked_ports_are_free_distinct_and_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(10000 <= port < ephemeral_floor() for port in ports)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", ports[0]))  # each is bindable now
    assert ephemeral_floor() >= 1024
