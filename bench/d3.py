"""Import d3rlpy quietly: its old `gym` dependency prints a deprecation notice to stderr on import, and d3rlpy
configures structlog to print INFO lines for every epoch.  augbench imports d3rlpy as
`from bench.d3 import d3rlpy` (inside functions, so commands that do not train never pay for it)."""

from __future__ import annotations

import contextlib
import io
import logging

import structlog

with contextlib.redirect_stderr(io.StringIO()):
    import d3rlpy  # noqa: E402

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))

__all__ = ["d3rlpy"]
