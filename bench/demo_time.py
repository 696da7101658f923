"""Wall time of `privsnn demo` (what `make demo` runs after installing), on an idle machine and with
one other CPU-bound process running (not a test; writes bench/results/demo_time.json).

The other process is a one-thread busy loop (`python -c "while True: pass"`) started before the
demo and stopped after it. Thread policies compared: privsnn's default (torch's thread count, OpenMP
wait policy PASSIVE) and, with --fixed-threads N, PRIVSNN_THREADS=N.

    .venv/bin/python bench/demo_time.py                        # default policy, idle and loaded
    .venv/bin/python bench/demo_time.py --fixed-threads 2      # also the fixed 2-thread policy

Run it with nothing else running: the idle figure needs an idle machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import RESULTS, relative_paths  # noqa: E402


def time_demo(env: dict, loaded: bool) -> float:
    """Seconds for one `privsnn demo` in a fresh process (and a fresh output folder)."""
    load = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if loaded else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.time()
            subprocess.run([sys.executable, "-m", "privatesnn.cli", "demo", "--out", str(Path(tmp) / "demo")],
                           env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return time.time() - t0
    finally:
        if load is not None:
            load.kill()
            load.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fixed-threads", type=int, default=None, help="also time PRIVSNN_THREADS=N")
    args = p.parse_args()
    base = {k: v for k, v in os.environ.items() if k not in ("PRIVSNN_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    base["TQDM_DISABLE"] = "1"
    policies = {"default (passive wait)": base}
    if args.fixed_threads:
        policies[f"PRIVSNN_THREADS={args.fixed_threads}"] = {**base, "PRIVSNN_THREADS": str(args.fixed_threads)}
    rows = []
    for name, env in policies.items():
        idle = time_demo(env, loaded=False)
        busy = time_demo(env, loaded=True)
        rows.append({"policy": name, "idle_seconds": idle, "one_busy_process_seconds": busy, "ratio": busy / idle})
        print(f"{name:<36} idle {idle:6.0f} s   with one busy process {busy:6.0f} s   ratio {busy / idle:.2f}",
              flush=True)
    from privatesnn.io_utils import write_json

    out = {"benchmark": "demo_time", "cpus": os.cpu_count(), "python": platform.python_version(),
           "targets": {"idle_seconds": "< 180", "ratio": "<= 1.5"}, "rows": rows, "command": " ".join(sys.argv)}
    write_json(RESULTS / "demo_time.json", relative_paths(out))
    print(f"wrote {RESULTS / 'demo_time.json'}")


if __name__ == "__main__":
    main()
