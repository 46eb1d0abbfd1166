"""A Gaussian dynamics ensemble: E MLPs that each predict a diagonal Gaussian over (s' - s, r) from (s, a).

What follows the authors' code (TATU's model-free pipeline, `aug_algo.py` `algo_init` / `train_transition` /
`_train_forward_transition` / `_eval_forward_transition` / `_stop_train_model` / `compute_disc`, on polixir/OfflineRL
`offlinerl/utils/net/model/ensemble.py` `EnsembleTransition`):
- 7 members, 4 hidden layers of 200, Swish; one batched matmul per layer for all members.  Weights drawn from a
  normal of std 1 / (2 sqrt(fan_in)) truncated at +-2 (`trunc_normal_` defaults), biases zero.
- The head gives a mean and a log-std per output (next-state delta, then reward).  The log-std is soft-clamped
  between two learnable vectors shared by the members, max starting at 1 and min at -5:
  max - softplus(max - x), then min + softplus(x - min).
- No input normalisation: the network sees raw (s, a) and predicts raw deltas and rewards.
- Loss: Gaussian negative log-likelihood averaged over members, rows and outputs, plus
  0.01 * (mean(max_logstd) - mean(min_logstd)) -- the mean over output dimensions, as in `aug_algo.py`.
- Adam, lr 1e-3, weight_decay 7.5e-5 as Adam's own (coupled, L2-into-the-gradient) decay on every parameter
  that has a gradient, the log-std bounds included; learning rate x 0.99 after every epoch; batch 256.
- Holdout: min(int(0.2 N) + 1, 1000) rows from one random permutation (training rows first, as
  `torch.utils.data.random_split` lays them out).  Each epoch every member draws its own bootstrap sample of the
  training rows (n_train indices with replacement, `np.random.randint` in the authors' code) and walks it in
  ceil(n_train / 256) minibatches; all members step together.
- After each epoch: holdout MSE of the mean per member over rows and outputs (reward included); a member's
  weights are snapshotted whenever its holdout MSE is a new best.  Early stopping: the running best of some
  member must improve by more than 1 % of its last recorded best, else the epoch counts as stale; stop when more
  than 5 epochs in a row are stale, or after 200 epochs.
- Elites: the 5 members of lowest best holdout MSE; their best weights are restored, and predictions use only
  elites.  The log-std bounds are not snapshotted (they are shared), so they keep their final values.
- TATU's uncertainty u(s, a) (`disagreement`): max over elites of the L2 norm of (elite mean next state - the
  elites' average mean next state), next-state dims only, raw units.  The observation is common to all members,
  so this is computed on the predicted deltas (the same number up to rounding).
- `sample`: next state and reward drawn from the Gaussian of one elite chosen uniformly per row (TATU's
  rollouts); `sample(..., deterministic=True)` gives that elite's mean instead (DiffStitch's use, D12).

Deviations, each a named `EnsembleConfig` option whose default is the authors' behaviour unless said otherwise:
- `normalize_inputs` (default False, the authors): True z-scores the (s, a) input with `blocks.normalize.ZScore`
  fitted on the training rows.
- `holdout_leak` (default False, NOT the authors): the authors index the whole data array with positions drawn
  in [0, n_train), so some holdout rows reach training and the last training rows never do; False indexes the
  training split, True reproduces the authors' indexing.
Differences without an option: randomness comes only from the Generator given to `fit` (the authors use the
global numpy/torch RNGs), and `fit` re-initialises the weights from it, so a fit depends only on data, config and
generator; best weights are restored for every member, not only the elites (elite outputs are the same).

DiffStitch (`scripts/mopo/`) trains a MOPO-style ensemble of the same size (log-variance head, per-layer weight
decays 2.5e-5..1e-4, holdout ratio 0.2 without the 1000 cap, sum rather than mean in the bound term).  This
module implements TATU's recipe; DiffStitch's use of it (mean of one random elite) is `sample(deterministic=True)`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from blocks.nn import EnsembleLinear, EnsembleMLP, float_tensor
from blocks.normalize import ZScore

_ACTIVATIONS = ("swish", "silu", "relu", "gelu")


@dataclass
class EnsembleConfig:
    members: int = 7
    elites: int = 5
    hidden: tuple[int, ...] = (200, 200, 200, 200)
    activation: str = "swish"
    lr: float = 1e-3
    weight_decay: float = 7.5e-5  # Adam's coupled L2 decay on every trained parameter
    lr_decay: float = 0.99  # learning-rate factor per epoch
    batch_size: int = 256
    max_epochs: int = 200
    holdout_ratio: float = 0.2  # holdout = min(int(ratio * N) + 1, holdout_max)
    holdout_max: int = 1000
    patience: int = 5  # stop after more than this many epochs in a row without enough improvement
    min_improvement: float = 0.01  # relative improvement of a member's best holdout MSE that counts
    max_logstd_init: float = 1.0
    min_logstd_init: float = -5.0
    logstd_bound_coef: float = 0.01  # loss += coef * (mean(max_logstd) - mean(min_logstd))
    chunk: int = 65536  # rows per forward pass when evaluating many rows
    normalize_inputs: bool = False  # deviation: z-score the (s, a) input (the authors do not)
    holdout_leak: bool = False  # True: the authors' indexing of the full array with training positions

    def __post_init__(self):
        if isinstance(self.hidden, list):
            self.hidden = tuple(self.hidden)

    def validate(self) -> EnsembleConfig:
        def bad(name: str, rule: str):
            raise ValueError(f"EnsembleConfig.{name} = {getattr(self, name)!r}: must be {rule}")

        def integer(name: str, low: int, high: float = math.inf):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
                bad(name, f"an integer in [{low}, {high}]")

        def number(name: str, low: float, high: float, low_open: bool, high_open: bool):
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            ok = ok and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
            if not ok:
                bad(name, f"a finite number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}")

        integer("members", 1)
        integer("elites", 1, self.members)
        if not isinstance(self.hidden, tuple) or not self.hidden or any(
                isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden):
            bad("hidden", "a non-empty tuple of positive integers")
        if self.activation not in _ACTIVATIONS:
            bad("activation", f"one of {_ACTIVATIONS}")
        number("lr", 0, math.inf, True, True)
        number("weight_decay", 0, math.inf, False, True)
        number("lr_decay", 0, 1, True, False)
        integer("batch_size", 1)
        integer("max_epochs", 1)
        number("holdout_ratio", 0, 1, False, True)
        integer("holdout_max", 1)
        integer("patience", 0)
        number("min_improvement", 0, math.inf, False, True)
        number("max_logstd_init", -math.inf, math.inf, True, True)
        number("min_logstd_init", -math.inf, self.max_logstd_init, True, True)
        number("logstd_bound_coef", 0, math.inf, False, True)
        integer("chunk", 1)
        for name in ("normalize_inputs", "holdout_leak"):
            if not isinstance(getattr(self, name), bool):
                bad(name, "True or False")
        return self


def holdout_size(n: int, cfg: EnsembleConfig) -> int:
    return min(int(n * cfg.holdout_ratio) + 1, cfg.holdout_max)


def soft_clamp(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    x = high - F.softplus(high - x)
    return low + F.softplus(x - low)


class GaussianEnsemble(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, cfg: EnsembleConfig | None = None):
        super().__init__()
        self.cfg = replace(cfg or EnsembleConfig()).validate()  # a copy: the caller's config stays its own
        if obs_dim < 1 or act_dim < 0:
            raise ValueError(f"GaussianEnsemble: obs_dim must be >= 1 and act_dim >= 0, got {obs_dim}, {act_dim}")
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        out = self.obs_dim + 1
        with torch.random.fork_rng(devices=[]):  # EnsembleLinear's own init would draw from the global RNG
            self.net = EnsembleMLP(self.cfg.members, self.obs_dim + self.act_dim, self.cfg.hidden, 2 * out,
                                   act=self.cfg.activation)
        self.max_logstd = nn.Parameter(torch.empty(out))
        self.min_logstd = nn.Parameter(torch.empty(out))
        self.input_norm: ZScore | None = None
        self.elites: list[int] = []
        self.reset_parameters(torch.Generator().manual_seed(0))

    # -- parameters -------------------------------------------------------------------------------------------
    def linears(self) -> list[EnsembleLinear]:
        return [m for m in self.net.layers if isinstance(m, EnsembleLinear)]

    def reset_parameters(self, generator: torch.Generator) -> None:
        """The authors' initialisation, drawn from `generator` (on its own device, then copied)."""
        with torch.no_grad():
            for layer in self.linears():
                fan_in = layer.weight.shape[1]
                w = torch.empty(layer.weight.shape, device=generator.device)
                nn.init.trunc_normal_(w, std=1.0 / (2.0 * math.sqrt(fan_in)), generator=generator)
                layer.weight.copy_(w)
                layer.bias.zero_()
            self.max_logstd.fill_(self.cfg.max_logstd_init)
            self.min_logstd.fill_(self.cfg.min_logstd_init)
        self.input_norm, self.elites = None, []

    @property
    def device(self) -> torch.device:
        return self.max_logstd.device

    # -- the network ------------------------------------------------------------------------------------------
    def _inputs(self, obs, act) -> torch.Tensor:
        x = torch.cat([float_tensor(obs, self.device), float_tensor(act, self.device)], dim=-1)
        return x if self.input_norm is None else self.input_norm.transform(x)

    def _net(self, x: torch.Tensor, members: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logstd), each (n, B, obs_dim + 1), for the given members (all by default).  x: (B, in) shared
        by the members, or (n, B, in) one batch per member."""
        n = self.cfg.members if members is None else len(members)
        h = x.unsqueeze(0).expand(n, *x.shape) if x.dim() == 2 else x
        for layer in self.net.layers:
            if isinstance(layer, EnsembleLinear):
                w, b = (layer.weight, layer.bias) if members is None else (layer.weight[members], layer.bias[members])
                h = torch.baddbmm(b, h, w)
            else:
                h = layer(h)
        mean, raw = h.chunk(2, dim=-1)
        return mean, soft_clamp(raw, self.min_logstd, self.max_logstd)

    def forward(self, obs, act) -> tuple[torch.Tensor, torch.Tensor]:
        """Every member's (mean, logstd) of (s' - s, r): each (E, B, obs_dim + 1), delta-state then reward."""
        return self._net(self._inputs(obs, act))

    # -- training ---------------------------------------------------------------------------------------------
    def fit(self, obs, act, next_obs, rewards, generator: torch.Generator, device: str | torch.device = "cpu",
            log: Callable[[dict], None] | None = None) -> dict:
        """Train from scratch (weights re-drawn from `generator`), pick the elites, restore best weights.

        All randomness (initialisation, the train/holdout split, each member's per-epoch bootstrap sample) comes
        from `generator`.  `log`, if given, receives {"epoch", "holdout_mse", "lr"} after every epoch.
        Returns {"epochs", "holdout_mse" (best per member), "elites", "train_size", "holdout_size"}."""
        cfg = self.cfg
        self.to(device)
        obs, act = float_tensor(obs, self.device), float_tensor(act, self.device)
        next_obs, rewards = float_tensor(next_obs, self.device), float_tensor(rewards, self.device).reshape(-1, 1)
        n = obs.shape[0]
        if not (act.shape[0] == next_obs.shape[0] == rewards.shape[0] == n):
            raise ValueError("GaussianEnsemble.fit: obs, act, next_obs and rewards need the same number of rows")
        if obs.shape[1] != self.obs_dim or act.shape[1] != self.act_dim or next_obs.shape[1] != self.obs_dim:
            raise ValueError(f"GaussianEnsemble.fit: expected obs/next_obs with {self.obs_dim} and act with "
                             f"{self.act_dim} columns")
        n_val = holdout_size(n, cfg)
        n_train = n - n_val
        if n_train < 1:
            raise ValueError(f"GaussianEnsemble.fit: {n} rows leave no training rows after a holdout of {n_val}")

        self.reset_parameters(generator)
        order = torch.randperm(n, generator=generator, device=generator.device).to(self.device)
        train_rows, val_rows = order[:n_train], order[n_train:]
        x = torch.cat([obs, act], dim=-1)
        target = torch.cat([next_obs - obs, rewards], dim=-1)
        if cfg.normalize_inputs:
            self.input_norm = ZScore.fit(x[train_rows])
            x = self.input_norm.transform(x)
        x_val, t_val = x[val_rows], target[val_rows]
        # the rows that bootstrap positions in [0, n_train) index: the training split, or (the authors) everything
        x_src, t_src = (x, target) if cfg.holdout_leak else (x[train_rows], target[train_rows])

        optim = torch.optim.Adam(self.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.ExponentialLR(optim, gamma=cfg.lr_decay)
        saved = [(layer.weight.detach().clone(), layer.bias.detach().clone()) for layer in self.linears()]
        best = [math.inf] * cfg.members  # best holdout MSE per member (its snapshot's)
        recorded = [1e10] * cfg.members  # the early-stopping reference per member
        stale, epoch = 0, 0
        while True:
            epoch += 1
            self.train()
            boot = torch.randint(n_train, (cfg.members, n_train), generator=generator, device=generator.device)
            boot = boot.to(self.device)
            for start in range(0, n_train, cfg.batch_size):
                rows = boot[:, start:start + cfg.batch_size]
                loss = self.training_loss(x_src[rows], t_src[rows])
                optim.zero_grad()
                loss.backward()
                optim.step()

            mse = self._holdout_mse(x_val, t_val)
            improved = [i for i in range(cfg.members) if mse[i] < best[i]]
            with torch.no_grad():
                for layer, (w, b) in zip(self.linears(), saved):
                    w[improved], b[improved] = layer.weight[improved], layer.bias[improved]
            for i in improved:
                best[i] = mse[i]
            updated = False
            for i in range(cfg.members):
                if recorded[i] > 0 and (recorded[i] - best[i]) / recorded[i] > cfg.min_improvement:
                    recorded[i], updated = best[i], True
            stale = 0 if updated else stale + 1
            if log is not None:
                log({"epoch": epoch, "holdout_mse": mse, "lr": optim.param_groups[0]["lr"]})
            if stale > cfg.patience or epoch >= cfg.max_epochs:
                break
            sched.step()

        with torch.no_grad():
            for layer, (w, b) in zip(self.linears(), saved):
                layer.weight.copy_(w)
                layer.bias.copy_(b)
        self.eval()
        self.elites = sorted(range(cfg.members), key=lambda i: (best[i], i))[:cfg.elites]
        return {"epochs": epoch, "holdout_mse": best, "elites": list(self.elites), "train_size": n_train,
                "holdout_size": n_val}

    def training_loss(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Gaussian NLL averaged over members, rows and outputs, plus the log-std bound term.  x: network inputs
        (B, in) or (E, B, in); target: (s' - s, r) of the same leading shape."""
        mean, logstd = self._net(x)
        z = (target - mean) * torch.exp(-logstd)
        nll = (0.5 * z.pow(2) + logstd + 0.5 * math.log(2 * math.pi)).mean()
        return nll + self.cfg.logstd_bound_coef * (self.max_logstd.mean() - self.min_logstd.mean())

    @torch.no_grad()
    def _holdout_mse(self, x: torch.Tensor, t: torch.Tensor) -> list[float]:
        total = torch.zeros(self.cfg.members, dtype=torch.float64, device=self.device)
        for start in range(0, x.shape[0], self.cfg.chunk):
            mean, _ = self._net(x[start:start + self.cfg.chunk])
            total += (mean - t[start:start + self.cfg.chunk]).pow(2).sum(dim=(1, 2)).double()
        return (total / t.numel()).tolist()

    # -- prediction (elites only, after fit) -------------------------------------------------------------------
    def _require_fit(self) -> None:
        if not self.elites:
            raise RuntimeError("GaussianEnsemble: call fit() (or from_state()) before predicting")

    @torch.no_grad()
    def _chunks(self, obs, act, members: list[int]):
        """Yields (obs chunk, mean, logstd) with mean/logstd (len(members), b, obs_dim + 1), rows in order."""
        obs = float_tensor(obs, self.device)
        act = float_tensor(act, self.device)
        for start in range(0, obs.shape[0], self.cfg.chunk):
            o = obs[start:start + self.cfg.chunk]
            yield (o, *self._net(self._inputs(o, act[start:start + self.cfg.chunk]), members))

    def predict(self, obs, act, member: str | int = "elites") -> tuple[torch.Tensor, torch.Tensor]:
        """Mean next state and mean reward.  member="elites": (n_elites, B, obs_dim) and (n_elites, B);
        "mean": the elites' average, (B, obs_dim) and (B,); an int: that member (0..E-1), (B, obs_dim), (B,)."""
        self._require_fit()
        if member in ("elites", "mean"):
            members = self.elites
        elif isinstance(member, int) and not isinstance(member, bool) and 0 <= member < self.cfg.members:
            members = [member]
        else:
            raise ValueError(f"GaussianEnsemble.predict: member must be 'elites', 'mean' or an int in "
                             f"[0, {self.cfg.members}), got {member!r}")
        nexts, rewards = [], []
        for o, mean, _ in self._chunks(obs, act, members):
            nexts.append(o + mean[..., :self.obs_dim])
            rewards.append(mean[..., self.obs_dim])
        next_obs, reward = torch.cat(nexts, dim=1), torch.cat(rewards, dim=1)
        if member == "mean":
            return next_obs.mean(0), reward.mean(0)
        if member == "elites":
            return next_obs, reward
        return next_obs[0], reward[0]

    def sample(self, obs, act, generator: torch.Generator,
               deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row, one elite chosen uniformly; its Gaussian sampled (or its mean, `deterministic`).
        Returns next state (B, obs_dim) and reward (B,)."""
        self._require_fit()
        nexts, rewards = [], []
        for o, mean, logstd in self._chunks(obs, act, self.elites):
            b = o.shape[0]
            pick = torch.randint(len(self.elites), (b,), generator=generator, device=generator.device)
            pick = pick.to(self.device)
            rows = torch.arange(b, device=self.device)
            y = mean[pick, rows]
            if not deterministic:
                noise = torch.randn(y.shape, generator=generator, device=generator.device).to(self.device)
                y = y + torch.exp(logstd[pick, rows]) * noise
            nexts.append(o + y[:, :self.obs_dim])
            rewards.append(y[:, self.obs_dim])
        return torch.cat(nexts), torch.cat(rewards)

    def disagreement(self, obs, act) -> torch.Tensor:
        """TATU's u(s, a), (B,): max over elites of || elite mean next state - elites' average ||_2."""
        self._require_fit()
        out = []
        for _, mean, _ in self._chunks(obs, act, self.elites):
            delta = mean[..., :self.obs_dim]
            out.append((delta - delta.mean(0)).norm(dim=-1).max(0).values)
        return torch.cat(out)

    # -- save / load ------------------------------------------------------------------------------------------
    def get_extra_state(self) -> dict:
        return {"obs_dim": self.obs_dim, "act_dim": self.act_dim, "config": asdict(self.cfg),
                "elites": list(self.elites),
                "input_norm": None if self.input_norm is None else self.input_norm.to_state()}

    def set_extra_state(self, state: dict) -> None:
        cfg = EnsembleConfig(**state["config"])
        if (state["obs_dim"], state["act_dim"], cfg) != (self.obs_dim, self.act_dim, self.cfg):
            raise ValueError("GaussianEnsemble: the saved state belongs to another shape or config")
        self.elites = [int(i) for i in state["elites"]]
        norm = state["input_norm"]
        self.input_norm = None if norm is None else ZScore.from_state(norm)

    def to_state(self) -> dict:
        """Everything needed to rebuild this ensemble: shapes, config, weights, elites, input normaliser."""
        weights = {k: v.detach().cpu().clone() if isinstance(v, torch.Tensor) else v
                   for k, v in self.state_dict().items()}
        return {"obs_dim": self.obs_dim, "act_dim": self.act_dim, "config": asdict(self.cfg), "state_dict": weights}

    @classmethod
    def from_state(cls, state: dict, device: str | torch.device = "cpu") -> GaussianEnsemble:
        known = {f.name for f in fields(EnsembleConfig)}
        unknown = set(state["config"]) - known
        if unknown:
            raise ValueError(f"GaussianEnsemble.from_state: unknown config keys {sorted(unknown)}")
        model = cls(state["obs_dim"], state["act_dim"], EnsembleConfig(**state["config"]))
        model.load_state_dict(state["state_dict"])
        return model.to(device)
