"""The canonical dataset: the one type that flows from loaders to augmenters to trainers to reports.

Layout (N steps, E episodes; every array has N rows unless said otherwise):

    observations       (N, *obs_shape) float32   s_t
    actions            (N, act_dim)    float32   a_t
    rewards            (N,)            float32   r_t
    next_observations  (N, *obs_shape) float32   s_{t+1}
    terminals          (N,)            bool      s_{t+1} is terminal: bootstrapping stops at step t
                                                 (true terminations, and OGBench singletask goal states)
    timeouts           (N,)            bool      the episode is cut after step t, but bootstrapping goes on
    episode_offsets    (E + 1,)        int64     episode e is rows [offsets[e], offsets[e+1])
    origin             (N,)            int16     index into meta.origins ("original" is 0 for real data)
    source_episodes    (N, 2)          int32     the source episode(s) a step was made from (-1: none);
                                                 for real data column 0 is the step's own episode
  optional:
    goals              (N, goal_dim)   float32
    qpos, qvel         (N, nq), (N, nv) float32  simulator state before the step

Invariants, checked by `validate()`: the last step of every episode is a terminal or a timeout (never
both); a timeout is only ever at the last step of an episode; within a `trajectories` dataset an
episode is contiguous (next_observations[t] == observations[t+1]).  A terminal may sit in the middle
of an episode (a singletask trajectory passes through its goal and goes on).

Storage: an uncompressed `.npz` with a JSON metadata member and a schema version; `load()` memory-maps
every array straight out of the zip file, so opening a multi-GB dataset costs no copy.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bench.errors import BenchError
from bench.io import save_npz

SCHEMA_VERSION = 1
ORIGINAL = "original"
META_KEY = "__meta__"


class SpaceSpec(BaseModel):
    """A Box space: shape, dtype and (finite) bounds; None where unbounded."""

    model_config = ConfigDict(extra="forbid")
    shape: tuple[int, ...]
    dtype: str = "float32"
    low: list[float] | None = None
    high: list[float] | None = None

    @model_validator(mode="after")
    def _bounds_fit_the_shape(self):
        size = int(np.prod(self.shape)) if self.shape else 1
        for name in ("low", "high"):
            bound = getattr(self, name)
            if bound is not None and len(bound) != size:
                raise ValueError(f"'{name}' has {len(bound)} values for a space of shape {self.shape} ({size})")
        if self.low is not None and self.high is not None and any(lo > hi for lo, hi in zip(self.low, self.high)):
            raise ValueError("'low' exceeds 'high'")
        return self


class SimulatorSpec(BaseModel):
    """How to rebuild the simulator, for evaluation and for checking generated data against the dynamics."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["ogbench", "gymnasium", "none"] = "none"
    env_id: str | None = None  # gymnasium id used to evaluate (singletask env for OGBench singletask data)
    env_kwargs: dict[str, Any] = Field(default_factory=dict)
    # How an observation maps back to a simulator state ("qpos=obs" for point mazes); None if unknown.
    obs_to_state: str | None = None
    max_episode_steps: int | None = None


