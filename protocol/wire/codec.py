"""Encode, decode and validate messages (DESIGN.md section 5).

A frame is one msgpack map `{"v", "kind", "run", "src", "seq", "round"|"step", "body"}`. Arrays in
the body travel as `{"dtype", "shape", "data"}` with raw little-endian bytes; never pickle. `decode`
accepts any bytes and either returns a valid `Message` or raises `ProtocolError`, nothing else.
Value checks are vectorised numpy reductions (one pass each), so validation stays cheap; the
schema tables are compiled once into per-kind plans so the per-message path does no table walking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import msgpack
import numpy as np

from protocol.wire.arrays import (
    INT64_MAX,
    INT64_MIN,
    DEFAULT_LIMITS,
    Limits,
    ProtocolError,
    array_from_wire,
    array_to_wire,
    ArrayRule,
    check_array,
    check_indices,
    short,
)
from protocol.wire.messages import (
    COUNTER,
    MIN_SENDER_ID,
    PROTOCOL_VERSION,
    SCHEMAS,
    Array,
    Bool,
    IdList,
    IdMap,
    Int,
    Kind,
    Message,
    Schema,
    Spec,
    Str,
    Tree,
)

def encode(msg: Message, *, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Validate `msg` against its schema, then pack it into one frame."""
    plan = _validate(msg, limits)
    envelope: dict[str, Any] = {
        "v": PROTOCOL_VERSION, "kind": plan.name, "run": msg.run, "src": msg.src, "seq": msg.seq,
    }
    if plan.counter is not None:
        envelope[plan.counter] = getattr(msg, plan.counter)
    envelope["body"] = {
        name: array_to_wire(value) if isinstance(value, np.ndarray) else value
        for name, value in msg.body.items()
    }
    frame = msgpack.packb(envelope, use_bin_type=True)
    if len(frame) > limits.max_frame_bytes:
        raise ProtocolError(f"frame of {len(frame)} bytes exceeds {limits.max_frame_bytes}",
                            kind=msg.kind, src=msg.src)
    return frame


def decode(frame: bytes, *, run: str | None = None, limits: Limits = DEFAULT_LIMITS) -> Message:
    """Unpack and validate one frame; `run`, when given, must equal the frame's run id."""
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"frame must be bytes, got {type(frame).__name__}")
    size = memoryview(frame).nbytes
    if size > limits.max_frame_bytes:
        raise ProtocolError(f"frame of {size} bytes exceeds {limits.max_frame_bytes}")
    try:
        wire = msgpack.unpackb(
            frame, raw=False, strict_map_key=True, ext_hook=_reject_ext,
            max_str_len=limits.max_str_len, max_bin_len=limits.max_frame_bytes,
            max_array_len=limits.max_list_len, max_map_len=limits.max_map_len, max_ext_len=0,
        )
    except Exception as err:  # msgpack raises many types (ExtraData, FormatError, ValueError, ...)
        raise ProtocolError(f"not a valid msgpack frame: {type(err).__name__}: {err}") from None
    try:
        return _from_wire(wire, run, limits)
    except ProtocolError as err:
        raise _blame(err, wire) from None
    except Exception as err:  # a bug in a check must still surface as a ProtocolError
        raise _blame(ProtocolError(f"internal: {type(err).__name__}: {err}"), wire) from err


def validate(msg: Message, limits: Limits = DEFAULT_LIMITS) -> None:
    """Raise ProtocolError unless `msg` obeys the envelope rules and its kind's schema."""
    _validate(msg, limits)


def _validate(msg: Message, limits: Limits) -> _Plan:
    """`validate`, returning the plan of the message's kind for `encode`."""
    kind = msg.kind
    if not isinstance(kind, Kind):
        raise ProtocolError(f"unknown kind {short(kind)}")
    plan = _PLANS[kind]
    _check_str(_ANY_STR, "run", msg.run, limits)
    _check_int(_SRC, "src", msg.src, limits)
    _check_int(_COUNT, "seq", msg.seq, limits)
    for name, where in (("round", plan.round_where), ("step", plan.step_where)):
        value = getattr(msg, name)
        if name == plan.counter:
            _check_int(_COUNT, where, value, limits)
        elif value is not None:
            raise ProtocolError(f"{plan.name} carries no {name} counter, got {short(value)}")
    _check_body(plan, msg.body, limits)
    return plan


# ---- envelope ----------------------------------------------------------------------------------

_ANY_STR = Str()
_ANY_INT = Int()
_SRC = Int(min=MIN_SENDER_ID)
_COUNT = Int(min=0)
_KINDS = {k.value: k for k in Kind}
_BASE_KEYS = frozenset({"v", "kind", "run", "src", "seq", "body"})


