"""Private rewards stay private: after a real cluster run, the only files outside the agents' own
directories are the public ones, and no audit record there carries a private field in clear."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from protocol.audit.log import Record, iter_records
from protocol.wire.codec import decode
from protocol.wire.messages import PRIVATE_FIELDS
from tests.procs import script

PUBLIC = re.compile(r"config\.toml|metrics\.csv|processes\.json|world_checkpoint\.json(\.prev)?|"
                    r"logs/[a-z0-9-]+\.(log|received\.json|received\.log|audit\.log)")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["frames", "hashes"])
def test_no_reward_outside_the_agents_own_directories(tmp_path: Path, mode: str) -> None:
    (tmp_path / "audit.toml").write_text(f'audit = "{mode}"\n')
    out = tmp_path / "run"
    done = subprocess.run([script("ss-cluster"), "--env", "navigation",
                           "--episodes", "4", "--batch", "2", "--config", str(tmp_path / "audit.toml"),
                           "--out", str(out), "--no-progress"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    shared = [p for p in out.rglob("*") if p.is_file() and p.relative_to(out).parts[0] != "agents"]
    assert all(PUBLIC.fullmatch(str(p.relative_to(out))) for p in shared), shared
    obs_records = 0
    for log in (p for p in shared if p.name.endswith(".audit.log")):
        for record in iter_records(log):
            assert isinstance(record, Record)
            obs_records += record.kind == "OBS"
            if record.frames is not None:
                msg = decode(record.frames[-1])
                assert not PRIVATE_FIELDS.get(msg.kind, frozenset()) & msg.body.keys(), (log, record.index)
    assert obs_records > 0  # the env server did send observations and rewards: as digests only
