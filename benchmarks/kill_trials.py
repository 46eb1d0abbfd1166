"""Random kill -9 trials of a local sweep and of `bench data make` (issue 12), each checked for defects.

    .venv/bin/python benchmarks/kill_trials.py [--sweep-trials 20] [--make-trials 5] [--seed 0] [--out FILE]

Sweep trials.  A 6-run study (toy-maze task 1; `none` and `noise` x IQL x 3 seeds; 60 gradient steps, an
evaluation every 10; the local executor with 2 workers) runs once without interruption: the reference.  Then,
in one results folder shared by every trial, each trial starts `bench sweep` and at a random moment kills, with
SIGKILL, one of: the launcher, one worker (chosen at random), or the whole process group.  After each kill:
  - no run folder holds both result.json and error.json, and every result.json is a whole run (all its steps,
    every evaluation row, a policy file);
  - no run finished before the kill is lost (its result.json is byte-identical afterwards);
  - no worker outlives its launcher by more than 15 s;
  - a worker kill does not stop the sweep: the launcher finishes the other runs and exits 0 (the killed run is
    trained again once).
After the last trial, one more `bench sweep` must run exactly the missing runs and exit 0; every run's curve
must then equal the reference's (resumed runs continue bit for bit), and no temporary file may be left.

Make trials.  A toy-maze set (train, val, sidecar) is made; each trial starts `bench data make toy-maze --force`
with another seed and kills it at a random moment (uniform over 30%..100% of a measured generation time; a make that
finishes first is drawn again).  Then the set must be whole (its manifest names its files) and
load, or be refused by `bench.data.load` with one line naming `bench data make`, and first use
(`bench.data.ensure`) must leave a whole set that loads.

Prints one line per trial and 'N passed, N failed', and writes a markdown table (default reports/kill_trials.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUDY = """\
name: kill-trials
datasets:
  - {name: toy-maze, tasks: [1]}
augmenters:
  - {name: none}
  - {name: noise, config: {scale: 0.05, size: 0.2}}
algos:
  - {name: iql, config: {batch_size: 16, hidden_units: [32, 32]}}