def _reject_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack ext type {code} is not allowed")


def _from_wire(wire: Any, run: str | None, limits: Limits) -> Message:
    if type(wire) is not dict:
        raise ProtocolError(f"frame must be a map, got {type(wire).__name__}")
    version = wire.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {short(version)} (expected {PROTOCOL_VERSION})")
    name = wire.get("kind")
    kind = _KINDS.get(name) if type(name) is str else None
    if kind is None:
        raise ProtocolError(f"unknown kind {short(name)}")
    plan = _PLANS[kind]
    if wire.keys() != plan.envelope:
        missing, extra = _names(plan.envelope - wire.keys()), _names(wire.keys() - plan.envelope)
        raise ProtocolError(f"{plan.name} envelope: missing {missing}, unexpected {extra}")
    body = wire["body"]
    if type(body) is not dict:
        raise ProtocolError(f"{plan.name} body must be a map, got {type(body).__name__}")
    arrays = plan.arrays
    body = {
        name: array_from_wire(arrays[name], value, limits) if name in arrays else value
        for name, value in body.items()
    }
    msg = Message(kind, wire["run"], wire["src"], wire["seq"], body,
                  round=wire.get("round"), step=wire.get("step"))
    _validate(msg, limits)
    if run is not None and msg.run != run:
        raise ProtocolError(f"run id {short(msg.run)} does not match this run {run!r}")
    return msg


def _blame(err: ProtocolError, wire: Any) -> ProtocolError:
    """Attach the kind and sender of the offending frame to `err`, when the frame says them."""
    if type(wire) is dict:
        name, src = wire.get("kind"), wire.get("src")
        err.kind = _KINDS.get(name) if type(name) is str else None
        err.src = src if type(src) is int else None
    return err


# ---- body --------------------------------------------------------------------------------------

FieldCheck = Callable[[str, Any, Limits], None]  # (where, value, limits); raises ProtocolError


@dataclass(frozen=True)
class _Plan:
    """One kind's schema compiled for the per-message path: names, paths and checkers looked up once."""

    name: str  # the kind's wire name
    counter: str | None
    round_where: str  # "DIST round": where a bad counter is reported
    step_where: str
    envelope: frozenset[str]
    names: frozenset[str]  # every body field
    fields: tuple[tuple[str, str, bool, FieldCheck], ...]  # (name, "KIND.name", required, check), schema order
    arrays: dict[str, str]  # array field -> "KIND.name"
    schema: Schema


def _compile(kind: Kind) -> _Plan:
    schema, counter = SCHEMAS[kind], COUNTER[kind]
    paths = {name: f"{kind.value}.{name}" for name in schema.fields}
    checks = {name: partial(_CHECKERS[type(spec)], spec) if not isinstance(spec, Array)
              else partial(check_array, ArrayRule.of(spec)) for name, spec in schema.fields.items()}
    return _Plan(
        name=kind.value, counter=counter, round_where=f"{kind.value} round", step_where=f"{kind.value} step",
        envelope=_BASE_KEYS | ({counter} if counter else set()),
        names=frozenset(schema.fields),
        fields=tuple((name, paths[name], spec.required, checks[name]) for name, spec in schema.fields.items()),
        arrays={name: paths[name] for name, spec in schema.fields.items() if isinstance(spec, Array)},
        schema=schema,
    )


def _check_body(plan: _Plan, body: Any, limits: Limits) -> None:
    if type(body) is not dict:
        raise ProtocolError(f"{plan.name} body must be a dict, got {type(body).__name__}")
    if not body.keys() <= plan.names:
        raise ProtocolError(f"{plan.name}: unknown field(s) {_names(body.keys() - plan.names)}")
    for name, where, required, check in plan.fields:
        if name in body:
            check(where, body[name], limits)
        elif required:
            raise ProtocolError(f"{plan.name}: missing required field {name!r}")
    schema = plan.schema
    for group in schema.together:
        present = [name in body for name in group]
        if any(present) and not all(present):
            raise ProtocolError(f"{plan.name}: fields {list(group)} must come together or not at all")
    for a, b in schema.same_rows:
        if a in body and b in body and body[a].shape[0] != body[b].shape[0]:
            raise ProtocolError(f"{plan.name}.{a}: {body[a].shape[0]} rows but {b} has {body[b].shape[0]}")
    for a, b in schema.index_into:
        if a in body and b in body:
            check_indices(f"{plan.name}.{a}", body[a], body[b].shape[1])


