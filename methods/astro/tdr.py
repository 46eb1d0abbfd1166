"""The temporal distance representation (TDR) that ASTRO uses to pick stitch targets: an encoder phi whose
Euclidean distance ||phi(s) - phi(g)|| stands for the number of steps from s to g.

ASTRO's own recipe is not public (see shared/reference/astro-facts.md); this module trains GAS's TDR (Baek et al.,
ICML 2025, github qortmdgh4141/GAS, commit c9e590f), read from `M_utils/agents/gas.py` (GASAgent.create,
tdr_value_loss, expectile_loss, target_update, tdr_update, get_phi, get_config), `M_utils/networks.py` (MLP,
GCPhiValue, ensemblize, default_init), `O_utils/datasets.py` (GCDataset.sample_goals / sample),
`pretrain_tdr.py` (the training loop) and the README's per-dataset command lines.  What follows GAS:

- Value V(s, g) = -||phi(s) - phi(g)||, the norm taken as sqrt(max(squared norm, 1e-6)).
- phi: an MLP 512-512-512 -> 32 on the raw observation, Dense -> GELU (Flax's tanh approximation) -> LayerNorm
  (epsilon 1e-6, Flax's) after every hidden layer, nothing after the last; Glorot-uniform weights, zero biases.
  Two independently initialised copies of the whole MLP ("heads"; GAS's `ensemblize(MLP, 2)`), each giving its
  own V; a target copy of both, initialised equal to the online networks and moved by Polyak averaging with
  tau 0.005 after every step.  GAS averages the target towards the online parameters as they were BEFORE the
  step (`target_update` reads `self.network`, not the updated one); here the same, the average is taken
  between the backward pass and the optimiser step.
- Batch: transitions (s, s') drawn uniformly from all rows; goals, per row, from the same episode with
  probability p_trajectory_goal = 0.625, else a uniform dataset state (p_random_goal = 0.375); the current state
  itself with p_current_goal = 0 (GAS's `tdr_value_p_curgoal`).  Trajectory goals sit at a geometric offset
  k >= 1 with parameter 1 - discount, clipped to the episode's last row: min(t + k, last).  So the current state
  is a goal only at an episode's last row (or when a random goal draws it).  GAS's mixture formula is kept:
  trajectory goal when u < p_trajectory_goal / (1 - p_current_goal + 1e-6).  `geometric_goals = False` is GAS's
  uniform alternative, round(min(t + 1, last) * d + last * (1 - d)), d ~ U[0, 1).
- Reward and mask by index equality of the row and its goal row: success = 1[idx == goal_idx], reward =
  success - 1, mask = 1 - success.
- Loss, per head k: expectile_loss(adv, q_k - v_k) averaged over the batch, summed over heads, with
  q_k = r + discount * mask * V_target_k(s', g), v_k = V_k(s, g) (online) and ONE advantage for all heads,
  adv = r + discount * mask * min_k V_target_k(s', g) - mean_k V_target_k(s, g); the expectile weight is
  `expectile` where adv >= 0, else 1 - expectile.
- expectile 0.999, discount 0.99, Adam (lr 3e-4, optax defaults = torch's), batch 1024, 1,000,000 steps: the
  state-based medium/large maze lines of GAS's README (`pretrain_tdr.py ... --agent_config.discount 0.99
  --agent_config.tdr_expectile 0.999 --agent_config.batch_size 1024 --train_steps 1000000`).  GAS's
  `get_config` default discount is 0.995, which its README uses only for the giant mazes.
- At inference "the" representation is head 0: GAS's `get_phi` returns `phi_s[0]`, and its graph and policy
  stages use only that head.  `embed`, `distance` and `value` take `head=0` by default; `head=None` returns all.

Deviations, each a named `TDRConfig` option whose default is GAS's behaviour:
- `normalize_inputs` (default False, GAS): True z-scores observations (`blocks.normalize.ZScore` on the
  dataset's observations) before phi.
- `geometric_p` (default None: 1 - discount, GAS): another parameter for the trajectory-goal offsets.
Differences without an option: all randomness comes from the torch.Generator given to `fit` (GAS uses numpy's
global RNG for batches and a JAX key for the initialisation), and `fit` re-initialises the networks from it, so a
fit depends only on data, config and generator; episodes are the canonical Dataset's `episode_offsets` (GAS's
OGBench `terminals` mark the same trajectory ends).  `distance` keeps the 1e-6 floor of the training value (GAS's
graph stage takes a plain norm of the head-0 embeddings).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Callable

import numpy as np
import torch

from blocks.nn import EnsembleLayerNorm, EnsembleMLP, float_tensor
from blocks.normalize import ZScore

_ACTIVATIONS = ("gelu", "relu", "swish", "silu")


@dataclass
class TDRConfig:
    hidden: tuple[int, ...] = (512, 512, 512)
    latent: int = 32  # GAS's tdr_dim
    layer_norm: bool = True
    layer_norm_eps: float = 1e-6  # Flax's LayerNorm default
    activation: str = "gelu"
    heads: int = 2
    tau: float = 0.005
    expectile: float = 0.999
    discount: float = 0.99
    lr: float = 3e-4
    batch_size: int = 1024
    steps: int = 1_000_000
    p_current_goal: float = 0.0
    p_trajectory_goal: float = 0.625
    p_random_goal: float = 0.375
    geometric_goals: bool = True  # False: GAS's uniform future-goal alternative
    geometric_p: float | None = None  # deviation: None = 1 - discount (GAS)
    normalize_inputs: bool = False  # deviation: z-score observations (GAS does not)
    log_every: int = 1000  # steps between `progress` reports
    chunk: int = 65536  # rows per forward pass in embed / distance

    def __post_init__(self):
        if isinstance(self.hidden, list):
            self.hidden = tuple(self.hidden)

    @property
    def offset_p(self) -> float:
        return 1.0 - self.discount if self.geometric_p is None else self.geometric_p

    def validate(self) -> TDRConfig:
        def bad(name: str, rule: str):
            raise ValueError(f"TDRConfig.{name} = {getattr(self, name)!r}: must be {rule}")

        def integer(name: str, low: int):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                bad(name, f"an integer >= {low}")

        def number(name: str, low: float, high: float, low_open: bool = False, high_open: bool = False):
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            ok = ok and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
            if not ok:
                bad(name, f"a finite number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}")

        if not isinstance(self.hidden, tuple) or any(isinstance(h, bool) or not isinstance(h, int) or h < 1
                                                     for h in self.hidden):
            bad("hidden", "a tuple of positive integers")
        integer("latent", 1)
        integer("heads", 1)
        integer("batch_size", 1)
        integer("steps", 0)
        integer("log_every", 1)
        integer("chunk", 1)
        if self.activation not in _ACTIVATIONS:
            bad("activation", f"one of {_ACTIVATIONS}")
        number("layer_norm_eps", 0, math.inf, low_open=True, high_open=True)
        number("tau", 0, 1)
        number("expectile", 0, 1)
        number("discount", 0, 1, high_open=False)
        number("lr", 0, math.inf, low_open=True, high_open=True)
        for name in ("p_current_goal", "p_trajectory_goal", "p_random_goal"):
            number(name, 0, 1)
        total = self.p_current_goal + self.p_trajectory_goal + self.p_random_goal
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"TDRConfig: goal probabilities sum to {total}, not 1")
        if self.geometric_p is not None:
            number("geometric_p", 0, 1, low_open=True)
        elif self.geometric_goals and not self.discount < 1:
            raise ValueError("TDRConfig: geometric goal offsets need discount < 1 (or an explicit geometric_p)")
        for name in ("layer_norm", "geometric_goals", "normalize_inputs"):
            if not isinstance(getattr(self, name), bool):
                bad(name, "True or False")
        return self


# -- the pieces of the objective, as functions (the tests check them on hand-made numbers) ---------------------
def expectile_loss(adv: torch.Tensor, diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Elementwise expectile loss: weight * diff^2, weight = `expectile` where adv >= 0, else 1 - expectile."""
    weight = torch.where(adv >= 0, torch.full_like(diff, expectile), torch.full_like(diff, 1.0 - expectile))
    return weight * diff.pow(2)


