"""Codec: every kind round-trips; every validation rule rejects with a reason naming the problem."""

from __future__ import annotations

import math
from typing import Any, Callable

import msgpack
import numpy as np
import pytest

from protocol.wire.codec import DEFAULT_LIMITS, Limits, ProtocolError, decode, encode
from protocol.wire.messages import (
    CENTRAL_LEARNER_ID,
    COORDINATOR_ID,
    COUNTER,
    ENVSERVER_ID,
    PRIVATE_FIELDS,
    Kind,
    Message,
)

RUN = "run-7"


def distributions(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    return rng.dirichlet(np.ones(cols), size=rows).astype(np.float32)


def valid_messages() -> dict[Kind, Message]:
    """One valid message per kind, with every optional field present."""
    rng = np.random.default_rng(0)
    probs = distributions(rng, 100, 9)
    actions = rng.integers(0, 9, 100)
    behaviour = probs[np.arange(100), actions]
    params = rng.normal(size=50).astype(np.float32)
    config = {"env": "predation", "rho": 10.0, "hidden": [128, 64], "neighbors": {"0": [1]}, "x": None}
    bodies: dict[Kind, dict[str, Any]] = {
        Kind.HELLO: {"role": "agent", "endpoint": "tcp://127.0.0.1:5000", "neighbors": [1, 2], "pubkey": "k"},
        Kind.DIRECTORY: {"config": config, "agents": [0, 1, 2], "neighbors": [1],
                         "peers": {"1": "tcp://127.0.0.1:5001"}, "envserver": "tcp://127.0.0.1:6000"},
        Kind.READY: {"role": "agent"},
        Kind.START: {},
        Kind.STOP: {"reason": "done"},
        Kind.HEARTBEAT: {"role": "envserver"},
        Kind.RESET: {"episode": 3},
        Kind.STEP: {"episode": 3, "actions": np.array([1, 0, 1], np.int64)},
        Kind.OBS: {"episode": 3, "to": 1, "obs": rng.random((3, 8)).astype(np.float32),
                   "reward": np.array([-1.0, 0.0, -2.0], np.float32),
                   "terminated": np.array([False, False, True]), "truncated": np.zeros(3, bool),
                   "mask": np.array([[True, False], [False, False], [True, True]]), "default_used": True},
        Kind.EPISODE_END: {"episode": 3, "reason": "time limit"},
        Kind.DIST: {"probs": probs, "actions": actions, "behaviour": behaviour},
        Kind.SUGG: {"to": 4, "probs": distributions(rng, 100, 5)},
        Kind.ADV: {"advantages": rng.normal(size=100).astype(np.float32)},
        Kind.CRITIC_PARAMS: {"params": params},
        Kind.POLICY_PARAMS: {"owner": 2, "params": params},
        Kind.REWARD: {"rewards": rng.normal(size=100).astype(np.float32)},
    }
    src = {Kind.DIRECTORY: COORDINATOR_ID, Kind.START: COORDINATOR_ID, Kind.STOP: COORDINATOR_ID,
           Kind.OBS: ENVSERVER_ID, Kind.EPISODE_END: ENVSERVER_ID, Kind.HEARTBEAT: ENVSERVER_ID}
    return {
        kind: Message(kind, RUN, src.get(kind, 3), 11, body, **({COUNTER[kind]: 5} if COUNTER[kind] else {}))
        for kind, body in bodies.items()
    }


def assert_same(a: Message, b: Message) -> None:
    assert (a.kind, a.run, a.src, a.seq, a.round, a.step) == (b.kind, b.run, b.src, b.seq, b.round, b.step)
    assert a.body.keys() == b.body.keys()
    for name, value in a.body.items():
        if isinstance(value, np.ndarray):
            got = b.body[name]
            assert isinstance(got, np.ndarray)
            assert (got.dtype, got.shape) == (value.dtype, value.shape)
            np.testing.assert_array_equal(got, value)
        else:
            assert b.body[name] == value


def wire_of(kind: Kind) -> dict[str, Any]:
    """The unpacked envelope of the valid message of `kind`, ready to be mutated."""
    return msgpack.unpackb(encode(valid_messages()[kind]))


def pack(wire: Any) -> bytes:
    return msgpack.packb(wire, use_bin_type=True)


def array(a: np.ndarray) -> dict[str, Any]:
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()}


