"""The README's 'Add your own augmenter' example, installed as a real package and run through the entry point."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_blocks() -> tuple[str, str]:
    text = README.read_text()
    section = text.split("## Add your own augmenter", 1)[1].split("\n## ", 1)[0]
    python = re.findall(r"```python\n(.*?)```", section, re.S)
    toml = re.findall(r"```toml\n(.*?)```", section, re.S)
    assert len(python) == 1 and len(toml) == 1
    return python[0], toml[0]


def test_readme_plugin_installs_registers_and_runs(tmp_path, toy_file, results):
    code, pyproject = readme_blocks()
    pkg = tmp_path / "my-augmenter"
    pkg.mkdir()
    (pkg / "my_augmenter.py").write_text(code)
    (pkg / "pyproject.toml").write_text(pyproject + '\n[tool.setuptools]\npy-modules = ["my_augmenter"]\n'
                                        if "[tool.setuptools]" not in pyproject else pyproject)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(pkg)], check=True)
    env = {**os.environ, "PYTHONPATH": str(site)}
    listed = subprocess.run([sys.executable, "-m", "bench.cli", "list"], capture_output=True, text=True, env=env)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"augmenter\s+copy\s+transitions", listed.stdout)
    res = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--dataset", "toy-maze", "--task", "1",
                          "--algo", "iql", "--augmenter", "copy", "--aug-config", '{"size": 0.2}', "--steps", "20",
                          "--eval-episodes", "1", "--algo-config", '{"batch_size": 16}'],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    run_dir = Path(res.stdout.strip().splitlines()[-1].split("run: ", 1)[1].strip())
    result = json.loads((run_dir / "result.json").read_text())
    assert result["augmenter"] == "copy" and result["augmentation"]["generated"] == 1200
    assert result["augmentation"]["kind"] == "transitions"
    bad = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--dataset", "toy-maze", "--task", "1",
                          "--algo", "iql", "--augmenter", "copy", "--aug-config", '{"size": -1}'],
                         capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "'size' must be > 0" in bad.stderr and "Traceback" not in bad.stderr
    # The plugin passes the same augmenter contract tests as the built-in augmenters.
    contract = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               str(Path(__file__).parent / "test_contracts.py"), "-k", "augmenter and copy"],
                              capture_output=True, text=True, env=env, cwd=README.parent)
    assert contract.returncode == 0 and "2 passed" in contract.stdout, contract.stdout[-2000:]
