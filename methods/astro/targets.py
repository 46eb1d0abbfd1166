"""ASTRO's stitch-target selection: for each source state, a target among dataset states of OTHER trajectories
whose temporal distance (methods/astro/tdr.py) lies in a window: reachable within the planner's horizon, far
enough to be novel; higher-return targets preferred.  Ablations: Euclidean distance instead of TDR, random targets.

ASTRO's paper (arXiv 2511.23442) gives only this idea (see shared/reference/astro-facts.md); every detail below is
chosen here, each a named `TargetConfig` option, with its reason:

- Candidates: `draw_candidates` draws `candidates` = 512 pool rows per source without replacement
  (`torch.multinomial` on a uniform weight, as DiffStitch's `stitch_batch`), so the two methods see equally many
  candidates per source.  `select_targets` takes the candidates' tensors, per source (S, C, ...) or shared
  (C, ...), and is batched over all S x C pairs.
- `metric` = "tdr" (ASTRO): d = ||phi(s) - phi(c)|| on the given embeddings (head 0 of the TDR; the 1e-6 floor of
  `tdr.phi_distance`, as `TDR.distance`).  "euclidean" (the ablation, Figure 1's "infeasible target selection via
  Euclidean metrics"): ||s - c|| on the raw observations given as `source_xy` / `cand_xy` (any observation vector,
  not only xy).  "random" (the ablation): every candidate on another episode qualifies, distance ignored; the
  return preference still applies, so TDR vs random isolates the distance criterion (`prefer="uniform"` gives a
  fully random selector).  `distance` is then the TDR distance where embeddings are given, else NaN.
- `select_targets` also flags the sources that had candidates in the window but lost them all to the
  consistency filter (`inconsistent`), so that this rejection is counted apart from an empty window.
- `select_targets` returns the chosen target's `distance` in the metric's units and, for every metric, its TDR
  distance as `steps` (NaN without embeddings): ASTRO sets the stitch's length from `steps`, so an ablation of
  the metric changes which target is chosen, not how the length of the plan to it is estimated.
- Window `d_min` <= d <= `d_max`, in the metric's units, both ends inclusive (the distances are continuous).  For
  "tdr" the units are steps (the TDR's phi-distance approximates the number of steps): defaults 10 and 40, the
  step window [10, 40) of DiffStitch's step estimation, so that ASTRO and DiffStitch compare at equal stitch
  lengths.  For "euclidean" set them in raw-state units.  `tdr_discount` (default None: the window is compared
  with the phi-distance as is) maps the step window to the TDR's discounted units, (1 - g^d) / (1 - g) for a
  TDR trained with discount g (GAS's value -||phi|| has that fixed point for reward -1 per step, e.g. 10 -> 9.56,
  40 -> 33.1 steps at g = 0.99): pass `tdr.cfg.discount` for windows in true steps.
- Other episode: a candidate on the source's own episode never qualifies (ASTRO stitches across trajectories;
  a target on its own trajectory adds nothing the data lack).
- `prefer` = "return" (default): the qualifying candidate with the highest return-to-go `cand_rtg`, ties broken
  uniformly at random.  Greedy, because DiffStitch's preference for return is hard too (its target pool is the
  top 2% by return, no soft weighting), because diversity already comes from each source's own random 512
  candidates, and because it needs no temperature in return units (which differ by orders of magnitude between
  maze and locomotion data).  "softmax": P(c) proportional to exp(rtg_c / `temperature`) over the qualifying
  candidates (exact, by the Gumbel-max trick; `temperature` in return units, default 1.0).  "uniform": uniform
  over the qualifying candidates (DiffStitch's rule, masked random scores).  Every mode draws the same (S, C)
  uniform numbers from the generator, so the generator's stream does not depend on the mode.
- `consistency` (default None = off; ASTRO's "Delta_thresh on the geometric consistency of targets", lower
  stricter): a check that the TDR distance agrees with the geometry of the raw states.  With
  r = d_TDR(s, c) / (kappa * ||s - c||) (kappa: steps per raw unit), keep a candidate only if
  max(r, 1 / r) <= consistency (>= 1; 1 = exact agreement).  r >> 1: the TDR says the target is far though it is
  close in state space (a detour around a wall: reachable only by a long plan); r << 1: the TDR claims the target
  nearer than the straight line allows (the representation's underestimate, the unreachable-target failure).
  kappa = `consistency_scale` if given, else fitted per call as the median (mean of the two middle values) of d_TDR / ||s - c|| over the pairs
  that pass the episode and window tests (the range that matters: far pairs saturate the discounted TDR).  Needs
  `source_xy` / `cand_xy`; only with metric "tdr" (validate).

Randomness: only the torch.Generator passed in (the global RNG is untouched); the same generator state gives the
same choices.  Returns, per source: `chosen` (index into the C candidates, -1 without a target), `has`,
`distance` (the metric's distance to the chosen one, NaN without), `n_qualifying`; also the (S, C) `qualifying`
mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from methods.astro.tdr import phi_distance

METRICS = ("tdr", "euclidean", "random")
PREFERENCES = ("return", "softmax", "uniform")


@dataclass
class TargetConfig:
    metric: str = "tdr"  # "tdr" (ASTRO), "euclidean" or "random" (ablations)
    d_min: float = 10.0  # window, in the metric's units (tdr: steps; DiffStitch's [10, 40))
    d_max: float = 40.0
    tdr_discount: float | None = None  # None: window in phi units; g: steps mapped to (1 - g^d) / (1 - g)
    candidates: int = 512  # per source, as DiffStitch
    prefer: str = "return"  # "return" (best rtg), "softmax" (P ~ exp(rtg / temperature)) or "uniform"
    temperature: float = 1.0  # "softmax" only, in return units
    consistency: float | None = None  # None: off; >= 1: max(r, 1/r) <= consistency, r = d_TDR / (kappa d_raw)
    consistency_scale: float | None = None  # kappa (steps per raw unit); None: fitted per call (median)

    def validate(self) -> TargetConfig:
        def bad(name: str, rule: str):
            raise ValueError(f"TargetConfig.{name} = {getattr(self, name)!r}: must be {rule}")

        def number(name: str, low: float, low_open: bool = False, optional: bool = False) -> None:
            v = getattr(self, name)
            if optional and v is None:
                return
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            if not (ok and (v > low if low_open else v >= low)):
                bad(name, f"{'None or ' if optional else ''}a finite number {'>' if low_open else '>='} {low}")

        if self.metric not in METRICS:
            bad("metric", f"one of {METRICS}")
        if self.prefer not in PREFERENCES:
            bad("prefer", f"one of {PREFERENCES}")
        number("d_min", 0)
        number("d_max", 0)
        if self.d_max < self.d_min:
            raise ValueError(f"TargetConfig: d_max ({self.d_max}) < d_min ({self.d_min})")
        if isinstance(self.candidates, bool) or not isinstance(self.candidates, int) or self.candidates < 1:
            bad("candidates", "an integer >= 1")
        number("temperature", 0, low_open=True)
        number("consistency", 1, optional=True)
        number("consistency_scale", 0, low_open=True, optional=True)
        if self.tdr_discount is not None:
            v = self.tdr_discount
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
                bad("tdr_discount", "None or a number in (0, 1)")
        if self.consistency is not None and self.metric != "tdr":
            raise ValueError(f"TargetConfig: consistency needs metric 'tdr', not '{self.metric}'")
        return self

    def window(self) -> tuple[float, float]:
        """The window in the units of the distance compared (the TDR's discounted units if tdr_discount)."""
        if self.metric == "tdr" and self.tdr_discount is not None:
            g = self.tdr_discount
            return tuple((1.0 - g ** d) / (1.0 - g) for d in (self.d_min, self.d_max))
        return self.d_min, self.d_max


def draw_candidates(pool_size: int, n_sources: int, cfg: TargetConfig, generator: torch.Generator) -> torch.Tensor:
    """(S, min(candidates, pool_size)) pool rows per source, without replacement (DiffStitch's draw), on the
    generator's device."""
    n = min(cfg.candidates, pool_size)
    weights = torch.ones((n_sources, pool_size), device=generator.device)
    return torch.multinomial(weights, n, replacement=False, generator=generator)


def _per_source(x: torch.Tensor, s: int, extra: int) -> torch.Tensor:
    """Candidates given shared ((C,) + extra dims) or per source ((S, C) + extra dims): (S, C, ...)."""
    if x.dim() == extra + 1:
        x = x.unsqueeze(0)
    if x.dim() != extra + 2:
        raise ValueError(f"select_targets: candidate tensor of shape {tuple(x.shape)}")
    return x.expand(s, *x.shape[1:])


def select_targets(source_emb, cand_emb, cand_rtg, cand_episode, source_episode, cfg: TargetConfig,
                   generator: torch.Generator, source_xy=None, cand_xy=None) -> dict:
    """Choose one target per source among C candidates (module docstring).  source_emb (S, D) and cand_emb
    ((S, C, D) or (C, D)): TDR embeddings (may be None for metric "euclidean" / "random"); cand_rtg and
    cand_episode ((S, C) or (C,)); source_episode (S,); source_xy (S, d) and cand_xy ((S, C, d) or (C, d)): raw
    observations, for "euclidean" and the consistency filter."""
    cfg.validate()
    source_episode = torch.as_tensor(source_episode)
    dev = source_episode.device
    S = source_episode.shape[0]
    cand_episode = _per_source(torch.as_tensor(cand_episode, device=dev), S, 0)
    C = cand_episode.shape[1]
    rtg = _per_source(torch.as_tensor(cand_rtg, device=dev), S, 0).float()
    need_raw = cfg.metric == "euclidean" or cfg.consistency is not None
    need_emb = cfg.metric == "tdr"
    if need_raw and (source_xy is None or cand_xy is None):
        raise ValueError("select_targets: metric 'euclidean' and the consistency filter need source_xy and cand_xy")
    if need_emb and (source_emb is None or cand_emb is None):
        raise ValueError("select_targets: metric 'tdr' needs source_emb and cand_emb")
    d_tdr = d_raw = None
    if source_emb is not None and cand_emb is not None:
        d_tdr = phi_distance(source_emb[:, None].float(), _per_source(cand_emb.float(), S, 1))  # (S, C)
    if need_raw:
        d_raw = (source_xy[:, None].float() - _per_source(cand_xy.float(), S, 1)).norm(dim=-1)

    ok = cand_episode != source_episode[:, None]
    if cfg.metric == "random":
        dist = d_tdr if d_tdr is not None else torch.full((S, C), float("nan"), device=dev)
    else:
        dist = d_tdr if cfg.metric == "tdr" else d_raw
        lo, hi = cfg.window()
        ok = ok & (dist >= lo) & (dist <= hi)
    in_window = ok.any(1)
    if cfg.consistency is not None:
        ratio = d_tdr / d_raw.clamp_min(1e-12)
        kappa = cfg.consistency_scale
        if kappa is None:  # fitted: the median ratio over the pairs passing the episode and window tests
            v = ratio[ok].sort().values
            kappa = (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2 if len(v) else torch.ones((), device=dev)
        r = ratio / kappa
        ok = ok & (torch.maximum(r, 1.0 / r.clamp_min(1e-12)) <= cfg.consistency)

    u = torch.rand((S, C), generator=generator, device=generator.device).to(dev)
    if cfg.prefer == "uniform":
        score = u
    elif cfg.prefer == "return":
        best = rtg.masked_fill(~ok, -math.inf).max(1, keepdim=True).values
        score = u.masked_fill(rtg != best, -1.0)  # uniform among the best
    else:  # softmax by Gumbel-max
        gumbel = -torch.log(-torch.log(u.clamp_min(1e-20)))
        score = rtg / cfg.temperature + gumbel
    score = score.masked_fill(~ok, -math.inf)
    has = ok.any(1)
    chosen = torch.where(has, score.argmax(1), torch.full((S,), -1, device=dev, dtype=torch.long))
    rows = torch.arange(S, device=dev)
    nan = torch.full((S,), float("nan"), device=dev)
    distance = torch.where(has, dist[rows, chosen.clamp_min(0)], nan)
    steps = torch.where(has, d_tdr[rows, chosen.clamp_min(0)], nan) if d_tdr is not None else nan
    return {"chosen": chosen, "has": has, "distance": distance, "steps": steps, "n_qualifying": ok.sum(1),
            "qualifying": ok, "inconsistent": in_window & ~has}