def _check_int(spec: Int, where: str, value: Any, limits: Limits) -> None:
    if type(value) is not int:  # bool is a subclass of int: excluded on purpose
        raise ProtocolError(f"{where}: expected int, got {type(value).__name__}")
    low = INT64_MIN if spec.min is None else spec.min
    if not low <= value <= INT64_MAX:
        raise ProtocolError(f"{where}: {value} outside [{low}, {INT64_MAX}]")


def _check_bool(spec: Bool, where: str, value: Any, limits: Limits) -> None:
    if type(value) is not bool:
        raise ProtocolError(f"{where}: expected bool, got {type(value).__name__}")


def _check_str(spec: Str, where: str, value: Any, limits: Limits) -> None:
    if type(value) is not str:
        raise ProtocolError(f"{where}: expected str, got {type(value).__name__}")
    if len(value) > limits.max_str_len:
        raise ProtocolError(f"{where}: string of {len(value)} chars exceeds {limits.max_str_len}")
    if spec.choices is not None and value not in spec.choices:
        raise ProtocolError(f"{where}: {short(value)} not one of {sorted(spec.choices)}")


def _check_id_list(spec: IdList, where: str, value: Any, limits: Limits) -> None:
    if type(value) is not list:
        raise ProtocolError(f"{where}: expected list of agent ids, got {type(value).__name__}")
    if len(value) > limits.max_list_len:
        raise ProtocolError(f"{where}: {len(value)} entries exceed {limits.max_list_len}")
    for i, item in enumerate(value):
        if type(item) is not int or not 0 <= item <= INT64_MAX:
            raise ProtocolError(f"{where}[{i}]: agent id must be an int >= 0, got {short(item)}")


def _check_id_map(spec: IdMap, where: str, value: Any, limits: Limits) -> None:
    if type(value) is not dict:
        raise ProtocolError(f"{where}: expected map agent id -> str, got {type(value).__name__}")
    if len(value) > limits.max_map_len:
        raise ProtocolError(f"{where}: {len(value)} entries exceed {limits.max_map_len}")
    for key, item in value.items():
        if type(key) is not str or not (key.isascii() and key.isdigit() and str(int(key)) == key):
            raise ProtocolError(f"{where}: key {short(key)} is not a decimal agent id")
        _check_str(_ANY_STR, f"{where}[{key}]", item, limits)


def _check_tree(spec: Tree, where: str, value: Any, limits: Limits) -> None:
    if type(value) is not dict:
        raise ProtocolError(f"{where}: expected a map, got {type(value).__name__}")
    _check_node(where, value, limits, depth=1)


def _check_node(where: str, value: Any, limits: Limits, depth: int) -> None:
    kind = type(value)
    if kind in (dict, list) and depth > limits.max_depth:
        raise ProtocolError(f"{where}: nested deeper than {limits.max_depth}")
    if kind is dict:
        if len(value) > limits.max_map_len:
            raise ProtocolError(f"{where}: {len(value)} entries exceed {limits.max_map_len}")
        for key, item in value.items():
            if type(key) is not str or len(key) > limits.max_str_len:
                raise ProtocolError(f"{where}: key {short(key)} must be a str of <= {limits.max_str_len} chars")
            _check_node(f"{where}.{key}", item, limits, depth + 1)
    elif kind is list:
        if len(value) > limits.max_list_len:
            raise ProtocolError(f"{where}: {len(value)} entries exceed {limits.max_list_len}")
        for i, item in enumerate(value):
            _check_node(f"{where}[{i}]", item, limits, depth + 1)
    elif kind is str:
        _check_str(_ANY_STR, where, value, limits)
    elif kind is int:
        _check_int(_ANY_INT, where, value, limits)
    elif kind is float:
        if not math.isfinite(value):
            raise ProtocolError(f"{where}: {value} is not finite")
    elif not (value is None or kind is bool):
        raise ProtocolError(f"{where}: {kind.__name__} not allowed (maps, lists, scalars only)")


def _names(keys: Any) -> str:
    """Keys of any type (bytes keys are possible) as a sorted, readable list."""
    return "[" + ", ".join(sorted(map(short, keys))) + "]"


_CHECKERS: dict[type[Spec], Callable[[Any, str, Any, Limits], None]] = {
    Int: _check_int,
    Bool: _check_bool,
    Str: _check_str,
    IdList: _check_id_list,
    IdMap: _check_id_map,
    Tree: _check_tree,
}
_PLANS: dict[Kind, _Plan] = {kind: _compile(kind) for kind in Kind}
