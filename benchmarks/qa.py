"""The hostile-QA case list of issue 12, run as one script: every case, grouped by the defect it reproduces, then
'N passed, N failed' over all of them, and a markdown table (default reports/qa.md).

    .venv/bin/python benchmarks/qa.py [--out reports/qa.md] [--workers 2]

The cases are the tests that reproduce each defect (tests/test_qa.py, the SLURM restart in tests/test_slurm.py,
which needs the cluster of `.ci/slurm.sh start`, or it is counted as not run), collected with pytest's JUnit XML.
The random kill -9 trials are `benchmarks/kill_trials.py` (reports/kill_trials.md); their summary line is copied
here when that report exists.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (defect, test-name patterns): the items in its order.
ITEMS = [
    ("no per-run lock: a run is trained once (claim, 'running elsewhere', --force while it runs)",
     [r"test_a_run_being_trained_elsewhere"]),
    ("duplicate seeds, seeds outside [0, 2^32), unsafe study names, device in a study",
     [r"test_bad_studies_are_refused_whole"]),
    ("SLURM: a restarted launcher does not resubmit queued jobs; status shows them with job ids",
     [r"test_restarted_launcher_waits_on_queued_jobs"]),
    ("a killed local worker: its run retried or failed, the sweep goes on (also during augmentation)",
     [r"test_a_killed_worker_fails_or_retries", r"test_a_worker_killed_during_the_augmentation_stage"]),
    ("a killed launcher takes its workers with it; Ctrl-C stops within seconds and says what is left",
     [r"test_workers_stop_when_their_launcher_is_killed", r"test_ctrl_c_stops_a_sweep"]),
    ("bench data make: train, val and sidecar as one set, checked on load",
     [r"test_data_make_writes_train_val_and_sidecar_as_one_set"]),
    ("temporaries of killed writers removed by the next writer", [r"test_temporaries_of_killed_writers"]),
    ("crafted canonical .npz files", [r"test_crafted_dataset_files_are_refused"]),
    ("evaluability checked before the first gradient step", [r"test_a_dataset_that_cannot_be_evaluated"]),
    ("trainer and augmenter settings range-checked before anything is written",
     [r"test_every_numeric_config_field_has_a_range", r"test_a_nan_learning_rate_and_an_absurd_batch"]),
    ("--device banana, --seed 5e9, --eval-every 0 refused before anything is written",
     [r"test_bad_run_numbers_are_refused"]),
    ("study file that is a directory or not UTF-8, garbage parquet, data show --out at a directory",
     [r"test_study_files_that_are_directories_or_not_text"]),
    ("a dataset path over the file-name limit", [r"test_a_path_over_the_file_name_limit"]),
    ("--only '' refused", [r"test_an_empty_only_pattern_is_refused"]),
    ("destinations checked before the work (data make --out, cache, results dir)",
     [r"test_destinations_are_checked_before_the_work"]),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "qa.md")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    t0 = time.time()
    xml = Path(tempfile.mkdtemp(prefix="augbench-qa-")) / "cases.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
           "tests/test_qa.py", "tests/test_slurm.py::test_restarted_launcher_waits_on_queued_jobs_instead_of_resubmitting"]
    if args.workers > 1:
        cmd += ["-n", str(args.workers), "--dist", "loadgroup"]
    subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cases, why = [], {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        outcome = ("failed" if bad is not None else "not run" if case.find("skipped") is not None else "passed")
        cases.append((case.get("name"), outcome))
        if bad is not None:
            why[case.get("name")] = (bad.get("message") or "").strip().splitlines()[:1]
    rows, seen = [], set()
    for item, patterns in ITEMS:
        mine = [(n, o) for n, o in cases if any(re.match(p, n) for p in patterns)]
        seen |= {n for n, _ in mine}
        rows.append((item, mine))
    rest = [(n, o) for n, o in cases if n not in seen]
    if rest:
        rows.append(("other cases in tests/test_qa.py", rest))
    passed = sum(o == "passed" for _, o in cases)
    failed = sum(o == "failed" for _, o in cases)
    not_run = sum(o == "not run" for _, o in cases)
    summary = f"{passed} passed, {failed} failed" + (f", {not_run} not run" if not_run else "")
    lines = ["# Hostile-QA cases (issue 12)", "",
             "Command: `.venv/bin/python benchmarks/qa.py`", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, no GPU; commit "
             + subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=ROOT).stdout.strip() + f"; {time.time() - t0:.0f} s.", "",
             f"**{summary}** over {len(cases)} cases (each a test of the defect it names).", "",
             "| defect | cases | passed | failed | not run |", "|---|---|---|---|---|"]
    for item, mine in rows:
        lines.append(f"| {item} | {len(mine)} | {sum(o == 'passed' for _, o in mine)} | "
                     f"{sum(o == 'failed' for _, o in mine)} | {sum(o == 'not run' for _, o in mine)} |")
    kills = ROOT / "reports" / "kill_trials.md"
    if kills.exists():
        m = re.search(r"\*\*(\d+ passed, \d+ failed)\*\*", kills.read_text())
        lines += ["", f"Random kill -9 trials (`benchmarks/kill_trials.py`, [kill_trials.md](kill_trials.md)): "
                      f"{m.group(1) if m else 'see the report'}."]
    failing = [n for n, o in cases if o == "failed"]
    if failing:
        lines += ["", "Failed:"] + [f"- `{n}`: {' '.join(why.get(n, []))[:300]}" for n in failing]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, args.out)
    for item, mine in rows:
        print(f"{item}: {sum(o == 'passed' for _, o in mine)}/{len(mine)} passed")
    print(summary)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
