"""``alva demo`` as a new user runs it, on an idle machine and beside busy single-thread jobs.

    python benchmarks/demo_busy.py --busy 0,2 --reference --out /tmp/demo-busy

For each count of busy jobs (``--busy``), the script starts that many ``python -c "while True: pass"``
processes, lets them run ``--warmup`` seconds (jobs a user finds already running, which the load average has
seen), then runs ``alva demo --no-progress --out OUT/<row>`` in a fresh process whose environment sets neither
``ALVA_THREADS`` nor ``OMP_NUM_THREADS``: the thread count is alva's automatic choice. With ``--reference`` it
runs the demo again beside the same jobs with ``--threads D``, where D is torch's default thread count on this
machine (what the demo used before alva chose): the ratio in the table is to that run, measured in the same
session. Each run gets a fresh ``--out``, so nothing is reused. The busy jobs are stopped after each row.

Prints a table (busy jobs, threads setting, threads used, wall-clock seconds, ratio to the reference, the three
slowest parts) and writes every figure, with the load average and the busiest other processes at the start of
each run, to ``--json`` (default ``OUT/demo_busy.json``), after every run. ``--demo-args`` passes more options to
the demo (smaller budgets for a rehearsal: not the demo a new user runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BUSY_JOB = "while True: pass"


def torch_default_threads(env: dict[str, str]) -> int:
    """torch's own thread count in a fresh process with ``env``."""
    done = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=env,
                          capture_output=True, text=True, check=True)
    return int(done.stdout.strip())


def new_user_env() -> dict[str, str]:
    """The environment with no thread setting of alva's or torch's."""
    return {k: v for k, v in os.environ.items() if k not in ("ALVA_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def busiest_processes(limit: int = 6) -> list[str]:
    """The processes using the most CPU right now (``ps``), as lines: what else ran beside the measurement."""
    try:
        done = subprocess.run(["ps", "-eo", "pid,pcpu,etime,args", "--sort=-pcpu"], capture_output=True, text=True)
    except OSError:
        return []
    return [" ".join(line.split())[:160] for line in done.stdout.splitlines()[1:limit + 1]]


def part_seconds(out: Path) -> dict[str, float]:
    """The seconds of each demo part, from its ``result.json``."""
    seconds = {}
    for result in sorted(out.glob("*/result.json")):
        seconds[result.parent.name] = float(json.loads(result.read_text()).get("seconds", float("nan")))
    return seconds


def run_demo(out: Path, threads: int | None, demo_args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """One ``alva demo`` into ``out`` (which must not exist): wall-clock seconds, threads used, parts' seconds."""
    command = [sys.executable, "-m", "alva.cli.main", "demo", "--out", str(out), "--no-progress",
               *(["--threads", str(threads)] if threads is not None else []), *demo_args]
    load = os.getloadavg()[0]
    others = busiest_processes()
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    return {"command": " ".join(["alva", *command[3:]]), "wall_s": round(wall, 1), "threads_used": summary["threads"],
            "load_1min_at_start": round(load, 2), "busiest_at_start": others, "parts_s": part_seconds(out)}


def start_busy(count: int, env: dict[str, str]) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", BUSY_JOB], env=env) for _ in range(count)]


def stop_busy(jobs: list[subprocess.Popen]) -> None:
    for job in jobs:
        job.terminate()
    for job in jobs:
        job.wait()


def slowest(parts: dict[str, float], k: int = 3) -> str:
    return ", ".join(f"{name} {s:.0f}" for name, s in sorted(parts.items(), key=lambda p: -p[1])[:k])


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| busy jobs | threads setting | threads used | wall (s) | ratio to torch's default | slowest parts (s) |",
             "|---:|---|---:|---:|---:|---|"]
    for row in rows:
        reference = next((r for r in rows if r["busy"] == row["busy"] and r["setting"] != "automatic"), None)
        ratio = f"{row['wall_s'] / reference['wall_s']:.2f}" if reference else "-"
        lines.append(f"| {row['busy']} | {row['setting']} | {row['threads_used']} | {row['wall_s']:.0f} | {ratio} | "
                     f"{slowest(row['parts_s'])} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--busy", default="0,2", help="comma-separated counts of busy jobs, one row each")
    parser.add_argument("--reference", action="store_true",
                        help="beside busy jobs, also run the demo with torch's default thread count")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds the busy jobs run before the demo")
    parser.add_argument("--out", default="/tmp/demo-busy", help="folder of the demo runs (a fresh one per run)")
    parser.add_argument("--json", default=None, help="where to write the figures (default: OUT/demo_busy.json)")
    parser.add_argument("--demo-args", default="",
                        help="more options of alva demo, e.g. '--train-size 6000 --quick' (smaller budgets: not "
                             "the demo a new user runs)")
    args = parser.parse_args()
    env = new_user_env()
    demo_args = shlex.split(args.demo_args)
    default = torch_default_threads(env)
    root = Path(args.out) / time.strftime("%Y%m%d-%H%M%S")
    path = Path(args.json) if args.json else root / "demo_busy.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for busy in (int(b) for b in args.busy.split(",")):
        settings: list[int | None] = [None] + ([default] if args.reference and busy > 0 else [])
        for threads in settings:
            jobs = start_busy(busy, env)
            try:
                time.sleep(args.warmup if busy else 0)
                label = f"busy{busy}-" + ("auto" if threads is None else f"threads{threads}")
                row = run_demo(root / label, threads, demo_args, env)
            finally:
                stop_busy(jobs)
            row.update(busy=busy, setting="automatic" if threads is None else f"--threads {threads} (torch's default)")
            rows.append(row)
            print(f"{label}: {row['wall_s']:.0f} s with {row['threads_used']} thread(s)", flush=True)
            path.write_text(json.dumps({"cores": os.cpu_count(), "torch_default_threads": default,
                                        "warmup_s": args.warmup, "demo_args": demo_args, "rows": rows}, indent=2))
    print(f"\nalva demo {args.demo_args}, {os.cpu_count()} cores, torch default {default} threads; "
          f"busy jobs: `python -c \"{BUSY_JOB}\"`, started {args.warmup:.0f} s before the demo\n")
    print(table(rows))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
