"""Training batches drawn straight from the canonical arrays: one sampler for every trainer.

No replay buffer, no episode objects, no per-sample Python: a batch is a handful of numpy fancy-indexing calls
on the arrays of the original dataset and of the generated one (memory-mapped from their `.npz` files, so 5M
generated transitions cost only the pages a batch touches).  On CUDA the arrays are uploaded once and batches
are gathered on the device.

Mixing (bench.mixing.MixConfig):
- `ratio`: exactly round(ratio x batch) generated rows in every batch (half rounds up), the rest original,
  as TATU and DiffStitch train;
- `synthetic`: generated rows only (SynthER);
- `union`: uniform over the rows of both, as if they were one buffer;
- with no generated data (the `none` augmenter) every mode draws original rows only.
Within a batch the original rows come first, then the generated ones.

Bootstrapping: each canonical row carries its own s', so a transition's mask is 1 - terminals[row]: a timeout
bootstraps from its true s', a terminal never does, and nothing crosses an episode boundary (there is no
"next row").  This is what `Dataset.to_d3rlpy()` gave d3rlpy's buffer, without building it.

Trajectories (Decision Transformer): a window of `context` steps ending at a uniformly drawn row, clipped at
the start of its episode (canonical `episode_offsets`) and zero-padded in front, with undiscounted
returns-to-go computed once per dataset and timesteps counted from 1, as d3rlpy's BasicTrajectorySlicer does.

Randomness comes from the sampler's own numpy Generator (seeded from the trainer's seed, never numpy's global
state); `state()` / `set_state()` carry it through a checkpoint so a resumed run draws the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.dataset import Dataset
from bench.errors import BenchError
from bench.mixing import MixConfig

SAMPLER_STREAM = 0xBA7C  # a stream of the run seed of its own, apart from the augmenter's and d3rlpy's


@dataclass(frozen=True)
class TransitionBatch:
    """float32 arrays (numpy on CPU, torch tensors on CUDA); rewards and terminals are (B, 1)."""

    observations: Any
    actions: Any
    rewards: Any
    next_observations: Any
    terminals: Any
    n_generated: int  # rows of this batch drawn from the generated data

    def __len__(self) -> int:
        return int(self.actions.shape[0])


@dataclass(frozen=True)
class TrajectoryBatch:
    """(B, L, ...) windows; rewards, returns_to_go, terminals (B, L, 1); timesteps (B, L) int64 (1-based, 0 in
    padding); masks (B, L) float32, 0 in the front padding."""

    observations: Any
    actions: Any
    rewards: Any
    returns_to_go: Any
    terminals: Any
    timesteps: Any
    masks: Any
    n_generated: int

    def __len__(self) -> int:
        return int(self.actions.shape[0])


def to_torch(x):
    """A batch field as a torch tensor: CUDA batches already are; CPU arrays are wrapped without a copy."""
    import torch

    return x if isinstance(x, torch.Tensor) else torch.from_numpy(x)


def split_counts(mix: MixConfig, batch_size: int, has_generated: bool) -> tuple[int, int] | None:
    """(original, generated) rows per batch; None for `union` (drawn per batch)."""
    if not has_generated:
        return batch_size, 0
    if mix.mode == "synthetic":
        return 0, batch_size
    if mix.mode == "union":
        return None
    n_gen = int(np.floor(mix.ratio * batch_size + 0.5))
    return batch_size - n_gen, n_gen


class _Sampler:
    """Index drawing shared by both samplers: which rows of which source, by the mixing mode."""

    def __init__(self, original: Dataset, generated: Dataset | None, mix: MixConfig | None, batch_size: int,
                 seed: int, device: str = "cpu", as_tensors: bool | None = None):
        if batch_size < 1:
            raise BenchError(f"batch sampler: 'batch_size' must be >= 1, got {batch_size}")
        mix = mix or MixConfig()
        if generated is not None:
            for name in ("observations", "actions"):
                a, b = getattr(original, name), getattr(generated, name)
                if a.shape[1:] != b.shape[1:]:
                    raise BenchError(f"generated data: '{name}' rows have shape {b.shape[1:]}, the original "
                                     f"data's have {a.shape[1:]}")
        self.sources = [original] if generated is None else [original, generated]
        self.sizes = [len(s) for s in self.sources]
        self.counts = split_counts(mix, batch_size, generated is not None)
        self.batch_size = batch_size
        self.device = device
        # Torch tensors gathered on the device: on CUDA by default; `as_tensors=True` runs the same path on the
        # CPU (the tests check it against the numpy path, since CI has no GPU).
        self.on_device = device.startswith("cuda") if as_tensors is None else as_tensors
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, SAMPLER_STREAM]))

    def draw(self) -> list[np.ndarray]:
        """Row indices into each source for one batch."""
        if self.counts is None:  # union: one uniform draw over all rows, split by source
            idx = self.rng.integers(0, sum(self.sizes), self.batch_size)
            is_orig = idx < self.sizes[0]
            return [idx[is_orig], idx[~is_orig] - self.sizes[0]]
        return [self.rng.integers(0, size, n) for size, n in zip(self.sizes, self.counts)]

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def _upload(self, arrays: dict[str, np.ndarray]) -> dict:
        """CPU: the arrays as they are (memory maps stay memory maps).  CUDA: device tensors, uploaded once."""
        if not self.on_device:
            return arrays
        import torch

        return {k: torch.tensor(np.asarray(v), device=self.device) for k, v in arrays.items()}

    def _gather(self, per_source: list[dict], parts: list[np.ndarray], key: str):
        chosen = [(src[key], idx) for src, idx in zip(per_source, parts) if len(idx)]
        if self.on_device:
            import torch

            return torch.cat([a[torch.from_numpy(i).to(self.device, non_blocking=True)] for a, i in chosen])
        if len(chosen) == 1:
            return np.take(chosen[0][0], chosen[0][1], axis=0)
        return np.concatenate([np.take(a, i, axis=0) for a, i in chosen])


class TransitionSampler(_Sampler):
    """Uniform transition batches from the original and generated rows, mixed by `mix`."""

    def __init__(self, original: Dataset, generated: Dataset | None = None, mix: MixConfig | None = None, *,
                 batch_size: int, seed: int, device: str = "cpu", as_tensors: bool | None = None):
        super().__init__(original, generated, mix, batch_size, seed, device, as_tensors)
        self.arrays = [self._upload(self._columns(s)) for s in self.sources]

    @staticmethod
    def _columns(ds: Dataset) -> dict[str, np.ndarray]:
        # Terminal flags as float32 (N, 1) cost 4 bytes a row; kept as bool and converted per batch instead.
        return {"observations": ds.observations, "actions": ds.actions, "rewards": ds.rewards,
                "next_observations": ds.next_observations, "terminals": ds.terminals}

    def sample(self) -> TransitionBatch:
        parts = self.draw()
        g = {k: self._gather(self.arrays, parts, k) for k in self.arrays[0]}
        rewards, terminals = g["rewards"].reshape(-1, 1), g["terminals"].reshape(-1, 1)
        if self.on_device:
            terminals = terminals.float()
        else:
            terminals = terminals.astype(np.float32)
        return TransitionBatch(observations=g["observations"], actions=g["actions"], rewards=rewards,
                               next_observations=g["next_observations"], terminals=terminals,
                               n_generated=int(len(parts[1])) if len(parts) > 1 else 0)


def returns_to_go(rewards: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Undiscounted return from each step to the end of its episode (the step's own reward included)."""
    r = np.asarray(rewards, np.float64)
    c = np.cumsum(r)
    end_cum = c[np.asarray(offsets[1:]) - 1]  # cumulative sum at each episode's last step
    lengths = np.diff(np.asarray(offsets))
    return (np.repeat(end_cum, lengths) - c + r).astype(np.float32)