def goal_rewards(idx: torch.Tensor, goal_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(reward, mask) by index equality: success = 1[idx == goal_idx]; reward = success - 1; mask = 1 - success."""
    success = (idx == goal_idx).float()
    return success - 1.0, 1.0 - success


def phi_distance(phi_a: torch.Tensor, phi_b: torch.Tensor) -> torch.Tensor:
    """sqrt(max(||phi_a - phi_b||^2, 1e-6)) over the last axis."""
    return (phi_a - phi_b).pow(2).sum(-1).clamp_min(1e-6).sqrt()


def episode_last_rows(episode_offsets: np.ndarray) -> np.ndarray:
    """For every row, the index of the last row of its episode."""
    off = np.asarray(episode_offsets, dtype=np.int64)
    return np.repeat(off[1:] - 1, np.diff(off))


def sample_goal_indices(idx: torch.Tensor, last: torch.Tensor, n_rows: int, cfg: TDRConfig,
                        generator: torch.Generator) -> torch.Tensor:
    """GAS's goal rows for the rows `idx` (all on the generator's device); `last[i]` is the last row of row i's
    episode."""
    b, dev = idx.shape[0], idx.device
    random_goal = torch.randint(n_rows, (b,), generator=generator, device=dev)
    end = last[idx]
    if cfg.geometric_goals:
        offsets = torch.empty(b, device=dev).geometric_(cfg.offset_p, generator=generator)  # in {1, 2, ...}
        offsets = offsets.clamp_max(float(n_rows)).long()
        traj_goal = torch.minimum(idx + offsets, end)
    else:
        d = torch.rand(b, generator=generator, device=dev, dtype=torch.float64)
        traj_goal = torch.round(torch.minimum(idx + 1, end) * d + end * (1 - d)).long()
    u = torch.rand(b, generator=generator, device=dev)
    goal = torch.where(u < cfg.p_trajectory_goal / (1.0 - cfg.p_current_goal + 1e-6), traj_goal, random_goal)
    u = torch.rand(b, generator=generator, device=dev)
    return torch.where(u < cfg.p_current_goal, idx, goal)


class TDR:
    """GAS's temporal distance representation: `fit` on a canonical Dataset, then `embed` / `distance` / `value`."""

    def __init__(self, cfg: TDRConfig | None = None):
        self.cfg = replace(cfg or TDRConfig()).validate()  # a copy: the caller's config stays its own
        self.obs_dim: int | None = None
        self.net: EnsembleMLP | None = None
        self.target: EnsembleMLP | None = None
        self.input_norm: ZScore | None = None

    # -- networks ---------------------------------------------------------------------------------------------
    def _build(self, obs_dim: int, generator: torch.Generator | None) -> None:
        cfg = self.cfg
        self.obs_dim = int(obs_dim)
        seed = 0 if generator is None else int(torch.randint(
            0, 2 ** 62, (1,), generator=generator, device=generator.device).item())
        with torch.random.fork_rng(devices=[]):  # glorot_ draws from the CPU default generator: a private stream
            torch.default_generator.manual_seed(seed)
            net = EnsembleMLP(cfg.heads, self.obs_dim, cfg.hidden, cfg.latent, act=cfg.activation,
                              layer_norm=cfg.layer_norm)
        for m in net.modules():
            if isinstance(m, EnsembleLayerNorm):
                m.eps = cfg.layer_norm_eps
        self.net = net
        self.target = copy.deepcopy(net).requires_grad_(False)

    @property
    def device(self) -> torch.device:
        self._require_fit()
        return next(self.net.parameters()).device

    def _require_fit(self) -> None:
        if self.net is None:
            raise RuntimeError("TDR: call fit() (or from_state()) first")

    def _inputs(self, obs: torch.Tensor) -> torch.Tensor:
        return obs if self.input_norm is None else self.input_norm.transform(obs)

    # -- training ---------------------------------------------------------------------------------------------
    def fit(self, dataset, generator: torch.Generator, device: str | torch.device = "cpu",
            progress: Callable[[dict], None] | None = None) -> dict:
        """Train from scratch on `dataset` (a canonical bench.dataset.Dataset) for cfg.steps steps.  `progress`
        gets a dict (step, loss, v_mean, adv_mean, accept, seconds) every cfg.log_every steps and at the end."""
        cfg = self.cfg
        obs_np = np.asarray(dataset.observations, dtype=np.float32)
        n = obs_np.shape[0]
        obs_np = obs_np.reshape(n, -1)
        if n < 1:
            raise ValueError("TDR.fit: the dataset is empty")
        self._build(obs_np.shape[1], generator)
        self.net.to(device)
        self.target.to(device)
        self.input_norm = ZScore.fit(obs_np) if cfg.normalize_inputs else None
        obs = self._inputs(float_tensor(obs_np, device))
        nxt = self._inputs(float_tensor(np.asarray(dataset.next_observations, np.float32).reshape(n, -1), device))
        gdev = generator.device
        last = torch.as_tensor(episode_last_rows(dataset.episode_offsets), device=gdev)
        if last.shape[0] != n:
            raise ValueError(f"TDR.fit: episode_offsets cover {last.shape[0]} rows, the dataset has {n}")

        optim = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        online, target = list(self.net.parameters()), list(self.target.parameters())
        b, start, info = cfg.batch_size, time.time(), {"step": 0}
        self.net.train()
        for step in range(1, cfg.steps + 1):
            idx_g = torch.randint(n, (b,), generator=generator, device=gdev)
            goal_g = sample_goal_indices(idx_g, last, n, cfg, generator)
            idx, goal = idx_g.to(device), goal_g.to(device)
            reward, mask = goal_rewards(idx, goal)
            loss, stats = self._loss(obs[idx], nxt[idx], obs[goal], reward, mask)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():  # GAS: the target moves towards the online weights of before this step
                for tp, p in zip(target, online):
                    tp.lerp_(p, cfg.tau)
            optim.step()
            if step % cfg.log_every == 0 or step == cfg.steps:
                info = {"step": step, "loss": float(loss.detach()), **{k: float(v) for k, v in stats.items()},
                        "seconds": time.time() - start}
                if progress is not None:
                    progress(info)
        self.net.eval()
        return {**info, "steps": cfg.steps, "seconds": time.time() - start}

    def _loss(self, s: torch.Tensor, s_next: torch.Tensor, g: torch.Tensor, reward: torch.Tensor,
              mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """GAS's TDR value loss on inputs already normalised: returns the loss and a few statistics."""
        cfg, b = self.cfg, s.shape[0]
        with torch.no_grad():
            t = self.target(torch.cat([s_next, s, g]))  # (heads, 3B, latent)
            t_next, t_now, t_goal = t[:, :b], t[:, b:2 * b], t[:, 2 * b:]
            next_v = -phi_distance(t_next, t_goal)  # (heads, B)
            q_heads = reward + cfg.discount * mask * next_v
            adv = reward + cfg.discount * mask * next_v.min(0).values - (-phi_distance(t_now, t_goal)).mean(0)
        o = self.net(torch.cat([s, g]))
        v = -phi_distance(o[:, :b], o[:, b:])
        loss = expectile_loss(adv, q_heads - v, cfg.expectile).mean(dim=1).sum()
        return loss, {"v_mean": v.mean().detach(), "adv_mean": adv.mean(), "accept": (adv >= 0).float().mean()}

    # -- inference --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def embed(self, obs, head: int | None = 0) -> torch.Tensor:
        """phi(obs): (N, latent) for one head (default 0, GAS's `get_phi`), (heads, N, latent) for head=None."""
        self._require_fit()
        if head is not None and not (isinstance(head, int) and not isinstance(head, bool)
                                     and 0 <= head < self.cfg.heads):
            raise ValueError(f"TDR: head must be None or an int in [0, {self.cfg.heads}), got {head!r}")
        x = float_tensor(obs, self.device)
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.obs_dim:
            raise ValueError(f"TDR: observations have {x.shape[1]} values, the TDR was fit on {self.obs_dim}")
        x = self._inputs(x)
        was_training = self.net.training
        self.net.eval()
        out = torch.cat([self.net(x[i:i + self.cfg.chunk]) for i in range(0, x.shape[0], self.cfg.chunk)], dim=1) \
            if x.shape[0] else torch.zeros(self.cfg.heads, 0, self.cfg.latent, device=self.device)
        self.net.train(was_training)
        return out if head is None else out[head]

    def distance(self, a, b, head: int | None = 0) -> torch.Tensor:
        """sqrt(max(||phi(a) - phi(b)||^2, 1e-6)) row by row: (N,), or (heads, N) for head=None."""
        return phi_distance(self.embed(a, head), self.embed(b, head))

    def value(self, s, g, head: int | None = 0) -> torch.Tensor:
        """V(s, g) = -distance(s, g): (N,), or (heads, N) for head=None."""
        return -self.distance(s, g, head)

    # -- save / load ------------------------------------------------------------------------------------------
    def to_state(self) -> dict:
        """Everything needed to rebuild this TDR: config, observation size, online and target weights, and the
        input normaliser."""
        self._require_fit()

        def cpu(sd):
            return {k: v.detach().cpu().clone() for k, v in sd.items()}

        return {"config": asdict(self.cfg), "obs_dim": self.obs_dim, "online": cpu(self.net.state_dict()),
                "target": cpu(self.target.state_dict()),
                "input_norm": None if self.input_norm is None else self.input_norm.to_state()}

    @classmethod
    def from_state(cls, state: dict, device: str | torch.device = "cpu") -> TDR:
        known = {f.name for f in fields(TDRConfig)}
        unknown = set(state["config"]) - known
        if unknown:
            raise ValueError(f"TDR.from_state: unknown config keys {sorted(unknown)}")
        model = cls(TDRConfig(**state["config"]))
        model._build(state["obs_dim"], None)
        model.net.load_state_dict(state["online"])
        model.target.load_state_dict(state["target"])
        model.net.to(device).eval()
        model.target.to(device)
        norm = state["input_norm"]
        model.input_norm = None if norm is None else ZScore.from_state(norm)
        return model
