"""Message kinds, the envelope record, and one schema per kind (DESIGN.md section 5).

Everything here is declarative: `protocol/wire/codec.py` walks these tables to validate a message on the
way out and on the way in, and the audit reads `PRIVATE_FIELDS` from them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

PROTOCOL_VERSION = 1

# Sender ids: agents are 0..N-1; the other processes have fixed negative ids.
COORDINATOR_ID = -1
ENVSERVER_ID = -2
CENTRAL_LEARNER_ID = -3
MIN_SENDER_ID = CENTRAL_LEARNER_ID

ROLES = frozenset({"agent", "envserver", "learner"})


class Kind(str, enum.Enum):
    """Every message kind; the value is what travels on the wire."""

    # control (coordinator <-> every process)
    HELLO = "HELLO"
    DIRECTORY = "DIRECTORY"
    READY = "READY"
    START = "START"
    STOP = "STOP"
    HEARTBEAT = "HEARTBEAT"
    # env (agent <-> env server)
    RESET = "RESET"
    STEP = "STEP"
    OBS = "OBS"
    EPISODE_END = "EPISODE_END"
    # peer (agent -> neighbours)
    DIST = "DIST"
    SUGG = "SUGG"
    # baselines (DESIGN.md section 4)
    ADV = "ADV"
    CRITIC_PARAMS = "CRITIC_PARAMS"
    POLICY_PARAMS = "POLICY_PARAMS"
    REWARD = "REWARD"


CONTROL_KINDS = frozenset({Kind.HELLO, Kind.DIRECTORY, Kind.READY, Kind.START, Kind.STOP, Kind.HEARTBEAT})
ENV_KINDS = frozenset({Kind.RESET, Kind.STEP, Kind.OBS, Kind.EPISODE_END})
PEER_KINDS = frozenset({Kind.DIST, Kind.SUGG})
BASELINE_KINDS = frozenset({Kind.ADV, Kind.CRITIC_PARAMS, Kind.POLICY_PARAMS, Kind.REWARD})

# The envelope counter each kind carries: exchange rounds, env steps, or none (control).
COUNTER: dict[Kind, str | None] = {
    **{k: None for k in CONTROL_KINDS},
    **{k: "step" for k in ENV_KINDS},
    **{k: "round" for k in PEER_KINDS | BASELINE_KINDS},
}


@dataclass(frozen=True)
class Message:
    """One decoded (or to-be-encoded) message. Arrays in `body` are numpy arrays."""

    kind: Kind
    run: str
    src: int
    seq: int
    body: dict[str, Any]
    round: int | None = None
    step: int | None = None


# ---- field specs -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Spec:
    """What every field spec has: whether the field must be present, and whether it is private."""

    required: bool = True
    private: bool = False  # rewards, values/advantages, parameters, observations


@dataclass(frozen=True, kw_only=True)
class Int(Spec):
    """A Python int (never a bool), optionally bounded below."""

    min: int | None = None


@dataclass(frozen=True, kw_only=True)
class Bool(Spec):
    """A bool."""


@dataclass(frozen=True, kw_only=True)
class Str(Spec):
    """A str, optionally from a fixed set."""

    choices: frozenset[str] | None = None


@dataclass(frozen=True, kw_only=True)
class IdList(Spec):
    """A list of agent ids (ints >= 0)."""


@dataclass(frozen=True, kw_only=True)
class IdMap(Spec):
    """A map from str(agent id) to a str (an endpoint)."""


@dataclass(frozen=True, kw_only=True)
class Tree(Spec):
    """A str-keyed map of nested maps, lists and scalars (finite floats), depth-bounded."""


@dataclass(frozen=True, kw_only=True)
class Array(Spec):
    """A numpy array: allowed dtypes (numpy `dtype.str`), exact or minimum ndim, value rules."""

    dtypes: tuple[str, ...]
    ndim: int | None = None
    min_ndim: int = 0
    distribution_rows: bool = False  # each row in [0, 1] summing to 1 (within PROB_TOL)
    unit_interval: bool = False  # every value in (0, 1]


PROB_TOL = 1e-4

F32 = ("<f4",)
I64 = ("<i8",)
BOOL = ("|b1",)


@dataclass(frozen=True)
class Schema:
    """The body of one kind: its fields plus the rules that relate fields to each other."""

    fields: dict[str, Spec]
    together: tuple[tuple[str, ...], ...] = ()  # present together or absent together
    same_rows: tuple[tuple[str, str], ...] = ()  # (a, b): a.shape[0] == b.shape[0]
    index_into: tuple[tuple[str, str], ...] = ()  # (a, b): 0 <= a < b.shape[1]


SCHEMAS: dict[Kind, Schema] = {
    Kind.HELLO: Schema({
        "role": Str(choices=ROLES),
        "endpoint": Str(),
        "neighbors": IdList(required=False),
        "pubkey": Str(required=False),
    }),
    Kind.DIRECTORY: Schema({
        "config": Tree(),
        "agents": IdList(),
        "neighbors": IdList(),
        "peers": IdMap(),
        "envserver": Str(),
        "learner": Str(required=False),  # the central learner's ROUTER (algo cl)
        "resume": Bool(required=False),  # continue from checkpoints (READY lists each process's)
    }),
    Kind.READY: Schema({"role": Str(), "checkpoints": IdList(required=False)}),  # updates it can resume from
    # the update every process continues from; for a process that rejoins a running run, the checkpoint it
    # loads when that differs (the env server restores its newest world state and plays on from `update`)
    Kind.START: Schema({"update": Int(min=0, required=False), "checkpoint": Int(min=0, required=False)}),
    Kind.STOP: Schema({"reason": Str()}),
    # after START, every few seconds: alive, at which update, and where (a restarted coordinator rebuilds
    # its membership from these)
    Kind.HEARTBEAT: Schema({"role": Str(), "update": Int(min=0, required=False), "endpoint": Str(required=False)}),
    # resync: the sender may have lost replies (a retry, or a restarted process); if the request is stale,
    # the env server answers EPISODE_END naming the episode batch to join instead of staying silent
    Kind.RESET: Schema({"episode": Int(min=0), "resync": Bool(required=False)}),
    Kind.STEP: Schema({"episode": Int(min=0), "actions": Array(dtypes=I64, ndim=1), "resync": Bool(required=False)}),
    Kind.OBS: Schema(
        {
            "episode": Int(min=0),
            "to": Int(min=0),  # the one agent whose observation and reward this is
            "obs": Array(dtypes=("<f4", "|u1"), min_ndim=2, private=True),
            "reward": Array(dtypes=F32, ndim=1, required=False, private=True),
            # per parallel world: this agent's episode ended with this step, truly / cut short
            "terminated": Array(dtypes=BOOL, ndim=1),
            "truncated": Array(dtypes=BOOL, ndim=1),
            "mask": Array(dtypes=BOOL, ndim=2),
            "default_used": Bool(),
        },
        # one row per parallel world
        same_rows=(("reward", "obs"), ("mask", "obs"), ("terminated", "obs"), ("truncated", "obs")),
    ),
    # to an agent that fell behind: the episode batch it can still join (its RESET), and why
    Kind.EPISODE_END: Schema({"episode": Int(min=0), "reason": Str()}),
    # probs holds every row of the rollout, or (--suggester sparse/shared) only those `rows` marks: [R] bool
    Kind.DIST: Schema(
        {
            "probs": Array(dtypes=F32, ndim=2, distribution_rows=True),
            "rows": Array(dtypes=BOOL, ndim=1, required=False),
            "actions": Array(dtypes=I64, ndim=1, required=False),
            "behaviour": Array(dtypes=F32, ndim=1, required=False, unit_interval=True),
        },
        together=(("actions", "behaviour"),),
        same_rows=(("actions", "probs"), ("behaviour", "probs")),
        index_into=(("actions", "probs"),),
    ),
    Kind.SUGG: Schema({
        "to": Int(min=0),
        "probs": Array(dtypes=F32, ndim=2, distribution_rows=True),
        "rows": Array(dtypes=BOOL, ndim=1, required=False),
    }),
    Kind.ADV: Schema({"advantages": Array(dtypes=F32, ndim=1, private=True)}),
    Kind.CRITIC_PARAMS: Schema({"params": Array(dtypes=F32, ndim=1, private=True)}),
    Kind.POLICY_PARAMS: Schema({
        "owner": Int(min=0),
        "params": Array(dtypes=F32, ndim=1, private=True),
    }),
    # CL: an agent's rollout for the central critic, rows time-major (r = t * B + b)
    Kind.REWARD: Schema(
        {
            "rewards": Array(dtypes=F32, ndim=1, private=True),  # r_i [R]
            "obs": Array(dtypes=("<f4", "|u1"), min_ndim=2, required=False, private=True),  # o_i [R, ...]
            "last_obs": Array(dtypes=("<f4", "|u1"), min_ndim=2, required=False, private=True),  # o_i[T] [B, ...]
            # [R] the episode ended with the row's step: truly / cut short
            "terminated": Array(dtypes=BOOL, ndim=1, required=False),
            "truncated": Array(dtypes=BOOL, ndim=1, required=False),
        },
        together=(("obs", "last_obs", "terminated", "truncated"),),
        same_rows=(("obs", "rewards"), ("terminated", "rewards"), ("truncated", "rewards")),
    ),
}

# kind -> the body fields that carry private data; the audit flags these.
PRIVATE_FIELDS: dict[Kind, frozenset[str]] = {
    kind: names
    for kind, schema in SCHEMAS.items()
    if (names := frozenset(n for n, spec in schema.fields.items() if spec.private))
}