def rejects(frame: bytes, match: str, **kwargs: Any) -> ProtocolError:
    with pytest.raises(ProtocolError, match=match) as info:
        decode(frame, **kwargs)
    return info.value


# ---- round trips -------------------------------------------------------------------------------


def test_every_kind_has_a_valid_example() -> None:
    assert set(valid_messages()) == set(Kind)


@pytest.mark.parametrize("kind", list(Kind))
def test_round_trip(kind: Kind) -> None:
    msg = valid_messages()[kind]
    back = decode(encode(msg), run=RUN)
    assert_same(msg, back)


@pytest.mark.parametrize(("kind", "dropped"), [
    (Kind.OBS, ("reward",)), (Kind.DIST, ("actions", "behaviour")), (Kind.HELLO, ("neighbors", "pubkey")),
])
def test_optional_fields_may_be_absent(kind: Kind, dropped: tuple[str, ...]) -> None:
    msg = valid_messages()[kind]
    body = {k: v for k, v in msg.body.items() if k not in dropped}
    short = Message(kind, RUN, msg.src, msg.seq, body, round=msg.round, step=msg.step)
    assert_same(short, decode(encode(short)))


def test_edge_values_are_accepted() -> None:
    probs = np.array([[-0.0, 1.0], [0.5, 0.5]], np.float32)  # -0.0 is a probability
    msg = Message(Kind.DIST, RUN, 0, 0, {"probs": probs, "actions": np.array([1, 0]),
                                          "behaviour": np.array([1.0, 0.5], np.float32)}, round=0)
    assert_same(msg, decode(encode(msg)))
    empty = Message(Kind.SUGG, RUN, 0, 0, {"to": 1, "probs": np.zeros((0, 3), np.float32)}, round=0)
    assert_same(empty, decode(encode(empty)))


def test_decoded_arrays_are_numpy_views_of_the_frame() -> None:
    got = decode(encode(valid_messages()[Kind.DIST])).body["probs"]
    assert got.dtype == np.float32 and not got.flags.writeable


def test_private_fields_name_rewards_values_params_and_observations() -> None:
    assert PRIVATE_FIELDS == {
        Kind.OBS: {"obs", "reward"}, Kind.ADV: {"advantages"}, Kind.CRITIC_PARAMS: {"params"},
        Kind.POLICY_PARAMS: {"params"}, Kind.REWARD: {"rewards", "obs", "last_obs"},
    }
    assert Kind.DIST not in PRIVATE_FIELDS and Kind.SUGG not in PRIVATE_FIELDS


def test_special_sender_ids_are_accepted_and_lower_ones_rejected() -> None:
    for src in (COORDINATOR_ID, ENVSERVER_ID, CENTRAL_LEARNER_ID):
        wire = wire_of(Kind.READY)
        wire["src"] = src
        assert decode(pack(wire)).src == src
    wire = wire_of(Kind.READY)
    wire["src"] = CENTRAL_LEARNER_ID - 1
    rejects(pack(wire), r"src: -4 outside \[-3")


# ---- envelope rules ----------------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _set(path: tuple[str, ...], value: Any) -> Mutation:
    def mutate(wire: dict[str, Any]) -> None:
        node = wire
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return mutate


def _drop(path: tuple[str, ...]) -> Mutation:
    def mutate(wire: dict[str, Any]) -> None:
        node = wire
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return mutate


def _rows(p: list[list[float]]) -> dict[str, Any]:
    return array(np.array(p, np.float32))


_BAD_PROBS_SUM = np.full((5, 2), 0.5, np.float32)
_BAD_PROBS_SUM[3] = [0.6, 0.6]

