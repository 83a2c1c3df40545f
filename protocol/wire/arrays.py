"""The codec's arrays and limits: `{"dtype", "shape", "data"}` maps to and from numpy, the hard limits every
frame is decoded under, and the vectorised value checks of array fields (distribution rows, unit interval,
finiteness, action indices). `ProtocolError` is the only exception they raise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from protocol.wire.messages import PROB_TOL, Array, Kind

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_ARRAY_KEYS = frozenset({"dtype", "shape", "data"})
ALLOWED_DTYPES: dict[str, np.dtype] = {s: np.dtype(s) for s in ("<f4", "<f8", "<i4", "<i8", "|u1", "|b1")}


@dataclass(frozen=True)
class Limits:
    """Hard limits applied before and while unpacking a frame."""

    max_frame_bytes: int = 64 * 2**20
    max_array_elems: int = 2**24
    max_ndim: int = 5
    max_str_len: int = 4096
    max_list_len: int = 4096
    max_map_len: int = 256
    max_depth: int = 8


DEFAULT_LIMITS = Limits()


class ProtocolError(ValueError):
    """The only exception `decode` raises: `reason` says what is wrong; kind/src when known."""

    def __init__(self, reason: str, *, kind: Kind | None = None, src: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.src = src



def short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."



# ---- arrays ------------------------------------------------------------------------------------


def array_to_wire(a: np.ndarray) -> dict[str, Any]:
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()}


def array_from_wire(where: str, value: Any, limits: Limits) -> np.ndarray:
    """Rebuild an array from its wire map, checking the declared shape against the data first."""
    if type(value) is not dict or value.keys() != _ARRAY_KEYS:
        raise ProtocolError(f"{where}: expected an array map with keys dtype, shape, data")
    name, shape, data = value["dtype"], value["shape"], value["data"]
    dtype = ALLOWED_DTYPES.get(name) if type(name) is str else None
    if dtype is None:
        raise ProtocolError(f"{where}: dtype {short(name)} not allowed (allowed: {list(ALLOWED_DTYPES)})")
    top = limits.max_array_elems  # no single axis may be longer, even when another axis is 0
    if (type(shape) is not list or len(shape) > limits.max_ndim
            or not all(type(d) is int and 0 <= d <= top for d in shape)):
        raise ProtocolError(f"{where}: shape must be a list of <= {limits.max_ndim} non-negative ints "
                            f"<= {top}, got {short(shape)}")
    count = math.prod(shape)
    if count > limits.max_array_elems:
        raise ProtocolError(f"{where}: shape {shape} has {count} elements, limit {limits.max_array_elems}")
    # numpy sizes an array by the product of its non-zero axes even when another axis is 0, so bound
    # that too: [0, 2**20, 2**20] holds no element, yet numpy refuses it as "array is too big"
    if math.prod(max(d, 1) for d in shape) > top:
        raise ProtocolError(f"{where}: shape {shape} spans more than {top} elements along its non-zero axes")
    if type(data) is not bytes or len(data) != count * dtype.itemsize:
        got = len(data) if type(data) is bytes else type(data).__name__
        raise ProtocolError(f"{where}: shape {shape} of {name} needs {count * dtype.itemsize} bytes, data has {got}")
    return np.ndarray(shape, dtype, data)  # a read-only view of the frame's bytes, sized exactly as checked


@dataclass(frozen=True)
class ArrayRule:
    """An Array spec plus the ids of its dtypes' canonical objects (an id hit skips building `dtype.str`)."""

    spec: Array
    dtype_ids: frozenset[int]

    @staticmethod
    def of(spec: Array) -> "ArrayRule":
        return ArrayRule(spec, frozenset(id(ALLOWED_DTYPES[s]) for s in spec.dtypes))


def check_array(rule: ArrayRule, where: str, a: Any, limits: Limits) -> None:
    spec = rule.spec
    if not isinstance(a, np.ndarray):
        raise ProtocolError(f"{where}: expected a numpy array, got {type(a).__name__}")
    if id(a.dtype) not in rule.dtype_ids and a.dtype.str not in spec.dtypes:
        raise ProtocolError(f"{where}: dtype {a.dtype.str} not allowed here (expected {list(spec.dtypes)})")
    if (spec.ndim is not None and a.ndim != spec.ndim) or a.ndim < spec.min_ndim:
        want = spec.ndim if spec.ndim is not None else f">= {spec.min_ndim}"
        raise ProtocolError(f"{where}: ndim {a.ndim}, expected {want}")
    if a.ndim > limits.max_ndim or a.size > limits.max_array_elems:
        raise ProtocolError(f"{where}: shape {list(a.shape)} exceeds the limits")
    if spec.distribution_rows:
        _check_distribution_rows(where, a)
    elif a.size == 0:
        return
    elif spec.unit_interval:
        if not _all_in_half_open_unit(a):
            _raise_first_bad(where, a, (a > 0) & (a <= 1), "must be in (0, 1]")
    elif a.dtype.kind == "f":
        if not _all_finite(a):
            _raise_first_bad(where, a, np.isfinite(a), "must be finite")
    elif a.dtype.kind == "b" and _max(a.view(_U8), None) > 1:
        _raise_first_bad(where, a, a.view(_U8) <= 1, "is not a valid bool byte")