class ReferenceScores(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min: float
    max: float


class DatasetMeta(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    name: str = Field(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$")  # no control characters
    source: Literal["ogbench", "minari", "generated", "test"]
    kind: Literal["trajectories", "transitions"] = "trajectories"
    task: int | None = None
    goal_conditioned: bool = False
    observation_space: SpaceSpec
    action_space: SpaceSpec
    simulator: SimulatorSpec = Field(default_factory=SimulatorSpec)
    reference_scores: ReferenceScores | None = None
    origins: list[str] = Field(default_factory=lambda: [ORIGINAL])
    content_hash: str = ""
    extra: dict[str, Any] = Field(default_factory=dict)


# name -> (dtype, trailing shape rule) ; rule None means (N,), "obs" same as observations, etc.
_REQUIRED = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts",
             "episode_offsets", "origin", "source_episodes")
_OPTIONAL = ("goals", "qpos", "qvel")
_DTYPES = {
    "observations": np.float32, "actions": np.float32, "rewards": np.float32,
    "next_observations": np.float32, "terminals": np.bool_, "timeouts": np.bool_,
    "episode_offsets": np.int64, "origin": np.int16, "source_episodes": np.int32,
    "goals": np.float32, "qpos": np.float32, "qvel": np.float32,
}
_FINITE = ("observations", "actions", "rewards", "next_observations", "goals", "qpos", "qvel")


@dataclass(frozen=True, eq=False)
class Dataset:
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    episode_offsets: np.ndarray
    origin: np.ndarray
    source_episodes: np.ndarray
    meta: DatasetMeta
    goals: np.ndarray | None = None
    qpos: np.ndarray | None = None
    qvel: np.ndarray | None = None

    # ----------------------------------------------------------------------------------- construction
    @classmethod
    def from_episodes_arrays(
        cls,
        *,
        observations: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_observations: np.ndarray,
        terminals: np.ndarray,
        episode_ends: np.ndarray,
        meta: DatasetMeta,
        **optional: np.ndarray | None,
    ) -> "Dataset":
        """Build from flat arrays and a boolean `episode_ends` mask (True on each episode's last step).

        `timeouts` is derived: an episode end that is not a terminal.  Real data: origin 0 and each step's
        own episode index as its source.
        """
        episode_ends = np.asarray(episode_ends, dtype=bool)
        terminals = np.asarray(terminals, dtype=bool)
        n = len(episode_ends)
        if n and not episode_ends[-1]:
            raise BenchError(f"{meta.name}: the last step does not end an episode (missing terminal/timeout)")
        ends = np.flatnonzero(episode_ends)
        offsets = np.concatenate([[0], ends + 1]).astype(np.int64)
        ep_index = np.repeat(np.arange(len(ends), dtype=np.int32), np.diff(offsets))
        source = np.stack([ep_index, np.full(n, -1, np.int32)], axis=1)
        ds = cls(
            observations=np.asarray(observations, np.float32),
            actions=np.asarray(actions, np.float32),
            rewards=np.asarray(rewards, np.float32),
            next_observations=np.asarray(next_observations, np.float32),
            terminals=terminals,
            timeouts=episode_ends & ~terminals,
            episode_offsets=offsets,
            origin=np.zeros(n, np.int16),
            source_episodes=source,
            meta=meta,
            **{k: (None if v is None else np.asarray(v, np.float32)) for k, v in optional.items()},
        )
        return ds.with_hash()

    # ----------------------------------------------------------------------------------- basic views
    def __len__(self) -> int:
        return int(self.actions.shape[0])

    @property
    def n_episodes(self) -> int:
        return int(len(self.episode_offsets) - 1)

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.diff(self.episode_offsets)

    @property
    def episode_index(self) -> np.ndarray:
        """Per-step episode index."""
        return np.repeat(np.arange(self.n_episodes), self.episode_lengths)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {k: getattr(self, k) for k in _REQUIRED}
        out.update({k: getattr(self, k) for k in _OPTIONAL if getattr(self, k) is not None})
        return out

    def compute_hash(self) -> str:
        h = hashlib.sha256()
        for k, v in sorted(self.arrays().items()):
            h.update(k.encode())
            h.update(str(v.dtype).encode())
            h.update(str(v.shape).encode())
            h.update(np.ascontiguousarray(v).data)
        return h.hexdigest()[:32]

    def with_hash(self) -> "Dataset":
        meta = self.meta.model_copy(update={"content_hash": self.compute_hash()})
        return replace(self, meta=meta)

    # ----------------------------------------------------------------------------------- validation
    def validate(self, where: str | None = None) -> "Dataset":
        """Check every invariant; raise BenchError with one line naming `where` and the problem."""
        where = where or self.meta.name
        if self.meta.schema_version != SCHEMA_VERSION:
            raise BenchError(f"{where}: schema version {self.meta.schema_version}, this augbench reads "
                             f"version {SCHEMA_VERSION}; regenerate the file")
        arrs = self.arrays()
        for k, v in arrs.items():
            if not isinstance(v, np.ndarray):
                raise BenchError(f"{where}: '{k}' is not an array")
            if v.dtype != _DTYPES[k]:
                raise BenchError(f"{where}: '{k}' has dtype {v.dtype}, expected {np.dtype(_DTYPES[k])}")
        for k, v in arrs.items():
            if v.ndim == 0:
                raise BenchError(f"{where}: '{k}' is a 0-dimensional array (one row per step expected)")
        n = len(self.actions)
        if n == 0:
            raise BenchError(f"{where}: the dataset is empty (0 steps)")
        for k, v in arrs.items():
            if k != "episode_offsets" and v.shape[0] != n:
                raise BenchError(f"{where}: '{k}' has {v.shape[0]} rows but 'actions' has {n}")
        if self.observations.shape != self.next_observations.shape:
            raise BenchError(f"{where}: 'observations' shape {self.observations.shape} differs from "
                             f"'next_observations' {self.next_observations.shape}")
        if self.actions.ndim != 2 or self.rewards.ndim != 1 or self.source_episodes.shape[1:] != (2,):
            raise BenchError(f"{where}: wrong array rank (actions must be (N, d), rewards (N,), "
                             f"source_episodes (N, 2))")
        if tuple(self.observations.shape[1:]) != tuple(self.meta.observation_space.shape):
            raise BenchError(f"{where}: observations have shape {self.observations.shape[1:]}, the metadata "
                             f"says {tuple(self.meta.observation_space.shape)}")
        if tuple(self.actions.shape[1:]) != tuple(self.meta.action_space.shape):
            raise BenchError(f"{where}: actions have shape {self.actions.shape[1:]}, the metadata says "
                             f"{tuple(self.meta.action_space.shape)}")
        for k in _FINITE:
            v = arrs.get(k)
            if v is not None and not np.isfinite(v).all():
                bad = int(np.flatnonzero(~np.isfinite(v.reshape(len(v), -1)).all(axis=1))[0])
                raise BenchError(f"{where}: '{k}' holds NaN or inf (first at row {bad})")
        space = self.meta.action_space
        # Generated data may hold actions outside the space (SynthER clips nothing; the DVR counts them); a
        # dataset read from disk may not.
        if space.low is not None and space.high is not None and self.meta.source != "generated":
            lo, hi = np.asarray(space.low, np.float32), np.asarray(space.high, np.float32)
            outside = (self.actions < lo - 1e-6) | (self.actions > hi + 1e-6)
            if outside.any():
                row = int(np.flatnonzero(outside.any(axis=1))[0])
                raise BenchError(f"{where}: action at row {row} ({self.actions[row].tolist()}) is outside the "
                                 f"action space [{space.low}, {space.high}]")
        off = self.episode_offsets
        if off.ndim != 1 or len(off) < 2 or off[0] != 0 or off[-1] != n or (np.diff(off) <= 0).any():
            raise BenchError(f"{where}: 'episode_offsets' must rise strictly from 0 to {n}")
        if (self.terminals & self.timeouts).any():
            row = int(np.flatnonzero(self.terminals & self.timeouts)[0])
            raise BenchError(f"{where}: step {row} is both a terminal and a timeout")
        last = off[1:] - 1
        ends = self.terminals[last] | self.timeouts[last]
        if not ends.all():
            e = int(np.flatnonzero(~ends)[0])
            raise BenchError(f"{where}: episode {e} ends with neither a terminal nor a timeout")
        is_last = np.zeros(n, bool)
        is_last[last] = True
        if (self.timeouts & ~is_last).any():
            row = int(np.flatnonzero(self.timeouts & ~is_last)[0])
            raise BenchError(f"{where}: timeout at step {row}, which is not the last step of its episode")
        if self.meta.kind == "trajectories" and n > 1:
            inner = ~is_last[:-1]
            same = (self.next_observations[:-1][inner] == self.observations[1:][inner])
            if len(same) and not same.reshape(len(same), -1).all():  # (none: every episode one step)
                row = int(np.flatnonzero(inner)[np.flatnonzero(~same.reshape(len(same), -1).all(axis=1))[0]])
                raise BenchError(f"{where}: step {row}: next_observations differs from the next step's "
                                 f"observation inside an episode")
        n_origins = len(self.meta.origins)
        if self.origin.min() < 0 or self.origin.max() >= n_origins:
            raise BenchError(f"{where}: 'origin' indexes outside meta.origins ({n_origins} names)")
        return self

    # ----------------------------------------------------------------------------------- storage
    def save(self, path: Path | str) -> Path:
        """Write an uncompressed npz atomically (temporary file + rename)."""
        path = Path(path).expanduser()
        ds = self if self.meta.content_hash else self.with_hash()
        meta_bytes = np.frombuffer(ds.meta.model_dump_json().encode(), dtype=np.uint8)
        return save_npz(path, {META_KEY: meta_bytes, **ds.arrays()}, compress=False)

    # ----------------------------------------------------------------------------------- d3rlpy
    def to_d3rlpy(self):
        """The one conversion to d3rlpy's MDPDataset.  Training does not use it (bench.batches samples the arrays
        directly); it is kept for the d3rlpy baselines in benchmarks/ and for the tests that check the sampler's
        transitions and windows against d3rlpy's own buffer.  For a `transitions` dataset it builds one d3rlpy
        episode per row (Python objects per row: slow and large at millions of rows).

        d3rlpy infers s' from the next row of an episode.  Each run of steps up to a terminal or a timeout
        becomes one d3rlpy episode.  A run cut by a timeout gets one extra row holding its final
        next_observation, flagged as the d3rlpy timeout, so its last real transition bootstraps from the
        true s'; a run ending in a terminal has its last row flagged as the d3rlpy terminal.
        """
        from bench.d3 import d3rlpy

        n = len(self)
        # Steps inside an episode whose successor row does not continue it (only in `transitions` data,
        # or after a mid-episode terminal, which d3rlpy will split anyway) also need their own s'.
        if self.meta.kind == "transitions":
            pad = ~self.terminals  # every step its own run
        else:
            pad = self.timeouts.copy()
        shift = np.concatenate([[0], np.cumsum(pad)[:-1]])
        pos = np.arange(n) + shift
        m = n + int(pad.sum())
        obs = np.zeros((m,) + self.observations.shape[1:], np.float32)
        act = np.zeros((m, self.actions.shape[1]), np.float32)
        rew = np.zeros(m, np.float32)
        term = np.zeros(m, np.float32)
        tout = np.zeros(m, np.float32)
        obs[pos], act[pos], rew[pos] = self.observations, self.actions, self.rewards
        term[pos[self.terminals]] = 1.0
        extra = pos[pad] + 1
        obs[extra] = self.next_observations[pad]
        tout[extra] = 1.0
        return d3rlpy.dataset.MDPDataset(
            observations=obs, actions=act, rewards=rew, terminals=term, timeouts=tout,
            action_space=d3rlpy.constants.ActionSpace.CONTINUOUS,
            action_size=int(self.actions.shape[1]),
        )


# ----------------------------------------------------------------------------------- generated data
def _generated_meta(source: Dataset, kind: str, augmenter: str, extra: dict) -> tuple[DatasetMeta, int]:
    origins = list(source.meta.origins)
    if augmenter not in origins:
        origins.append(augmenter)
    meta = source.meta.model_copy(update={
        "kind": kind, "source": "generated", "origins": origins, "content_hash": "",
        "extra": {"augmenter": augmenter, **extra, "parent_hash": source.meta.content_hash}})
    return meta, origins.index(augmenter)


def generated_transitions(source: Dataset, augmenter: str, extra: dict, rows: np.ndarray | None,
                          observations: np.ndarray, next_observations: np.ndarray, actions: np.ndarray | None = None,
                          rewards: np.ndarray | None = None, terminals: np.ndarray | None = None) -> Dataset:
    """A generated `transitions` dataset: each step its own episode, provenance pointing at the episodes of the
    source `rows`.  Actions, rewards and terminal flags default to those of the source rows; every
    non-terminal step is a timeout (it bootstraps from its own s').  `rows=None`: samples drawn from a model of
    the whole dataset (SER), with no source row (provenance -1); actions, rewards and terminals are then given."""
    n = len(observations)
    prov = np.full((n, 2), -1, np.int32)
    if rows is None:
        if actions is None or rewards is None or terminals is None:
            raise BenchError(f"augmenter '{augmenter}' output: without source rows, actions, rewards and terminals "
                             f"must be given")
        rows = np.zeros(0, np.int64)
    else:
        rows = np.asarray(rows)
        prov[:, 0] = np.searchsorted(np.asarray(source.episode_offsets), rows, side="right") - 1
    meta, origin = _generated_meta(source, "transitions", augmenter, extra)
    terminals = np.asarray(source.terminals)[rows] if terminals is None else np.asarray(terminals, bool)
    return Dataset(
        observations=np.asarray(observations, np.float32),
        actions=np.asarray(source.actions[rows] if actions is None else actions, np.float32),
        rewards=np.asarray(source.rewards[rows] if rewards is None else rewards, np.float32),
        next_observations=np.asarray(next_observations, np.float32),
        terminals=terminals,
        timeouts=~terminals,
        episode_offsets=np.arange(n + 1, dtype=np.int64),
        origin=np.full(n, origin, np.int16),
        source_episodes=prov,
        meta=meta,
    ).with_hash().validate(where=f"augmenter '{augmenter}' output")


def generated_trajectories(source: Dataset, augmenter: str, extra: dict, *, observations: np.ndarray,
                           actions: np.ndarray, rewards: np.ndarray, next_observations: np.ndarray,
                           lengths: np.ndarray, source_episode: np.ndarray, source_step: np.ndarray,
                           target_episode: np.ndarray | None = None, target_step: np.ndarray | None = None,
                           terminals: np.ndarray | None = None) -> Dataset:
    """A generated `trajectories` dataset from segments laid end to end in flat arrays (segment k is the next
    `lengths[k]` rows; within a segment next_observations[t] == observations[t + 1]).

    Provenance per segment: the source episode and the step of it the segment starts from; for a stitch, the
    target episode and the step of it the segment leads to (-1 where there is none).  Every step records its
    segment's (source, target) episodes in `source_episodes`; the join positions go to
    `meta.extra["segments"]`.  A segment ends in a terminal if its last step is one, otherwise in a timeout."""
    lengths = np.asarray(lengths, np.int64)
    n, k = int(lengths.sum()), len(lengths)
    if k == 0 or (lengths < 1).any():
        raise BenchError(f"augmenter '{augmenter}' output: every segment needs at least one step")

    def per_segment(values, name, default=-1):
        v = np.full(k, default, np.int64) if values is None else np.asarray(values, np.int64)
        if v.shape != (k,):
            raise BenchError(f"augmenter '{augmenter}' output: '{name}' has shape {v.shape}, expected ({k},) "
                             f"(one per segment)")
        return v

    src_ep, src_step = per_segment(source_episode, "source_episode"), per_segment(source_step, "source_step")
    tgt_ep, tgt_step = per_segment(target_episode, "target_episode"), per_segment(target_step, "target_step")
    if src_ep.min() < 0 or src_ep.max() >= source.n_episodes or tgt_ep.max() >= source.n_episodes:
        raise BenchError(f"augmenter '{augmenter}' output: a segment names an episode outside the source "
                         f"dataset's {source.n_episodes}")
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    terminals = np.zeros(n, bool) if terminals is None else np.asarray(terminals, bool)
    last = np.zeros(n, bool)
    last[offsets[1:] - 1] = True
    meta, origin = _generated_meta(source, "trajectories", augmenter, {
        **extra, "segments": {"source_step": src_step.tolist(), "target_step": tgt_step.tolist()}})
    return Dataset(
        observations=np.asarray(observations, np.float32),
        actions=np.asarray(actions, np.float32),
        rewards=np.asarray(rewards, np.float32),
        next_observations=np.asarray(next_observations, np.float32),
        terminals=terminals,
        timeouts=last & ~terminals,
        episode_offsets=offsets,
        origin=np.full(n, origin, np.int16),
        source_episodes=np.stack([np.repeat(src_ep, lengths), np.repeat(tgt_ep, lengths)], 1).astype(np.int32),
        meta=meta,
    ).with_hash().validate(where=f"augmenter '{augmenter}' output")


def _npz_members(path: Path) -> dict[str, np.ndarray]:
    """Memory-map every member of an uncompressed npz; compressed members are read into memory."""
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as raw:
        for info in zf.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if info.compress_type != zipfile.ZIP_STORED:
                with zf.open(info) as member:
                    out[name] = np.lib.format.read_array(member, allow_pickle=False)
                continue
            raw.seek(info.header_offset)
            local = raw.read(30)
            if local[:4] != b"PK\x03\x04":
                raise ValueError("bad local header")
            name_len = int.from_bytes(local[26:28], "little")
            extra_len = int.from_bytes(local[28:30], "little")
            start = info.header_offset + 30 + name_len + extra_len
            raw.seek(start)
            version = np.lib.format.read_magic(raw)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(raw)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(raw)
            if dtype.hasobject:
                raise ValueError(f"member {name} holds Python objects")
            data_start = raw.tell()
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if data_start + nbytes > start + info.file_size:
                raise ValueError(f"member {name} is truncated")
            if nbytes == 0:
                out[name] = np.zeros(shape, dtype)
            else:
                out[name] = np.memmap(path, dtype=dtype, mode="r", offset=data_start, shape=shape,
                                      order="F" if fortran else "C")
    return out


def load(path: Path | str, *, check: bool = True) -> Dataset:
    """Open a canonical `.npz` (memory-mapped).  Every problem is one BenchError line naming the file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise BenchError(f"{path}: no such file")
    try:
        members = _npz_members(path)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise BenchError(f"{path}: not a readable augbench dataset (truncated or corrupt npz: {e})") from None
    if META_KEY not in members:
        raise BenchError(f"{path}: no '{META_KEY}' member; not an augbench dataset file")
    try:
        meta_dict = json.loads(bytes(np.asarray(members.pop(META_KEY))).decode())
    except (ValueError, UnicodeDecodeError) as e:
        raise BenchError(f"{path}: metadata is not valid JSON ({e})") from None
    if not isinstance(meta_dict, dict):
        raise BenchError(f"{path}: metadata is a JSON {type(meta_dict).__name__}, not an object; not an augbench "
                         f"dataset file")
    version = meta_dict.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BenchError(f"{path}: schema version {version}, this augbench reads version {SCHEMA_VERSION}; "
                         f"regenerate the file")
    try:
        meta = DatasetMeta.model_validate(meta_dict)
    except Exception as e:  # pydantic.ValidationError: keep one line
        first = str(e).splitlines()
        raise BenchError(f"{path}: invalid metadata ({' '.join(first[:3])})") from None
    missing = [k for k in _REQUIRED if k not in members]
    if missing:
        raise BenchError(f"{path}: missing array(s) {', '.join(missing)}")
    unknown = [k for k in members if k not in _REQUIRED and k not in _OPTIONAL]
    if unknown:
        raise BenchError(f"{path}: unknown array(s) {', '.join(unknown)}")
    ds = Dataset(meta=meta, **members)
    if check:
        ds.validate(where=str(path))
        if meta.content_hash and ds.compute_hash() != meta.content_hash:
            raise BenchError(f"{path}: content hash mismatch (file altered or corrupt)")
    return ds