CASES: list[tuple[Kind, Mutation, str]] = [
    (Kind.READY, _set(("v",), 2), r"unsupported protocol version 2"),
    (Kind.READY, _set(("v",), True), r"unsupported protocol version True"),
    (Kind.READY, _set(("kind",), "NOPE"), r"unknown kind 'NOPE'"),
    (Kind.READY, _set(("kind",), ["DIST"]), r"unknown kind"),
    (Kind.READY, _set(("src",), True), r"src: expected int, got bool"),
    (Kind.READY, _set(("seq",), 1.0), r"seq: expected int, got float"),
    (Kind.READY, _set(("seq",), -1), r"seq: -1 outside"),
    (Kind.READY, _set(("run",), 5), r"run: expected str, got int"),
    (Kind.READY, _set(("extra",), 1), r"READY envelope: missing \[\], unexpected \['extra'\]"),
    (Kind.READY, _drop(("seq",)), r"READY envelope: missing \['seq'\]"),
    (Kind.READY, _set(("round",), 1), r"unexpected \['round'\]"),
    (Kind.DIST, _drop(("round",)), r"DIST envelope: missing \['round'\]"),
    (Kind.STEP, _set(("step",), False), r"STEP step: expected int, got bool"),
    (Kind.READY, _set(("body",), []), r"READY body must be a map"),
    # body fields
    (Kind.READY, _set(("body", "colour"), "red"), r"READY: unknown field\(s\) \['colour'\]"),
    (Kind.STOP, _drop(("body", "reason")), r"STOP: missing required field 'reason'"),
    (Kind.RESET, _set(("body", "episode"), True), r"RESET.episode: expected int, got bool"),
    (Kind.RESET, _set(("body", "episode"), -1), r"RESET.episode: -1 outside"),
    (Kind.OBS, _set(("body", "truncated"), 1), r"OBS.truncated: expected an array map"),
    (Kind.HELLO, _set(("body", "role"), "king"), r"HELLO.role: 'king' not one of"),
    (Kind.HELLO, _set(("body", "neighbors"), [1, True]), r"HELLO.neighbors\[1\]: agent id must be"),
    (Kind.HELLO, _set(("body", "neighbors"), [-1]), r"HELLO.neighbors\[0\]: agent id must be"),
    (Kind.DIRECTORY, _set(("body", "peers"), {"01": "x"}), r"DIRECTORY.peers: key '01' is not a decimal"),
    (Kind.DIRECTORY, _set(("body", "peers"), {"1": 5}), r"DIRECTORY.peers\[1\]: expected str"),
    (Kind.DIRECTORY, _set(("body", "config", "rho"), math.nan), r"DIRECTORY.config.rho: nan is not finite"),
    (Kind.DIRECTORY, _set(("body", "config", "rho"), math.inf), r"DIRECTORY.config.rho: inf is not finite"),
    (Kind.DIRECTORY, _set(("body", "config"), [1]), r"DIRECTORY.config: expected a map"),
    (Kind.DIRECTORY, _set(("body", "config", "deep"), [[[[[[[[1]]]]]]]]), r"nested deeper than 8"),
    (Kind.DIRECTORY, _set(("body", "config", "b"), b"raw"), r"DIRECTORY.config.b: bytes not allowed"),
    # arrays
    (Kind.DIST, _set(("body", "probs", "dtype"), "<f2"), r"DIST.probs: dtype '<f2' not allowed"),
    (Kind.DIST, _set(("body", "probs", "dtype"), "O"), r"DIST.probs: dtype 'O' not allowed"),
    (Kind.DIST, _set(("body", "probs"), array(np.full((2, 2), 0.5))), r"DIST.probs: dtype <f8 not allowed here"),
    (Kind.DIST, _set(("body", "probs", "shape"), [100, 10]), r"DIST.probs: shape \[100, 10\] of <f4 needs 4000 bytes, data has 3600"),
    (Kind.DIST, _set(("body", "probs", "shape"), [2**20, 2**20]), r"shape \[1048576, 1048576\] has 1099511627776 elements, limit 16777216"),
    (Kind.DIST, _set(("body", "probs", "shape"), [2**40, 0]), r"non-negative ints <= 16777216"),
    (Kind.DIST, _set(("body", "probs", "shape"), [100, -9]), r"shape must be a list of <= 5 non-negative ints"),
    (Kind.DIST, _set(("body", "probs", "shape"), [1] * 6), r"shape must be a list of <= 5"),
    (Kind.DIST, _set(("body", "probs", "shape"), [900]), r"DIST.probs: ndim 1, expected 2"),
    (Kind.DIST, _set(("body", "probs", "data"), "text"), r"data has str"),
    (Kind.DIST, _set(("body", "probs", "order"), "F"), r"expected an array map with keys dtype, shape, data"),
    (Kind.DIST, _set(("body", "probs"), _rows([[0.5, math.nan]])), r"DIST.probs: value nan at \[0, 1\] must be a probability"),
    (Kind.DIST, _set(("body", "probs"), _rows([[0.5, 0.5], [math.inf, 0.0]])), r"value inf at \[1, 0\]"),
    (Kind.DIST, _set(("body", "probs"), _rows([[0.5, 0.5], [-0.1, 1.1]])), r"value -0.1\d* at \[1, 0\] must be a probability in \[0, 1\]"),
    (Kind.DIST, _set(("body", "probs"), array(_BAD_PROBS_SUM)), r"DIST.probs: row 3 sums to 1.2 \(must be 1 within 0.0001\)"),
    (Kind.DIST, _set(("body", "actions"), array(np.arange(99))), r"DIST.actions: 99 rows but probs has 100"),
    (Kind.DIST, _set(("body", "actions"), array(np.full(100, 9))), r"DIST.actions: action index 9 at row 0 outside \[0, 9\)"),
    (Kind.DIST, _set(("body", "actions"), array(np.full(100, -1))), r"action index -1 at row 0"),
    (Kind.DIST, _set(("body", "actions"), array(np.zeros(100, np.int32))), r"DIST.actions: dtype <i4 not allowed here"),
    (Kind.DIST, _drop(("body", "behaviour")), r"DIST: fields \['actions', 'behaviour'\] must come together"),
    (Kind.DIST, _set(("body", "behaviour"), array(np.zeros(100, np.float32))), r"DIST.behaviour: value 0.0 at \[0\] must be in \(0, 1\]"),
    (Kind.DIST, _set(("body", "behaviour"), array(np.full(100, np.nan, np.float32))), r"value nan at \[0\] must be in \(0, 1\]"),
    (Kind.ADV, _set(("body", "advantages"), array(np.array([0.0, np.inf], np.float32))), r"ADV.advantages: value inf at \[1\] must be finite"),
    (Kind.OBS, _set(("body", "obs"), array(np.array([[np.nan]], np.float32))), r"OBS.obs: value nan at \[0, 0\] must be finite"),
    (Kind.OBS, _set(("body", "mask", "data"), b"\x00\x02\x00\x00\x01\x01"), r"OBS.mask: value .* at \[0, 1\] is not a valid bool byte"),
    (Kind.OBS, _set(("body", "reward"), array(np.zeros(2, np.float32))), r"OBS.reward: 2 rows but obs has 3"),
    (Kind.OBS, _set(("body", "obs"), array(np.zeros(3, np.float32))), r"OBS.obs: ndim 1, expected >= 2"),
    (Kind.SUGG, _set(("body", "to"), -2), r"SUGG.to: -2 outside"),
]


