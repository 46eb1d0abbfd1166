"""augbench: does this data-augmentation method make offline RL better, and does its data obey the dynamics?"""

from __future__ import annotations

import importlib.util
import os
import sys

__version__ = "0.1.0"


def _pin_glfw_library() -> None:
    """Point pyGLFW at the library its own wheel ships, unless the user chose one (`PYGLFW_LIBRARY`).

    Gymnasium's MuJoCo renderer imports `glfw` with every MuJoCo environment (we never render). Left to itself,
    pyGLFW probes each candidate library in a child Python process. `scancel` sends SIGTERM to every process of
    a SLURM job; submitit's job process lets it pass, but the child dies, the import fails, and a cancelled run
    was recorded as "cannot build the evaluation environment (Failed to load GLFW3 shared library)" instead of
    as cancelled. With the library named, the import loads it directly and starts no process. The choice of
    build (X11 unless `PYGLFW_LIBRARY_VARIANT` or a Wayland session says otherwise) is pyGLFW's own."""
    if os.environ.get("PYGLFW_LIBRARY") or not sys.platform.startswith("linux"):
        return
    spec = importlib.util.find_spec("glfw")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return
    variant = os.environ.get("PYGLFW_LIBRARY_VARIANT", "").lower()
    if variant not in ("x11", "wayland"):
        variant = "wayland" if os.environ.get("XDG_SESSION_TYPE") == "wayland" else "x11"
    lib = os.path.join(list(spec.submodule_search_locations)[0], variant, "libglfw.so")
    if os.path.isfile(lib):
        os.environ["PYGLFW_LIBRARY"] = lib


_pin_glfw_library()
