"""Protocol cost: encode + decode (both validate) of a realistic DIST against plain msgpack.

Run: python bench/protocol_bench.py. Prints microseconds per message and the ratio, measured in
one run on the same payload (T=100 rows, 9 actions, with actions and behaviour).
"""

from __future__ import annotations

import timeit

import msgpack
import numpy as np

from protocol.wire.codec import decode, encode, validate
from protocol.wire.messages import Kind, Message

ROWS, ACTIONS = 100, 9


def realistic_dist() -> Message:
    """A first-round DIST: distributions, sampled actions and their behaviour probabilities."""
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(ACTIONS), size=ROWS).astype(np.float32)
    actions = np.array([rng.choice(ACTIONS, p=row / row.sum()) for row in probs], np.int64)
    behaviour = probs[np.arange(ROWS), actions]
    return Message(Kind.DIST, "bench", 3, 42, {"probs": probs, "actions": actions, "behaviour": behaviour},
                   round=7)


def plain_payload(msg: Message) -> dict:
    """The same envelope with arrays as raw bytes plus dtype and shape, for plain msgpack."""
    body = {k: {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()} for k, a in msg.body.items()}
    return {"v": 1, "kind": msg.kind.value, "run": msg.run, "src": msg.src, "seq": msg.seq,
            "round": msg.round, "body": body}


def plain_round_trip(msg: Message) -> dict:
    """Plain msgpack including the array <-> bytes conversions any msgpack protocol needs, no checks."""
    wire = msgpack.unpackb(msgpack.packb(plain_payload(msg)))
    return {k: np.frombuffer(a["data"], a["dtype"]).reshape(a["shape"]) for k, a in wire["body"].items()}


def per_call_us(fn, number: int = 20000, repeat: int = 5) -> float:
    """Best of `repeat` runs, in microseconds per call."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    msg = realistic_dist()
    payload = plain_payload(msg)
    frame = encode(msg)
    ours = per_call_us(lambda: decode(encode(msg)))
    plain = per_call_us(lambda: msgpack.unpackb(msgpack.packb(payload)))
    checked = per_call_us(lambda: validate(msg))
    print(f"DIST probs [{ROWS}, {ACTIONS}] + actions + behaviour, frame {len(frame)} bytes")
    print(f"  encode + decode + validate : {ours:8.2f} us/message")
    print(f"    encode alone             : {per_call_us(lambda: encode(msg)):8.2f} us")
    print(f"    decode alone             : {per_call_us(lambda: decode(frame)):8.2f} us")
    print(f"    validate alone           : {checked:8.2f} us")
    print(f"  plain msgpack pack+unpack  : {plain:8.2f} us/message")
    arrays = per_call_us(lambda: plain_round_trip(msg))
    print(f"  plain msgpack + array conv.: {arrays:8.2f} us/message (tobytes / frombuffer, no checks)")
    print(f"  ratio (encode+decode, validating on both sides) / plain : {ours / plain:6.2f}x")
    print(f"  ratio (encode+decode) / plain with array conversion     : {ours / arrays:6.2f}x")
    print(f"  ratio (one validation) / plain                         : {checked / plain:6.2f}x")


if __name__ == "__main__":
    main()
