"""DiffStitch's inverse-dynamics MLP on its own: how well its actions between REAL consecutive states obey the true
dynamics, with the authors' input (`inverse_input: pair`, [x_t, x_t+1] in the diffusion's normalised space) and
with raw state deltas (`delta`, [z(s_t), (s_t+1 - s_t) / std]), at the same training budget.

    .venv/bin/python benchmarks/diffstitch_inverse.py [--dataset pointmaze-medium-stitch-v0] [--task 1]
        [--steps 6000] [--pairs 3168] [--lr 2e-4] [--device cpu:0] [--out reports/diffstitch-inverse.md]

The head is the one `methods.diffstitch` builds (`_Model.build`: [.., ..] -> 256 -> 256 -> a, ReLU) trained alone
with Adam at the fit's learning rate on the MSE of the normalised action (in the fit it shares the optimiser with
the U-Net, but Adam's step for its own weights only sees its own gradients).  Defaults: the `cpu-small` budget,
6,000 steps of 32 windows x 99 consecutive pairs = 3,168 pairs.  The check: bench.dvr's simulator on 20,000 of
the data's own (s, s') pairs with the model's actions, at bench.dvr's tolerance.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="pointmaze-medium-stitch-v0")
    ap.add_argument("--task", type=int, default=1)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--pairs", type=int, default=3168, help="(s, s') pairs per step")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu:0")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "diffstitch-inverse.md")
    args = ap.parse_args()
    import torch

    from bench import data, dvr
    from bench.dataset import generated_transitions
    from blocks.normalize import EmpiricalCDF
    from methods import AUGMENTERS
    from methods.diffstitch import _Model

    device = "cpu" if args.device.startswith("cpu") else args.device
    t_all = time.time()
    data.ensure(args.dataset, say=print)
    ds = data.load(args.dataset, args.task)
    s = np.asarray(ds.observations, np.float32)
    s2 = np.asarray(ds.next_observations, np.float32)
    obs_cdf, act_cdf = EmpiricalCDF.fit(ds.observations), EmpiricalCDF.fit(ds.actions)
    target = torch.as_tensor(act_cdf.transform(np.asarray(ds.actions, np.float32)), device=device)
    check = np.sort(np.random.default_rng(args.seed).permutation(len(ds))[:20_000])
    marks = sorted({m for m in (100, 300, 1000, 3000, args.steps) if m <= args.steps})
    cls = AUGMENTERS.get("diffstitch")
    table: dict[str, list] = {}
    for mode in ("pair", "delta"):
        cfg = cls.resolve_config({"inverse_input": mode})
        gen = torch.Generator(device=device).manual_seed(args.seed)
        model = _Model.build(cfg, s.shape[1], ds.actions.shape[1], torch.Generator().manual_seed(args.seed), ds)
        model = model.to(device)
        if mode == "pair":
            x, x2 = obs_cdf.transform(s), obs_cdf.transform(s2)
        else:
            x, x2 = s, s2
        x, x2 = torch.as_tensor(x, device=device), torch.as_tensor(x2, device=device)
        opt = torch.optim.Adam(model.inv.parameters(), lr=args.lr)
        rows, t0 = [], time.perf_counter()
        for step in range(1, args.steps + 1):
            i = torch.randint(len(s), (args.pairs,), generator=gen, device=device)
            loss = torch.nn.functional.mse_loss(model.inverse(x[i], x2[i]), target[i])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step in marks:
                with torch.no_grad():
                    a = np.asarray(act_cdf.inverse(model.inverse(x[check], x2[check]).cpu()), np.float32)
                fig = dvr.simulator_dvr(ds, generated_transitions(ds, "inverse-check", {}, check, s[check],
                                                                  s2[check], actions=a))
                err = float(np.abs(a - np.asarray(ds.actions)[check]).mean())
                rows.append((step, 100 * fig["dvr"], err, loss.item(), time.perf_counter() - t0))
                print(f"{mode} step {step}: DVR {100 * fig['dvr']:.2f} %, |a - a_data| {err:.4f}", flush=True)
        table[mode] = rows
    own = dvr.simulator_dvr(ds, generated_transitions(ds, "inverse-check", {}, check, s[check], s2[check],
                                                      actions=np.asarray(ds.actions)[check]))

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    out = args.out if args.out.is_absolute() else args.out.resolve()
    try:
        shown = out.relative_to(ROOT)
    except ValueError:
        shown = out
    cmd = (f".venv/bin/python benchmarks/diffstitch_inverse.py --dataset {args.dataset} --task {args.task} "
           f"--steps {args.steps} --pairs {args.pairs} --lr {args.lr} --device {args.device} --out {shown}")
    lines = [f"# DiffStitch's inverse-dynamics model on {ds.meta.name}: normalised pair input against raw deltas",
             "", f"Command: `{cmd}`", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, device {device}; commit {commit}; "
             f"{time.time() - t_all:.0f} s in all.  The `{cls.name}` inverse head ({cfg.inv_width} x 2, ReLU) "
             f"trained alone, Adam {args.lr:g}, {args.pairs:,} pairs per step (REDUCED: the `cpu-small` budget; the "
             f"paper trains 1M steps of 64 windows), CDF normalisers from the data.  True DVR: bench.dvr's "
             f"simulator, tolerance {dvr.DEFAULT_TOLERANCE} std of the state change, on 20,000 of the data's own "
             f"(s, s') pairs with the model's actions; the data's own actions give {100 * own['dvr']:.2f} %.", "",
             "| input | gradient steps | true DVR (%) | mean abs action error | loss | train s |",
             "|---|---:|---:|---:|---:|---:|"]
    for mode, label in (("pair", "pair (the code: [x_t, x_t+1], CDF space)"),
                        ("delta", "delta ([z(s), ds / std], raw units)")):
        for step, rate, err, loss, sec in table[mode]:
            lines.append(f"| {label} | {step:,} | {rate:.2f} | {err:.4f} | {loss:.3g} | {sec:.0f} |")
    lines += ["", "Config of each: " + json.dumps({"inv_width": cfg.inv_width, "steps": args.steps,
                                                    "pairs": args.pairs, "lr": args.lr, "seed": args.seed}), ""]
    text = "\n".join(lines)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
