"""DVR figures for `none` and `noise` (two scales) on the full-size point-maze stitch dataset and a locally made
Hopper dataset, and the checking speed against the raw simulator (issue 13).

    .venv/bin/python benchmarks/dvr_table.py [--hopper-episodes 1500] [--out reports/dvr.md]

- pointmaze-medium-stitch-v0 at OGBench's size (5000 episodes x 201 steps = 1,005,000 rows), generated here with
  OGBench's simulator and protocol on first use.
- A Hopper-v5 dataset recorded here with Minari's DataCollector (random actions scaled by 0.5, episodes end at the
  env's termination or 1000 steps), registered as `augbench/hopper-random-bench-v0`.
- Rows: the original data (`none`), `noise` at scale 0.1 and 1.0 (std units of each observation dimension), and
  two references: s' replaced by s ("standing still") and random actions substituted.
- Speed: the DVR of 2,000,000 generated point-maze transitions (`noise`, size 2) against the raw simulator in the
  same run: OGBench's point env stepped with `env.unwrapped.step` in a Python loop (no wrappers), one core; the
  DVR path with one MuJoCo thread (per core), alternated with the raw loop in 3 rounds; then with all cores.
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

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_hopper(episodes: int, seed: int = 0) -> str:
    import gymnasium
    import minari

    did = "augbench/hopper-random-bench-v0"
    if did in minari.list_local_datasets():
        minari.delete_dataset(did)
    env = minari.DataCollector(gymnasium.make("Hopper-v5", max_episode_steps=1000), record_infos=False)
    env.action_space.seed(seed)
    for k in range(episodes):
        env.reset(seed=seed + k)
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample() * 0.5)
            done = terminated or truncated
    env.create_dataset(dataset_id=did, algorithm_name="random x0.5", author="augbench",
                       author_email="bench@augbench.invalid", code_permalink="https://example.invalid",
                       description="random Hopper data for the DVR table", ref_min_score=-20.0,
                       ref_max_score=3000.0)
    env.close()
    return "minari:" + did


def noise(ds, scale: float, size: float = 1.0, seed: int = 0):
    from methods import AUGMENTERS

    cls = AUGMENTERS.get("noise")
    aug = cls(cls.config_class.from_dict({"scale": scale, "size": size}), seed=seed)
    aug.fit(ds)
    aug.begin_sampling(seed)
    return aug.generate()


def references(ds, seed: int = 0):
    from bench.dataset import generated_transitions

    rng = np.random.default_rng(seed)
    rows = np.arange(len(ds))
    low, high = np.asarray(ds.meta.action_space.low), np.asarray(ds.meta.action_space.high)
    still = generated_transitions(ds, "still", {}, rows, np.asarray(ds.observations), np.asarray(ds.observations))
    rand = generated_transitions(ds, "random-actions", {}, rows, np.asarray(ds.observations),
                                 np.asarray(ds.next_observations),
                                 actions=rng.uniform(low, high, ds.actions.shape).astype(np.float32))
    return still, rand


def row(label: str, fig: dict) -> str:
    q = fig["error_quantiles"]
    fmt = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
    return (f"| {label} | {fig['checked']:,} | {100 * fig['dvr']:.2f} | {fig['invalid_states']:,} | {fmt(q['50'])} "
            f"| {fmt(q['90'])} | {fmt(q['99'])} | {fmt(fig['gta_dynamic_mse'])} | {fmt(fig['reward_mae'])} "
            f"| {fig['rows_per_second']:,.0f} |")


def raw_steps_per_second(ds, n: int) -> float:
    from bench.evaluate import make_env

    env = make_env(ds.meta)
    env.reset(seed=0)
    u = env.unwrapped
    acts = np.asarray(ds.actions[:n], np.float64)
    t = time.perf_counter()
    for a in acts:
        u.step(a)
    rate = n / (time.perf_counter() - t)
    env.close()
    return rate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hopper-episodes", type=int, default=1500)
    ap.add_argument("--speed-rows", type=int, default=2_000_000)
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "dvr.md")
    args = ap.parse_args()
    os.environ.setdefault("MINARI_DATASETS_PATH", tempfile.mkdtemp(prefix="augbench-minari-"))
    import torch

    torch.set_num_threads(1)
    from bench import data, dvr

    t0 = time.time()
    header = ("| data | rows checked | DVR % | invalid states | error q50 | q90 | q99 | GTA Dynamic MSE | reward MAE "
              "| rows/s |\n|---|---|---|---|---|---|---|---|---|---|")
    sections = []
    for name in ("pointmaze-medium-stitch-v0", None):
        if name is None:
            name = make_hopper(args.hopper_episodes)
        data.ensure(name, say=lambda s: print(s, flush=True))
        ds = data.load(name)
        lines = [f"### {name} ({len(ds):,} rows, {ds.n_episodes:,} episodes; state rebuilt as "
                 f"`{ds.meta.simulator.obs_to_state}`)", "", header]
        still, rand = references(ds)
        for label, gen in (("none (the original data)", ds), ("noise, scale 0.1", noise(ds, 0.1)),
                           ("noise, scale 1.0", noise(ds, 1.0)), ("reference: s' replaced by s", still),
                           ("reference: random actions substituted", rand)):
            fig = dvr.simulator_dvr(ds, gen)
            lines.append(row(label, fig))
            print(lines[-1], flush=True)
        sections.append("\n".join(lines))

    maze = data.load("pointmaze-medium-stitch-v0")
    big = noise(maze, 0.1, size=args.speed_rows / len(maze))
    from bench.evaluate import make_env

    small = noise(maze, 0.1, size=300_000 / len(maze), seed=1)
    sub = len(small)
    raw, per_core = [], []
    for _ in range(3):  # alternated, the same work each round
        raw.append(raw_steps_per_second(maze, 30_000))
        sim1 = dvr.MazeSimulator(make_env(maze.meta), "point", threads=1)
        t = time.perf_counter()
        dvr.simulator_dvr(maze, small, sim=sim1)
        per_core.append(sub / (time.perf_counter() - t))
    threads = dvr._threads()
    t = time.perf_counter()
    full = dvr.simulator_dvr(maze, big)
    full_s = time.perf_counter() - t
    ratio = np.median(per_core) / np.median(raw)
    speed = "\n".join([
        "| measurement | steps or rows per second |", "|---|---|",
        f"| raw simulator: `env.unwrapped.step` loop, 1 core (median of 3) | {np.median(raw):,.0f} |",
        f"| DVR, 1 MuJoCo thread, {sub:,} rows (median of 3) | {np.median(per_core):,.0f} |",
        f"| **DVR per core / raw simulator** | **{ratio:.2f}x** |",
        f"| DVR of all {len(big):,} generated rows, {threads} threads | {len(big) / full_s:,.0f} "
        f"({full_s:.1f} s; DVR {100 * full['dvr']:.2f} %) |"])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    text = "\n".join([
        "# Dynamics Violation Rate: the original data, `noise`, and two references", "",
        f"Command: `.venv/bin/python benchmarks/dvr_table.py --hopper-episodes {args.hopper_episodes} "
        f"--speed-rows {args.speed_rows}`", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, no GPU (the DVR runs on the CPU: MuJoCo); commit "
        f"{commit}; {time.time() - t0:.0f} s in all.", "",
        "Definition (README, `bench/dvr.py`): error = max over dimensions of |s' - s'_sim| / std of the original "
        "data's state change; a violation is an error above 0.1 or a state the simulator cannot hold (in a wall, "
        "non-finite). Errors below are in those units. GTA Dynamic MSE: mean over dimensions of the squared "
        "difference of z-scored next states.", "",
        *[s + "\n" for s in sections],
        "### Checking speed (pointmaze-medium-stitch-v0)", "", speed, "",
        "`noise` moves s and s' by one offset: in the point maze the free point mass is translation invariant, so "
        "its violations are the states pushed into walls (counted as invalid) and the steps that would have hit "
        "one; in Hopper the dynamics depend on the joint angles and velocities themselves, so nearly every noisy "
        "transition violates them.", ""])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, args.out)
    print(speed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
