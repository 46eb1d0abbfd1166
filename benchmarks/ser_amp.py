"""SER's mixed-precision option (`amp: bf16`) measured against float32 (issue 14): speed, and its effect on the
samples (moments against the data, true DVR).

    .venv/bin/python benchmarks/ser_amp.py [--device cpu:0] [--preset cpu-small] [--samples 100000]
        [--dataset pointmaze-medium-stitch-v0] [--reps 3] [--out reports/ser-amp.md]

1. Speed (benchmarks/ser_table.py's `speed`): training steps/s and samples/s of SER's denoiser at the named preset and at the paper's size (width
   2048, 6 blocks), float32 against bf16 autocast, on the same device in the same run, the two modes interleaved
   `--reps` times (the median of each is reported, and the ratio bf16 / float32 of the medians).
2. Samples: SER fitted and sampled twice on `--dataset` with the same preset, seed and sample seed, once per
   mode (`bench.augment.augment`, so through the harness's own path and cache).  For each: the moments of the
   generated vectors [s, a, r, s'] against the data's, in the data's standard deviations (largest |mean
   difference|, largest |log std ratio|, largest |correlation difference| over the dimensions), the true DVR and
   GTA's Dynamic MSE (bench.dvr), and the share of actions outside the action space; then the two modes' samples
   against each other on the same moments.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ser_table import speed  # noqa: E402

MODES = ("off", "bf16")


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine()
    name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.machine())
    flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), [])
    bf16 = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return f"{name}; bf16 instructions: {', '.join(bf16) or 'none'}"


def vectors(ds) -> np.ndarray:
    return np.concatenate([np.asarray(ds.observations, np.float64), np.asarray(ds.actions, np.float64),
                           np.asarray(ds.rewards, np.float64)[:, None],
                           np.asarray(ds.next_observations, np.float64)], axis=1)


def moments(x: np.ndarray, ref: np.ndarray) -> dict:
    """Largest |mean difference| and |log std ratio| (in ref's stds) and |correlation difference|, over dims."""
    keep = ref.std(0) > 0
    x, ref = x[:, keep], ref[:, keep]
    sd = ref.std(0)
    return {"mean": float((np.abs(x.mean(0) - ref.mean(0)) / sd).max()),
            "log_std": float(np.abs(np.log(np.maximum(x.std(0), 1e-12) / sd)).max()),
            "corr": float(np.abs(np.corrcoef(x, rowvar=False) - np.corrcoef(ref, rowvar=False)).max())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu:0")
    ap.add_argument("--preset", default="cpu-small")
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--dataset", default="pointmaze-medium-stitch-v0")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "ser-amp.md")
    args = ap.parse_args()
    import torch

    from bench import data, dvr
    from bench.augment import augment
    from methods import AUGMENTERS
    from methods.ser import PRESETS

    device = "cpu" if args.device.startswith("cpu") else args.device
    cuda = device.startswith("cuda")
    t0, load, threads = time.time(), os.getloadavg()[0], torch.get_num_threads()
    sizes = ((f"`{args.preset}`", {"preset": args.preset}, 100, 5000, 8),
             ("paper size, d = 27", {"preset": "paper", "batch_size": 256},
              200 if cuda else 4, 100_000 if cuda else 64, 27))
    speed_rows = ["| model | batch | Heun steps | float32 train steps/s | bf16 train steps/s | ratio | float32 "
                  "samples/s | bf16 samples/s | ratio |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    if not cuda:  # one thread, timed in this process's CPU seconds: the ratio does not depend on other jobs
        torch.set_num_threads(1)
    clock = time.perf_counter if cuda else time.process_time
    for label, over, steps, samples, dim in sizes:
        runs = {m: [] for m in MODES}
        for _ in range(args.reps):
            for m in MODES:  # interleaved, so load changes hit both modes alike
                runs[m].append(speed({**over, "amp": m}, device, steps, samples, dim, clock))
        med = {m: {k: statistics.median(r[k] for r in runs[m]) for k in ("steps_per_s", "samples_per_s")}
               for m in MODES}
        r0 = runs["off"][0]
        speed_rows.append(
            f"| {label} (width {r0['width']}, {r0['depth']} blocks) | {r0['batch']} | {r0['sample_steps']} | "
            f"{med['off']['steps_per_s']:.1f} | {med['bf16']['steps_per_s']:.1f} | "
            f"{med['bf16']['steps_per_s'] / med['off']['steps_per_s']:.2f} | {med['off']['samples_per_s']:,.1f} | "
            f"{med['bf16']['samples_per_s']:,.1f} | {med['bf16']['samples_per_s'] / med['off']['samples_per_s']:.2f} |")
        print(speed_rows[-1], flush=True)

    data.ensure(args.dataset, say=print)
    ds = data.load(args.dataset)
    ref = vectors(ds)
    cls = AUGMENTERS.get("ser")
    gens, quality_rows = {}, [
        "| samples | rows | mean diff (max, stds) | log std ratio (max) | correlation diff (max) | true DVR % | GTA "
        "Dynamic MSE | actions outside the space |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    base = dvr.simulator_dvr(ds, ds)
    mo = moments(ref, ref)
    quality_rows.append(f"| original data | {len(ds):,} | {mo['mean']:.3f} | {mo['log_std']:.3f} | {mo['corr']:.3f} | "
                        f"{100 * base['dvr']:.2f} | {base['gta_dynamic_mse']:.3g} | "
                        f"{100 * base['action_out_of_bounds']:.2f} % |")
    for m in MODES:
        cfg = cls.resolve_config({"preset": args.preset, "num_samples": args.samples, "amp": m, "sample_seed": 0})
        g, _, _ = augment(ds, "ser", cfg, 0, device)
        gens[m] = vectors(g)
        fig = dvr.simulator_dvr(ds, g)
        mo = moments(gens[m], ref)
        quality_rows.append(
            f"| SER, amp `{m}` | {len(g):,} | {mo['mean']:.3f} | {mo['log_std']:.3f} | {mo['corr']:.3f} | "
            f"{100 * fig['dvr']:.2f} | {fig['gta_dynamic_mse']:.3g} | {100 * fig['action_out_of_bounds']:.2f} % |")
        print(quality_rows[-1], flush=True)
    between = moments(gens["bf16"], gens["off"])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    dev_name = torch.cuda.get_device_name(0) if cuda else cpu_model()
    preset = ", ".join(f"{k} {v}" for k, v in PRESETS[args.preset].items())
    text = "\n".join([
        "# SER: bf16 mixed precision against float32 (speed, and its effect on the samples)", "",
        f"Command: `.venv/bin/python benchmarks/ser_amp.py --device {args.device} --preset {args.preset} "
        f"--samples {args.samples} --dataset {args.dataset} --reps {args.reps}`", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, device {device} ({dev_name}); torch "
        f"{torch.__version__} ({threads} threads, 1 for the CPU speed rows); commit {commit}; {time.time() - t0:.0f} s in all; "
        f"1-minute load average {load:.1f} at the start (other jobs share the CPU when it exceeds the cores).",
        "", f"Preset `{args.preset}` (REDUCED: {preset}; the paper: width 2048, 6 blocks, 100k steps, 5M samples, "
        f"128 Heun steps). `amp: bf16` is bfloat16 autocast of the denoiser on this device (methods/ser.py).", "",
        "## Speed (median of the interleaved repeats; ratio = bf16 / float32, measured in this run)", "",
        ("Timed in wall seconds on the GPU." if cuda else "On the CPU: one torch thread, timed in this process's CPU "
         "seconds (`time.process_time`), so that other jobs sharing the machine barely enter the figures; a "
         "2-thread run would be up to twice as fast in wall time."), "",
        *speed_rows, "",
        f"## The samples ({args.dataset}, SER fitted and sampled once per mode, same seeds)", "",
        "Moments of the vectors [s, a, r, s'] against the original data's, in the data's standard deviations; "
        "DVR against the true simulator (README's definition).", "",
        *quality_rows, "",
        f"bf16 samples against float32 samples: mean diff (max) {between['mean']:.3f} stds, log std ratio (max) "
        f"{between['log_std']:.3f}, correlation diff (max) {between['corr']:.3f}.", ""])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