@pytest.mark.parametrize(("kind", "mutate", "match"), CASES, ids=[c[2][:40] for c in CASES])
def test_rule_is_enforced(kind: Kind, mutate: Mutation, match: str) -> None:
    wire = wire_of(kind)
    mutate(wire)
    err = rejects(pack(wire), match)
    assert err.reason == str(err)


def test_error_names_kind_and_sender() -> None:
    wire = wire_of(Kind.DIST)
    wire["body"]["probs"] = array(_BAD_PROBS_SUM)
    err = rejects(pack(wire), "row 3")
    assert (err.kind, err.src) == (Kind.DIST, 3)


def test_wrong_run_id() -> None:
    rejects(encode(valid_messages()[Kind.READY]), r"run id 'run-7' does not match this run 'run-8'", run="run-8")


def test_oversize_frame_is_rejected_before_unpacking() -> None:
    frame = encode(valid_messages()[Kind.DIST])
    rejects(frame, rf"frame of {len(frame)} bytes exceeds 1000", limits=Limits(max_frame_bytes=1000))


@pytest.mark.parametrize(("frame", "match"), [
    (pack(msgpack.ExtType(5, b"x")), r"not a valid msgpack frame.*ext"),
    (pack({"v": 1, "kind": "READY", "t": msgpack.Timestamp(1)}), r"not a valid msgpack frame"),
    (b"\xc1", r"not a valid msgpack frame"),
    (b"", r"not a valid msgpack frame"),
    (pack({"v": 1}) + b"\x00", r"not a valid msgpack frame: ExtraData"),
    (pack({1: 2}), r"not a valid msgpack frame"),  # strict_map_key: only str keys
    (pack([1, 2]), r"frame must be a map, got list"),
    (pack("x" * 5000), r"not a valid msgpack frame.*4096"),
])
def test_malformed_frames(frame: bytes, match: str) -> None:
    rejects(frame, match)