class TrajectorySampler(_Sampler):
    """Windows of `context` steps within one canonical episode, for sequence models."""

    def __init__(self, original: Dataset, generated: Dataset | None = None, mix: MixConfig | None = None, *,
                 batch_size: int, context: int, seed: int, device: str = "cpu", as_tensors: bool | None = None):
        if context < 1:
            raise BenchError(f"trajectory sampler: 'context' must be >= 1, got {context}")
        super().__init__(original, generated, mix, batch_size, seed, device, as_tensors)
        for s in self.sources:
            if s.meta.kind != "trajectories":
                raise BenchError(f"{s.meta.name}: a sequence model needs `trajectories` data, this holds "
                                 f"`{s.meta.kind}`")
        self.context = context
        self.offsets = [np.asarray(s.episode_offsets) for s in self.sources]
        self.arrays = [self._upload({"observations": s.observations, "actions": s.actions, "rewards": s.rewards,
                                     "returns_to_go": returns_to_go(s.rewards, s.episode_offsets),
                                     "terminals": s.terminals}) for s in self.sources]

    def _windows(self, ends: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows (B, L) clamped into the episode, valid mask (B, L), timesteps (B, L))."""
        starts = offsets[np.searchsorted(offsets, ends, side="right") - 1]
        rows = ends[:, None] - (self.context - 1) + np.arange(self.context)[None, :]
        valid = rows >= starts[:, None]
        timesteps = np.where(valid, rows - starts[:, None] + 1, 0)
        return np.where(valid, rows, ends[:, None]), valid, timesteps

    def sample(self) -> TrajectoryBatch:
        parts = self.draw()
        wins = [self._windows(idx, off) for idx, off in zip(parts, self.offsets)]
        flat = [w[0].reshape(-1) for w in wins]
        valid = np.concatenate([w[1] for w in wins])
        timesteps = np.concatenate([w[2] for w in wins]).astype(np.int64)
        b, L = valid.shape
        out = {}
        for k in self.arrays[0]:
            v = self._gather(self.arrays, flat, k)
            out[k] = v.reshape(b, L, *v.shape[1:])
        if self.on_device:
            import torch

            mask = torch.from_numpy(valid).to(self.device)
            out = {k: v * mask.reshape(b, L, *([1] * (v.dim() - 2))).to(v.dtype) for k, v in out.items()}
            masks, timesteps = mask.float(), torch.from_numpy(timesteps).to(self.device)
            terminals = out["terminals"].float().unsqueeze(-1)
        else:
            out = {k: v * valid.reshape(b, L, *([1] * (v.ndim - 2))).astype(v.dtype) for k, v in out.items()}
            masks = valid.astype(np.float32)
            terminals = out["terminals"].astype(np.float32)[..., None]
        return TrajectoryBatch(observations=out["observations"], actions=out["actions"],
                               rewards=out["rewards"][..., None], returns_to_go=out["returns_to_go"][..., None],
                               terminals=terminals, timesteps=timesteps, masks=masks,
                               n_generated=int(len(parts[1])) if len(parts) > 1 else 0)