seeds: [0, 1, 2]
training: {steps: 60, eval_every: 10}
evaluation: {episodes: 1}
executor: {kind: local, workers: 2}
"""


def bench_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench.cli", *args]


def workers_of(pid: int) -> list[int]:
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            status = (proc / "status").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("PPid:")))
        if ppid == pid and b"spawn_main" in cmdline:
            out.append(int(proc.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def run_dirs(results: Path) -> list[Path]:
    d = results / "runs"
    return sorted(p for p in d.iterdir() if p.is_dir()) if d.exists() else []


def check_runs(results: Path, steps: int, every: int) -> tuple[dict[str, bytes], list[str]]:
    """(finished run id -> result.json bytes, defects)."""
    finished, defects = {}, []
    for d in run_dirs(results):
        names = {p.name for p in d.iterdir()}
        if "result.json" in names and "error.json" in names:
            defects.append(f"{d.name}: both result.json and error.json")
        if "result.json" not in names:
            continue
        raw = (d / "result.json").read_bytes()
        try:
            res = json.loads(raw)
        except ValueError:
            defects.append(f"{d.name}: unreadable result.json")
            continue
        rows = (d / "curve.csv").read_text().strip().splitlines() if "curve.csv" in names else []
        if res.get("grad_steps") != steps or len(rows) != 1 + steps // every or "policy.d3" not in names:
            defects.append(f"{d.name}: result.json beside an unfinished run")
        finished[d.name] = raw
    return finished, defects


def sweep_trial(i: int, rng: random.Random, study: Path, results: Path, env: dict) -> tuple[str, float, list[str]]:
    before, defects = check_runs(results, 60, 10)
    target = rng.choice(["launcher", "worker", "group"])
    delay = rng.uniform(3.0, 14.0)
    proc = subprocess.Popen(bench_cmd("sweep", str(study)), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    t0 = time.time()
    workers: list[int] = []
    while time.time() - t0 < delay and proc.poll() is None:
        workers = workers_of(proc.pid) or workers
        time.sleep(0.1)
    if proc.poll() is not None:  # nothing left to kill: the sweep finished first
        out, err = proc.communicate()
        if proc.returncode != 0:
            defects.append(f"sweep exited {proc.returncode} unkilled: {err[-300:]}")
        after, more = check_runs(results, 60, 10)
        return f"{target} (sweep had finished)", delay, defects + more
    workers = workers_of(proc.pid) or workers
    if target == "worker" and not workers:
        target = "launcher"  # still in start-up: no worker yet
    if target == "launcher":
        os.kill(proc.pid, signal.SIGKILL)
    elif target == "group":
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        os.kill(rng.choice(workers), signal.SIGKILL)
    if target == "worker":
        try:
            out, err = proc.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            defects.append("the sweep hung after a worker was killed")
        if proc.returncode != 0 or "Traceback" in err:
            defects.append(f"a worker kill ended the sweep with rc {proc.returncode}: {err.strip()[-300:]}")
    else:
        proc.communicate()
    deadline = time.time() + 15
    while time.time() < deadline and any(alive(w) for w in workers):
        time.sleep(0.2)
    orphans = [w for w in workers if alive(w)]
    if orphans:
        defects.append(f"workers {orphans} outlived their launcher by 15 s")
        for w in orphans:
            os.kill(w, signal.SIGKILL)
    after, more = check_runs(results, 60, 10)
    defects += more
    lost = [rid for rid, raw in before.items() if after.get(rid) != raw]
    if lost:
        defects.append(f"finished runs lost or changed: {lost}")
    return target, delay, defects


def curves(results: Path) -> dict[str, list[list[str]]]:
    """Finished run id -> its curve rows without the wall-clock column."""
    out = {}
    for d in run_dirs(results):
        if (d / "result.json").exists():
            rows = [ln.split(",") for ln in (d / "curve.csv").read_text().strip().splitlines()]
            keep = [i for i, name in enumerate(rows[0]) if name != "wall_s"]
            out[d.name] = [[r[i] for i in keep] for r in rows]
    return out


def make_trials(n: int, rng: random.Random, work: Path, env: dict) -> list[tuple[str, float, list[str]]]:
    cache = work / "make-cache"
    env = {**env, "AUGBENCH_CACHE": str(cache)}
    t0 = time.time()
    subprocess.run(bench_cmd("data", "make", "toy-maze", "--seed", "0"), env=env, check=True, capture_output=True)
    gen = time.time() - t0
    out = []
    check = ("import sys\nfrom bench import data\nfrom bench.errors import BenchError\n"
             "try:\n    data.load('toy-maze', 1); print('whole')\n"
             "except BenchError as e:\n    print('refused', str(e).replace(chr(10), ' '))\n"
             "data.ensure('toy-maze')\nds = data.load('toy-maze', 1)\nprint('after', ds.n_episodes)\n")
    i = 0
    while len(out) < n:  # a make that finishes before its kill is not a trial: drawn again
        i += 1
        delay = rng.uniform(0.3, 1.0) * gen
        proc = subprocess.Popen(bench_cmd("data", "make", "toy-maze", "--force", "--seed", str(i)), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        finished = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        res = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, cwd=ROOT)
        lines = res.stdout.strip().splitlines()
        defects = []
        if res.returncode != 0 or not lines or not lines[-1].startswith("after"):
            defects.append(f"load after the kill failed: {res.stderr.strip()[-300:]}")
        elif lines[0].startswith("refused") and "bench data make" not in lines[0]:
            defects.append(f"refusal does not say what to do: {lines[0]}")
        if finished and not defects:
            continue
        what = "finished first" if finished else (lines[0].split()[0] if lines else "?")
        out.append((f"data make killed at {delay:.1f} s ({what})", delay, defects))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sweep-trials", type=int, default=20)
    ap.add_argument("--make-trials", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "kill_trials.md")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="augbench-kills-"))
    env = {**os.environ, "AUGBENCH_CACHE": str(work / "cache"), "PYTHONPATH": str(ROOT)}
    study = work / "kill-trials.yaml"
    study.write_text(STUDY)
    t_start = time.time()
    subprocess.run(bench_cmd("data", "make", "toy-maze"), env=env, check=True, capture_output=True)
    ref = subprocess.run(bench_cmd("sweep", str(study)), env={**env, "AUGBENCH_RESULTS": str(work / "reference")},
                         capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    reference = curves(work / "reference")
    results = work / "results"
    env = {**env, "AUGBENCH_RESULTS": str(results)}
    rows = []
    kills = 0
    while kills < args.sweep_trials:  # a sweep that finishes before its kill is not a trial: drawn again
        if len(curves(results)) == 6:  # everything finished: start the study over, so there is work to kill
            shutil.rmtree(results)
        target, delay, defects = sweep_trial(kills, rng, study, results, env)
        if target.endswith("(sweep had finished)") and not defects:
            continue
        kills += 1
        rows.append((f"sweep {kills}: kill -9 {target} at {delay:.1f} s", defects))
        print(f"{rows[-1][0]}: {'ok' if not defects else 'DEFECT ' + '; '.join(defects)}", flush=True)
    finished_before = len(curves(results))
    final = subprocess.run(bench_cmd("sweep", str(study)), env=env, capture_output=True, text=True)
    defects = [] if final.returncode == 0 else [f"final sweep rc {final.returncode}: {final.stderr[-300:]}"]
    if f"{6 - finished_before} runs done, 0 failed" not in final.stdout:
        defects.append(f"the final sweep did not run exactly the {6 - finished_before} missing runs: "
                       f"{final.stdout.strip()[:200]}")
    got = curves(results)
    if got != reference:
        differ = sorted(k for k in reference if got.get(k) != reference[k])
        defects.append(f"curves differ from the uninterrupted reference: {differ}")
    left = [str(p.relative_to(results)) for p in results.rglob("*.tmp")]
    if left:
        defects.append(f"temporary files left: {left}")
    rows.append(("final sweep: exactly the missing runs, curves equal to the uninterrupted reference, no "
                 "temporaries", defects))
    print(f"{rows[-1][0]}: {'ok' if not defects else 'DEFECT ' + '; '.join(defects)}", flush=True)
    for label, _, defects in make_trials(args.make_trials, rng, work, env):
        rows.append((label, defects))
        print(f"{label}: {'ok' if not defects else 'DEFECT ' + '; '.join(defects)}", flush=True)
    passed = sum(not d for _, d in rows)
    failed = len(rows) - passed
    print(f"{passed} passed, {failed} failed")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    lines = ["# Kill -9 trials (issue 12)", "",
             f"Command: `.venv/bin/python benchmarks/kill_trials.py --sweep-trials {args.sweep_trials} "
             f"--make-trials {args.make_trials} --seed {args.seed}`", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, no GPU; commit "
             f"{commit.strip()}; {time.time() - t_start:.0f} s in all.", "",
             "What each trial checks is in the script's docstring.  **" + f"{passed} passed, {failed} failed**.", "",
             "| trial | result |", "|---|---|"]
    lines += [f"| {label} | {'ok' if not d else 'DEFECT: ' + '; '.join(d)} |" for label, d in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, args.out)
    shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