def _check_distribution_rows(where: str, p: np.ndarray) -> None:
    """Every row of p is a probability distribution: entries in [0, 1], summing to 1 within PROB_TOL."""
    if p.size and not _all_in_closed_unit(p):
        _raise_first_bad(where, p, (p >= 0) & (p <= 1), "must be a probability in [0, 1]")
    n = p.shape[1]
    deviation = p @ (_ONES[:n] if n <= _ONES.size else np.ones(n, np.float32))
    deviation -= 1  # in place: the row sums are a fresh array
    # sum of squares <= tol^2 implies every |deviation| <= tol; only if it fails look row by row, and decide
    # on float64 sums: float32 rounding may put a row that is within the tolerance just outside it
    if deviation.size and np.dot(deviation, deviation) > PROB_TOL**2 and np.abs(deviation).max() > PROB_TOL:
        exact = np.abs(p.astype(np.float64).sum(axis=1) - 1)
        if exact.max() > PROB_TOL:
            row = int(exact.argmax())
            raise ProtocolError(f"{where}: row {row} sums to {float(p[row].astype(np.float64).sum()):.6g} "
                                f"(must be 1 within {PROB_TOL:g})")


# Full reductions (axis=None) straight on the ufuncs: ndarray.max/min add a Python wrapper per call,
# which on the small arrays of a message costs as much as the reduction itself.
_max = np.maximum.reduce
_U8, _U32, _U64 = np.dtype(np.uint8), np.dtype(np.uint32), np.dtype(np.uint64)

# For float32 x >= +0.0 the uint32 bit patterns order like the values; NaN, +inf and anything with
# the sign bit set compare above the pattern of 1.0, so one integer max checks range and finiteness.
_F32_ONE_BITS = 0x3F800000
_ONE_U32 = np.uint32(1)
_ONES = np.ones(1024, np.float32)  # row sums as one matmul, without allocating ones each time
_ONES.flags.writeable = False


def _all_in_closed_unit(a: np.ndarray) -> bool:
    """All values in [0, 1] (and so finite); -0.0 takes the exact path."""
    if a.dtype.char == "f" and _max(a.view(_U32), None) <= _F32_ONE_BITS:
        return True
    return bool(a.min() >= 0 and a.max() <= 1)  # NaN fails both comparisons


def _all_in_half_open_unit(a: np.ndarray) -> bool:
    """All values in (0, 1]. For float32, bits - 1 (wrapping) < bits(1.0) holds exactly for the
    patterns 1 .. bits(1.0), i.e. the values in (0, 1]; +0.0 wraps to the top, -0.0 and NaN lie above."""
    if a.dtype.char == "f":
        return bool(_max(a.view(_U32) - _ONE_U32, None) < _F32_ONE_BITS)
    return bool(a.min() > 0 and a.max() <= 1)  # NaN fails both comparisons


def _all_finite(a: np.ndarray) -> bool:
    """No NaN or infinity. Any of them makes the sum non-finite, so one sum clears the common case; a
    sum that overflowed from finite values takes the exact path."""
    return math.isfinite(np.add.reduce(a, None)) or bool(np.isfinite(a).all())


def check_indices(where: str, actions: np.ndarray, n: int) -> None:
    """0 <= actions < n; negatives wrap to huge values in the unsigned view, so one max suffices."""
    if actions.size and _max(actions.view(_U64), None) >= n:
        bad = int(np.flatnonzero((actions < 0) | (actions >= n))[0])
        raise ProtocolError(f"{where}: action index {int(actions[bad])} at row {bad} outside [0, {n})")


def _raise_first_bad(where: str, a: np.ndarray, ok: np.ndarray, rule: str) -> None:
    index = np.unravel_index(int(np.flatnonzero(~ok)[0]), a.shape)
    at = ", ".join(str(int(i)) for i in index)
    raise ProtocolError(f"{where}: value {a[index].item()!r} at [{at}] {rule}")
