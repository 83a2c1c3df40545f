"""Cost of authorization and of the cross-check, against the path without them, measured in one run.

    python bench/authz_bench.py [--messages 2000] [--quick]

1. Receiving: `Inbox.accept` of the frames an SS agent receives in a predation update (its neighbours'
   DIST and SUGG, and its OBS), with receipts (one JSON line and a SHA-256 per message, for
   `ss-audit --cross-check`) and without; interleaved ABAB in one process.
2. Granting: one subscription through `Publisher.serve` on a real XPUB_MANUAL socket against an automatic
   XPUB (the grant happens once per neighbour and connection, so this is a start-up cost).
3. Checking: `ss-audit --cross-check` against `--verify` on the same real cluster run (8-agent predation).
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

from _timing import explain, median, result
from agent.exchange import RoundKinds
from agent.publisher import Publisher
from protocol.wire.codec import encode
from protocol.transport.inbox import Inbox
from protocol.wire.messages import Kind, Message
from protocol.wire.topics import topic

ROWS, ACTIONS, OBS = 30 * 16, 2, 8  # predation, batch 16


def received_frames(rng: np.random.Generator) -> list[bytes]:
    """A DIST, a SUGG and an OBS as the codec puts them on the wire."""
    probs = rng.dirichlet(np.ones(ACTIONS), size=ROWS).astype(np.float32)
    dist = Message(Kind.DIST, "bench", 1, 0, {"probs": probs, "actions": rng.integers(0, ACTIONS, ROWS),
                                              "behaviour": probs[:, 0].copy()}, round=0)
    sugg = Message(Kind.SUGG, "bench", 1, 1, {"to": 0, "probs": probs}, round=0)
    obs = Message(Kind.OBS, "bench", -2, 2, {"episode": 0, "to": 0, "obs": rng.random((16, OBS), np.float32),
                                             "reward": rng.random(16, np.float32),
                                             "terminated": np.zeros(16, bool), "truncated": np.zeros(16, bool),
                                             "mask": np.ones((16, 1), bool), "default_used": False}, step=1)
    return [encode(dist), encode(sugg), encode(obs)]


def time_receiving(messages: int, tmp: Path) -> dict[str, float]:
    """Median microseconds per accepted message, with and without receipts (ABAB)."""
    log = logging.getLogger("authz-bench")
    log.setLevel(logging.ERROR)
    frames = received_frames(np.random.default_rng(0))
    inboxes = {"plain": Inbox("agent 0", log, run="bench"),
               "receipts": Inbox("agent 0", log, run="bench", receipts=tmp / "received.log")}
    kinds = {Kind.DIST, Kind.SUGG, Kind.OBS}
    times: dict[str, list[float]] = {name: [] for name in inboxes}
    for k in range(messages):
        for name in (("plain", "receipts") if k % 2 else ("receipts", "plain")):
            start = time.perf_counter()
            inboxes[name].accept(frames[k % 3], kinds=kinds)
            times[name].append(time.perf_counter() - start)
    inboxes["receipts"].close()
    return {name: median(t) * 1e6 for name, t in times.items()}


def time_granting(subscriptions: int) -> dict[str, float]:
    """Median microseconds from a subscription's arrival to its effect, granted by hand and automatically."""
    ctx = zmq.Context()
    out: dict[str, float] = {}
    try:
        for manual in (True, False):
            pub = ctx.socket(zmq.XPUB)
            pub.setsockopt(zmq.XPUB_VERBOSE, 1)
            if manual:
                pub.setsockopt(zmq.XPUB_MANUAL, 1)
            port = pub.bind_to_random_port("tcp://127.0.0.1")
            publisher = Publisher(pub, 0, "bench", (1,), RoundKinds(broadcast=frozenset({Kind.DIST})),
                                  Inbox("agent 0", logging.getLogger("authz-bench")))
            subs, times = [], []
            for _ in range(subscriptions):
                sub = ctx.socket(zmq.SUB)
                sub.setsockopt(zmq.SUBSCRIBE, topic(Kind.DIST, 0))
                sub.connect(f"tcp://127.0.0.1:{port}")
                subs.append(sub)
                assert pub.poll(10_000)
                start = time.perf_counter()
                if manual:
                    publisher.serve()
                else:
                    pub.recv()
                times.append(time.perf_counter() - start)
            out["manual" if manual else "automatic"] = median(times) * 1e6
            for sock in (*subs, pub):
                sock.close(linger=0)
    finally:
        ctx.term()
    return out


def time_checks(tmp: Path, quick: bool) -> dict[str, float]:
    """Seconds of `ss-audit --verify` and `--cross-check` on one real cluster run."""
    bin_dir = Path(sys.executable).parent
    run = tmp / "run"
    agents, episodes = ("2", "32") if quick else ("8", "320")
    subprocess.run([str(bin_dir / "ss-cluster"), "--env", "predation", "--agents", agents, "--episodes", episodes,
                    "--out", str(run), "--no-progress"], check=True, capture_output=True, timeout=1800)
    out = {}
    for flag in ("--verify", "--cross-check"):
        start = time.perf_counter()
        subprocess.run([str(bin_dir / "ss-audit"), flag, str(run)], check=True, capture_output=True, timeout=1800)
        out[flag] = time.perf_counter() - start
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=6000, help="received messages timed per variant")
    parser.add_argument("--subscriptions", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="tiny settings for the smoke test")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.subscriptions = 60, 4
    with tempfile.TemporaryDirectory() as tmp:
        receiving = time_receiving(args.messages, Path(tmp))
        granting = time_granting(args.subscriptions)
        checks = time_checks(Path(tmp), args.quick)
    explain(f"receiving: DIST/SUGG/OBS of predation at batch 16 ({ROWS} rows), median of {args.messages} each")
    result("accept_us", receiving["plain"], "us", "Inbox.accept per message, no receipts")
    result("accept_with_receipt_us", receiving["receipts"], "us", "Inbox.accept per message, with its receipt")
    result("receipt_over_plain", receiving["receipts"] / receiving["plain"], "x", "receive path with / without")
    explain(f"granting: one subscription, median of {args.subscriptions} (once per neighbour and connection)")
    result("grant_manual_us", granting["manual"], "us", "XPUB_MANUAL: Publisher.serve checks and grants")
    result("grant_automatic_us", granting["automatic"], "us", "automatic XPUB: reading the notification")
    result("grant_over_automatic", granting["manual"] / granting["automatic"], "x", "manual / automatic")
    explain("checking one cluster run's logs (predation, 8 agents, 20 updates; --quick: 2 agents, 2 updates)")
    result("verify_s", checks["--verify"], "s", "ss-audit --verify")
    result("cross_check_s", checks["--cross-check"], "s", "ss-audit --cross-check")
    result("cross_check_over_verify", checks["--cross-check"] / checks["--verify"], "x", "cross-check / verify")


if __name__ == "__main__":
    main()
