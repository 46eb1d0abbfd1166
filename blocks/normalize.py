"""Per-dimension normalisers fitted on a data set; each works on numpy arrays and torch tensors of shape (..., D).

- `ZScore`, SynthER's "standard" normaliser (`synther/diffusion/norm.py`, `Normalizer`): mean and the sample std
  (ddof 1, as `torch.std`) per dimension over the whole data; transform (x - mean) / (std + eps), eps = 1e-5; the
  `exclude` columns (SynthER's terminal flag, `disable_terminal_norm`) get mean 0 and scale exactly 1.
- `MinMax`, Decision Diffuser's `LimitsNormalizer`: [min, max] -> [-1, 1] per dimension, inverse clipped.
- `EmpiricalCDF`, DiffStitch's `CDFNormalizer` (`diffuser/datasets/normalization.py`): per dimension, the
  sorted unique values q_1 < ... < q_K and their cumulative frequencies c_k = (#values <= q_k) / N; transform
  clips x to [q_1, q_K], interpolates linearly from q to c and maps to 2c - 1; inverse maps y to (y + 1) / 2,
  clips it to [c_1, c_K] and interpolates back from c to q.  As in the authors' code:
  * the data maximum maps to exactly 1 but the data minimum maps to 2 c_1 - 1 = -1 + 2 (#minimum) / N, not -1;
    values below the minimum clip to that value, and any y below it inverts to the minimum;
  * a dimension with a single value is passed through unchanged in both directions;
  * outputs have the input's dtype.
  One detail differs without effect on float32 data: the authors cast the fitted data to float32 first; here the
  knots keep the data's own precision (float32 data are exact in float64, so the knots are the same).

The statistics are numpy float64 arrays; the arithmetic runs in the input's floating dtype (float32 for integer
input).  `to_state()` gives plain numpy arrays and `from_state()` rebuilds an identical normaliser.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def _rows(data) -> np.ndarray:
    """The fitting data as a float64 (N, D) array."""
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().numpy()
    data = np.asarray(data, dtype=np.float64)
    if data.ndim == 1:
        data = data[:, None]
    return data.reshape(-1, data.shape[-1])


def _check_dim(x, dim: int, who: str) -> None:
    if x.shape[-1] != dim:
        raise ValueError(f"{who}: expected last dimension {dim}, got shape {tuple(x.shape)}")


class ZScore:
    def __init__(self, mean, scale):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)  # std + eps; exactly 1 on excluded columns
        if self.mean.shape != self.scale.shape or self.mean.ndim != 1:
            raise ValueError("ZScore: mean and scale must be 1-D arrays of the same length")
        if not (self.scale > 0).all():
            raise ValueError("ZScore: every scale must be > 0")

    @classmethod
    def fit(cls, data, exclude: Sequence[int] = (), eps: float = 1e-5) -> ZScore:
        x = _rows(data)
        if len(x) < 2:
            raise ValueError("ZScore.fit: need at least 2 rows")
        if not eps > 0:
            raise ValueError(f"ZScore.fit: 'eps' must be > 0, got {eps}")
        mean = x.mean(axis=0)
        scale = x.std(axis=0, ddof=1) + eps
        cols = list(exclude)
        mean[cols] = 0.0
        scale[cols] = 1.0
        return cls(mean, scale)

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    def _stats(self, x):
        if isinstance(x, torch.Tensor):
            dtype = x.dtype if x.is_floating_point() else torch.float32
            mean = torch.as_tensor(self.mean, device=x.device).to(dtype)
            return x.to(dtype), mean, torch.as_tensor(self.scale, device=x.device).to(dtype)
        x = np.asarray(x)
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
        return x.astype(dtype, copy=False), self.mean.astype(dtype), self.scale.astype(dtype)

    def transform(self, x):
        _check_dim(x, self.dim, "ZScore.transform")
        x, mean, scale = self._stats(x)
        return (x - mean) / scale

    def inverse(self, y):
        _check_dim(y, self.dim, "ZScore.inverse")
        y, mean, scale = self._stats(y)
        return y * scale + mean

    def to_state(self) -> dict:
        return {"mean": self.mean.copy(), "scale": self.scale.copy()}

    @classmethod
    def from_state(cls, state: dict) -> ZScore:
        return cls(state["mean"], state["scale"])


class MinMax(ZScore):
    """Decision Diffuser's `LimitsNormalizer` (`diffuser/datasets/normalization.py`): per dimension [min, max] ->
    [-1, 1]; inverse clips to [-1, 1] first (so it never leaves the data's range).  A constant dimension gets
    scale 1 (as `SafeLimitsNormalizer`)."""

    @classmethod
    def fit(cls, data, exclude: Sequence[int] = (), eps: float = 0.0) -> MinMax:
        x = _rows(data)
        if len(x) < 1:
            raise ValueError("MinMax.fit: need at least 1 row")
        low, high = x.min(axis=0), x.max(axis=0)
        half = (high - low) / 2.0
        half[half <= 0] = 1.0
        return cls((high + low) / 2.0, half)

    def inverse(self, y):
        _check_dim(y, self.dim, "MinMax.inverse")
        y, mean, scale = self._stats(y)
        y = y.clamp(-1.0, 1.0) if isinstance(y, torch.Tensor) else np.clip(y, -1.0, 1.0)
        return y * scale + mean


class EmpiricalCDF:
    def __init__(self, quantiles: Sequence, cumprob: Sequence):
        self.quantiles = [np.asarray(q, dtype=np.float64) for q in quantiles]
        self.cumprob = [np.asarray(c, dtype=np.float64) for c in cumprob]
        if len(self.quantiles) != len(self.cumprob):
            raise ValueError("EmpiricalCDF: one quantile and one cumprob array per dimension")
        for i, (q, c) in enumerate(zip(self.quantiles, self.cumprob)):
            if q.ndim != 1 or q.shape != c.shape or q.size == 0:
                raise ValueError(f"EmpiricalCDF: dimension {i}: knots must be equal-length non-empty 1-D arrays")
            if (np.diff(q) <= 0).any() or (np.diff(c) <= 0).any():
                raise ValueError(f"EmpiricalCDF: dimension {i}: knots must be strictly increasing")

    @classmethod
    def fit(cls, data) -> EmpiricalCDF:
        x = _rows(data)
        quantiles, cumprob = [], []
        for column in x.T:
            values, counts = np.unique(column, return_counts=True)
            quantiles.append(values)
            cumprob.append(np.cumsum(counts) / column.size)
        return cls(quantiles, cumprob)

    @property
    def dim(self) -> int:
        return len(self.quantiles)

    @property
    def data_min(self) -> np.ndarray:
        return np.array([q[0] for q in self.quantiles])

    @property
    def data_max(self) -> np.ndarray:
        return np.array([q[-1] for q in self.quantiles])

    def _apply(self, x, one_dim):
        """Run `one_dim(column, i)` on every dimension of x (numpy or torch) and keep x's type and dtype."""
        _check_dim(x, self.dim, "EmpiricalCDF")
        tensor = x if isinstance(x, torch.Tensor) else None
        a = x.detach().cpu().numpy() if tensor is not None else np.asarray(x)
        dtype = a.dtype if np.issubdtype(a.dtype, np.floating) else np.float32
        flat = a.reshape(-1, self.dim)
        out = np.empty(flat.shape, dtype=dtype)
        for i in range(self.dim):
            out[:, i] = one_dim(flat[:, i].astype(np.float64), i)
        out = out.reshape(a.shape)
        return out if tensor is None else torch.from_numpy(out).to(tensor.device)

    def _forward(self, column, i):
        q, c = self.quantiles[i], self.cumprob[i]
        if q.size == 1:
            return column
        return 2.0 * np.interp(np.clip(column, q[0], q[-1]), q, c) - 1.0

    def _backward(self, column, i):
        q, c = self.quantiles[i], self.cumprob[i]
        if q.size == 1:
            return column
        return np.interp(np.clip((column + 1.0) / 2.0, c[0], c[-1]), c, q)

    def transform(self, x):
        return self._apply(x, self._forward)

    def inverse(self, y):
        return self._apply(y, self._backward)

    def to_state(self) -> dict:
        return {"quantiles": [q.copy() for q in self.quantiles], "cumprob": [c.copy() for c in self.cumprob]}

    @classmethod
    def from_state(cls, state: dict) -> EmpiricalCDF:
        return cls(state["quantiles"], state["cumprob"])
