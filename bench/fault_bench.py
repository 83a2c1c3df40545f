"""What each fault costs a running cluster, measured in one run per fault on the same config.

For a fault-free `ss-cluster` run and one run per fault (kill -9 of an agent, a 20 s SIGSTOP of an agent,
kill -9 of the coordinator, kill -9 of the env server), all injected once the run has done a quarter of
its updates, it prints: updates lost (train.csv rows of updates an agent missed, over all agents),
seconds from the fault until the run is whole again (the faulted process is doing its work: an agent
completes an update, the env server writes a metrics row, the coordinator knows every process again),
and the run's total time against the fault-free run as a ratio.

    python bench/fault_bench.py [--updates 120]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._timing import explain, result  # noqa: E402

BIN = Path(sys.executable).parent
AGENTS = 3
FAST = "step_deadline_s = 2.0\nround_deadline_s = 2.0\nreset_deadline_s = 60.0\ncheckpoint_every = 5\n"


def rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def done_updates(path: Path) -> int:
    """Updates of an agent's train.csv that it really did (not a missed row)."""
    return sum(not math.isnan(float(r["policy_loss"])) for r in rows(path))


def missed_updates(out: Path) -> int:
    return sum(math.isnan(float(r["policy_loss"])) and math.isnan(float(r["kappa"]))
               for i in range(AGENTS) for r in rows(out / "agents" / str(i) / "train.csv"))


def wait(condition: Callable[[], bool], timeout_s: float = 600.0) -> float:
    """Poll until `condition`; returns when it held (monotonic seconds)."""
    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("the run did not recover")
        time.sleep(0.05)
    return time.monotonic()


def run(tmp: Path, name: str, updates: int, fault: str | None) -> tuple[float, int, float | None]:
    """One ss-cluster run with `fault` at a quarter of it: (total seconds, updates lost, recovery seconds)."""
    out = tmp / name
    (tmp / "fast.toml").write_text(FAST)
    began = time.monotonic()
    cluster = subprocess.Popen([str(BIN / "ss-cluster"), "--env", "navigation", "--episodes", str(updates * 4),
                                "--batch", "4", "--config", str(tmp / "fast.toml"), "--out", str(out),
                                "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    recovery = None
    try:
        if fault is not None:
            wait(lambda: len(rows(out / "metrics.csv")) >= updates // 4)
            listed = json.loads((out / "processes.json").read_text())
            pid = {(p["role"], p["id"]): p["pid"] for p in listed}
            agent_log = out / "agents/1/train.csv"
            if fault in ("agent kill", "agent pause 20s"):
                before = done_updates(agent_log)
                if fault == "agent kill":
                    os.kill(pid[("agent", 1)], signal.SIGKILL)
                    hit = time.monotonic()
                else:
                    os.kill(pid[("agent", 1)], signal.SIGSTOP)
                    hit = time.monotonic()
                    time.sleep(20)  # the fault: a 20 s pause
                    os.kill(pid[("agent", 1)], signal.SIGCONT)
                recovery = wait(lambda: done_updates(agent_log) > before) - hit
            elif fault == "env server kill":
                before = len(rows(out / "metrics.csv"))
                os.kill(pid[("envserver", None)], signal.SIGKILL)
                hit = time.monotonic()
                recovery = wait(lambda: len(rows(out / "metrics.csv")) > before) - hit
            elif fault == "coordinator kill":
                os.kill(pid[("coordinator", None)], signal.SIGKILL)
                hit = time.monotonic()
                log = out / "logs/coordinator.log"
                recovery = wait(lambda: log.read_text().count(" is running at ") >= AGENTS + 1) - hit
        if cluster.wait(timeout=900) != 0:
            raise RuntimeError(f"{name}: ss-cluster failed; see {out}/logs")
    finally:
        if cluster.poll() is None:
            os.killpg(cluster.pid, signal.SIGKILL)
    return time.monotonic() - began, missed_updates(out), recovery


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=120)
    args = parser.parse_args()
    explain(f"ss-cluster, navigation, {AGENTS} agents, batch 4, {args.updates} updates, deadlines 2 s; "
            f"each fault once at update {args.updates // 4}")
    with tempfile.TemporaryDirectory() as tmp:
        base, _, _ = run(Path(tmp), "fault-free", args.updates, None)
        result("fault_free_total_s", base, "s")
        for fault in ("agent kill", "agent pause 20s", "coordinator kill", "env server kill"):
            total, lost, recovery = run(Path(tmp), fault.replace(" ", "-"), args.updates, fault)
            key = fault.replace(" ", "_").replace("20s", "20s")
            result(f"{key}_updates_lost", lost, "upd", "missed-update rows over all agents' train.csv")
            result(f"{key}_recovery_s", recovery, "s", "from the fault until the process works again")
            result(f"{key}_total_ratio", total / base, "x", "total run time / fault-free")


if __name__ == "__main__":
    main()
