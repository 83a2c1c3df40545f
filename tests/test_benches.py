"""Smoke test of the benchmarks: each runs with --quick, exits 0, and prints parseable result lines.

Timing is never asserted: only that every expected number was measured and is finite and positive.
"""

from __future__ import annotations

import importlib.util
from importlib.util import find_spec
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.netns import unavailable

BENCH = Path(__file__).resolve().parent.parent / "bench"

_spec = importlib.util.spec_from_file_location("bench_timing", BENCH / "_timing.py")
_timing = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_timing)
parse_results = _timing.parse_results

EXPECTED = {
    "learner_bench.py": {f"{world}{name}" for world in ("", "cleanup_", "harvest_")
                         for name in ("ss_update_s", "ippo_update_s", "ss_train_s", "ippo_train_s",
                                      "update_ratio_ss_over_ippo", "train_ratio_ss_over_ippo",
                                      "ss_cluster_update_s", "ss_sim_hours_per_m_steps",
                                      "ss_cluster_hours_per_m_steps")},
    "runtime_bench.py": {"sim_update_s", "cluster_update_s", "cluster_over_sim", "cluster_startup_s",
                         "lockstep_step_ms", "raw_round_trip_ms", "lockstep_over_raw", "sim_step_ms",
                         "raw_lockstep_step_ms", "lockstep_over_raw_lockstep", "codec_audit_envserver_ms",
                         "codec_audit_all_ms", "codec_audit_share", "act_cpu_back_to_back_ms",
                         "act_cpu_after_sleep_ms", "act_wake_penalty"},
    "authz_bench.py": {"accept_us", "accept_with_receipt_us", "receipt_over_plain", "grant_manual_us",
                       "grant_automatic_us", "grant_over_automatic", "verify_s", "cross_check_s",
                       "cross_check_over_verify"},
    "backend_bench.py": {"local_update_s", "ray_update_s", "ray_over_local", "namespaces_update_s",
                          "namespaces_over_local"},
    "scale_bench.py": {f"n{n}_{name}" for n in (2, 3) for name in ("cluster_update_s", "sim_update_s",
                                                                   "cluster_over_sim", "startup_s", "stop_s",
                                                                   "pss_per_agent_mib", "pss_total_gib",
                                                                   "audit_gib_per_m_steps")},
    "audit_bench.py": {f"{mode}_{what}" for mode in ("frames", "compressed", "hashes")
                       for what in ("agent_ms_per_episode", "send_ms_per_episode", "record_bytes")}
                      | {"agent_frames_over_hashes", "agent_compressed_over_hashes", "send_frames_over_hashes",
                         "send_compressed_over_hashes", "compressed_over_frames_bytes"},
}


@pytest.mark.timeout(120)
@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_bench_quick_prints_every_result(script: str) -> None:
    if script == "backend_bench.py" and (why := unavailable() or ("" if find_spec("ray") else "no ray")):
        pytest.skip(f"backend_bench needs network namespaces and ssmarl[ray]: {why}")
    run = subprocess.run([sys.executable, str(BENCH / script), "--quick"], capture_output=True, text=True,
                         timeout=110)
    assert run.returncode == 0, run.stderr
    values = parse_results(run.stdout)
    assert set(values) == EXPECTED[script]
    assert all(math.isfinite(v) and v > 0 for v in values.values()), values
    assert any(line.startswith("# ") for line in run.stdout.splitlines())  # the numbers are explained


def test_parse_results_rejects_a_malformed_line() -> None:
    assert parse_results("# note\nratio_x   1.5 x   a note\n\n") == {"ratio_x": 1.5}
    with pytest.raises(ValueError):
        parse_results("ratio x 1.5")
