"""What every result records about where it came from: package versions, git commit, device."""

from __future__ import annotations

import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ("augbench", "torch", "d3rlpy", "ogbench", "minari", "gymnasium", "mujoco", "numpy", "pandas")
REPO = Path(__file__).resolve().parent.parent


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = "absent"
    return out


def git_state() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": dirty if commit else None}


def resolve_device(device: str) -> str:
    import re

    import torch

    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu(:0)?|cuda(:\d+)?", device):
        from bench.errors import ConfigError

        raise ConfigError(f"'device' = {device!r} is not a device (auto, cpu, cpu:0, cuda or cuda:N)", "request",
                          "device")
    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu:0"
    if device.startswith("cuda") and not torch.cuda.is_available():
        from bench.errors import ConfigError

        raise ConfigError(f"'device' = {device}: no CUDA device is available here", "request", "device")
    return "cpu:0" if device == "cpu" else device


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(int(device.split(":")[1]) if ":" in device else 0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