def test_ext_inside_a_valid_envelope_is_rejected() -> None:
    wire = wire_of(Kind.STOP)
    wire["body"]["reason"] = msgpack.ExtType(1, b"\x00" * 4)
    rejects(pack(wire), r"not a valid msgpack frame")


def test_truncated_frame() -> None:
    frame = encode(valid_messages()[Kind.DIST])
    rejects(frame[:-1], r"not a valid msgpack frame")


def test_non_bytes_input() -> None:
    rejects("text", r"frame must be bytes, got str")  # type: ignore[arg-type]


# ---- encode refuses junk -----------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "field", "value", "match"), [
    (Kind.DIST, "probs", np.full((2, 2), 0.5), r"DIST.probs: dtype <f8 not allowed here"),
    (Kind.DIST, "probs", [[0.5, 0.5]], r"DIST.probs: expected a numpy array, got list"),
    (Kind.RESET, "episode", np.int64(3), r"RESET.episode: expected int, got int64"),
    (Kind.REWARD, "rewards", np.array([np.nan], np.float32), r"REWARD.rewards: value nan at \[0\] must be finite"),
    (Kind.DIRECTORY, "config", {"a": (1, 2)}, r"DIRECTORY.config.a: tuple not allowed"),
])
def test_encode_validates_first(kind: Kind, field: str, value: Any, match: str) -> None:
    msg = valid_messages()[kind]
    bad = Message(kind, RUN, msg.src, msg.seq, {**msg.body, field: value}, round=msg.round, step=msg.step)
    with pytest.raises(ProtocolError, match=match):
        encode(bad)


def test_encode_checks_the_counter_of_the_kind() -> None:
    with pytest.raises(ProtocolError, match=r"DIST round: expected int, got NoneType"):
        encode(Message(Kind.DIST, RUN, 0, 0, {"probs": np.ones((1, 1), np.float32)}, step=3))
    with pytest.raises(ProtocolError, match=r"START carries no round counter"):
        encode(Message(Kind.START, RUN, COORDINATOR_ID, 0, {}, round=1))


def test_encode_refuses_an_oversize_frame() -> None:
    with pytest.raises(ProtocolError, match=r"exceeds 1000"):
        encode(valid_messages()[Kind.DIST], limits=Limits(max_frame_bytes=1000))
    assert DEFAULT_LIMITS.max_frame_bytes == 64 * 2**20
