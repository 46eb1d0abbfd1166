"""ASTRO's dynamics model: a learned forward model that rolls an action sequence a_0..a_{L'-1} out from a state s_0
and returns the states s_1..s_L' it reaches.

ASTRO's paper says a diffusion transformer and publishes no code (see shared/reference/astro-facts.md); every
detail below is chosen here, with its reason.

kind "dit" (ASTRO's diffusion transformer, `blocks.backbones.SequenceDiT` trained with `blocks.diffusion`'s DDPM):

- What is diffused: the displacement sequence x_j = (s_j - s_0) / scale_j, j = 1..L (L = `horizon`), channels last
  (B, L, d).  Displacements rather than states, because s_0 is known and a state's spread over the data set is far
  larger than its change over L steps (a point-maze step moves ~0.2 in a maze ~20 wide): predicting s_j itself
  would spend the model's precision on the part that is given.  scale_j (a (L, d) table) is the std over the
  training windows of s_{t+j} - s_t (ddof 0, floored at 1e-6 like `bench.dvr.delta_scale`), so the targets are
  O(1) at every position although the displacement grows with j; a position no window reaches (all episodes
  shorter than j) copies the table row of the last position that has one.
- Conditioning: the DiT's global `cond` is the z-scored s_0 (`blocks.normalize.ZScore` on the observations,
  cond_dim = d), always kept: there is no classifier-free guidance (the state is not optional information, and
  guidance would double the cost of every step); `seq_cond` at position j is [z-scored a_{j-1}, valid flag]
  (seq_cond_dim = a + 1): the action that leads to s_j sits on s_j's token.
- Training windows: a start row t uniform over all rows, a valid length l uniform in [1, min(L, steps left in
  t's episode)], so that every allowed length of a start is equally likely and windows never cross an episode
  boundary; s_{t+j} = next_observations[t+j-1] (one formula for every j, the last state of an episode included).
  Episodes shorter than L + 1 steps are not skipped: their windows are simply shorter.  Positions beyond l get
  zero actions, flag 0 and x = 0, and are marked known in `ddpm_loss` (inpainted with zeros), so the loss
  (`reduction="unknown"`) is on the valid positions only.  One model serves every L' <= L.
- Rollout: `ddpm_sample` over the full (B, L, d) window, positions beyond L' known zeros with flag 0 exactly as in
  training, then the first L' positions are un-scaled and s_0 is added.  Padding to L (rather than sampling a
  (B, L', d) sequence) keeps the attention context the network was trained on: the DiT attends over all positions,
  and it never saw a short sequence without padding.  It costs L tokens per rollout whatever L'.
- DDPM: `DDPMConfig(steps=diffusion_steps, clip_denoised=clip_denoised)`: epsilon prediction, Decision Diffuser's
  cosine schedule.  `clip_denoised` = 10 (in scaled units, i.e. 10 per-position stds; None turns it off): the
  scaled displacements are not bounded to [-1, 1], so DiffStitch's clip would cut real motion, but no clip at all
  lets rare samples explode: at the first sampling steps abar ~ 0 and x0_hat = x / sqrt(abar) - sqrt(1 / abar - 1)
  eps multiplies any error of eps by 1 / sqrt(abar).  Measured on tests/test_astro_dynamics.py's linear system
  (400 training steps, 256 rollouts of 5 steps): unclipped, a median error of 0.034 but a mean of 0.28 and a worst
  row of 6.9 (20 diffusion steps: mean 1.9, worst 29.8) against a typical displacement of 0.22; clipped at 10, mean
  0.021, worst 0.36 (20 steps: 0.024 and 0.08).  Over the toy maze's 40-step windows no scaled displacement
  exceeds 2.9, so the clip at 10 does not bind on real motion.
- `sample_noise` (DDPM noise_scale at rollout) = 1.0: the ancestral sampler the model is trained for, which draws
  from the learned conditional law of the future states; DiffStitch's 0.5 is a low-temperature trick for
  trajectory generation that makes samples sharper but biased towards the mode, which a model meant to reproduce
  the dynamics (stochastic ones included) should not do by default.  0 gives the sampler's deterministic path.
- Optimiser: AdamW with zero weight decay (= Adam), lr 3e-4, batch 256, as DiT trains (no weight decay); no EMA of
  the weights and no gradient clipping, to keep the recipe small (add them if long runs prove noisy).
- `rollout_grad` (for gradient-guided feedback) runs the same sampler with autograd on: given the generator, the
  noise of every denoising step is fixed, so the rollout is the reparameterised sample, a deterministic and
  differentiable function of the actions (and s_0) through every denoising step; where the x0 clip binds it
  passes no gradient.  This is the gradient of one draw of the model's law of the future states (with
  `sample_noise` 0: of the sampler's deterministic path), not of a mean: a choice made here, since a sample is
  what ASTRO's feedback compares with the plan.  It costs the sampler's forward and backward passes, all steps'
  activations kept (`chunk` rows at a time).

kind "ensemble" (the repo's autoregressive Gaussian ensemble, `blocks.dynamics.GaussianEnsemble`, TATU's recipe):
`EnsembleConfig(members, elites, hidden=(ensemble_width,) * ensemble_layers, max_epochs=ensemble_epochs)` fitted
on the data set's transitions (rewards included: the ensemble predicts them too; they are not used here).  Rollout
is autoregressive with the elites' average mean prediction, s_{k+1} = s_k + mean_e delta_e(s_k, a_k): deterministic
(no member sampling: the generator is accepted for a uniform API and not drawn from), and the same code with
gradients is `rollout_grad`, differentiable w.r.t. the actions (and s_0).

Both kinds: all randomness comes from the torch.Generator passed in (never the global RNG): `fit` first draws one
seed for the weights' initialisation (a CPU generator seeded from it builds the DiT, whose init runs in a private
stream), and, when the generator is not on the training device, one seed for a generator on that device, from
which every later draw (windows, lengths, DDPM t and noise) comes; `rollout` derives a device generator the same
way when needed.  `fit` re-initialises everything, so a fit depends only on data, config and generator.  Inputs
are raw (un-normalised) states and actions; outputs are raw states on the model's device.  Rollouts are batched
(`chunk` rows at a time); the only Python loops are over training steps, diffusion steps and rollout steps.

`rollout_error` compares a model's rollouts with the TRUE simulator (`bench.dvr.simulator_for`) from data states
under the data's own actions (see its docstring).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import torch

from blocks.backbones import SequenceDiT
from blocks.diffusion import DDPMConfig, DDPMSchedule, ddpm_loss, ddpm_sample
from blocks.dynamics import EnsembleConfig, GaussianEnsemble
from blocks.nn import float_tensor
from blocks.normalize import ZScore

KINDS = ("dit", "ensemble")


@dataclass
class DynamicsConfig:
    kind: str = "dit"  # "dit" (ASTRO's diffusion transformer) or "ensemble" (GaussianEnsemble, autoregressive)
    horizon: int = 40  # longest rollout L (steps)
    width: int = 256  # DiT
    depth: int = 4
    heads: int = 4
    diffusion_steps: int = 20
    train_steps: int = 100_000  # 0: normalisers and scale table only (an untrained network)
    batch_size: int = 256
    lr: float = 3e-4
    sample_noise: float = 1.0  # DDPM noise_scale at rollout time (module docstring)
    clip_denoised: float | None = 10.0  # clip of the DDPM's x0 estimate, in scaled units; None: none
    members: int = 7  # kind "ensemble"
    elites: int = 5
    ensemble_width: int = 200
    ensemble_layers: int = 4
    ensemble_epochs: int = 200
    log_every: int = 500  # training steps between `progress` calls
    chunk: int = 4096  # rollout rows per batch

    def validate(self) -> DynamicsConfig:
        def bad(name: str, rule: str):
            raise ValueError(f"DynamicsConfig.{name} = {getattr(self, name)!r}: must be {rule}")

        def integer(name: str, low: int, high: float = math.inf):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
                bad(name, f"an integer in [{low}, {high}]")

        def number(name: str, low: float, low_open: bool):
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            if not (ok and (v > low if low_open else v >= low)):
                bad(name, f"a finite number {'>' if low_open else '>='} {low}")

        if self.kind not in KINDS:
            bad("kind", f"one of {KINDS}")
        integer("horizon", 1)
        integer("width", 2)
        integer("depth", 1)
        integer("heads", 1)
        if self.width % 2 or self.width % self.heads:
            bad("width", f"even and divisible by heads = {self.heads}")
        integer("diffusion_steps", 1)
        integer("train_steps", 0)
        integer("batch_size", 1)
        number("lr", 0, True)
        number("sample_noise", 0, False)
        if self.clip_denoised is not None:
            number("clip_denoised", 0, True)
        integer("members", 1)
        integer("elites", 1, self.members)
        integer("ensemble_width", 1)
        integer("ensemble_layers", 1)
        integer("ensemble_epochs", 1)
        integer("log_every", 1)
        integer("chunk", 1)
        return self

    def ddpm(self) -> DDPMConfig:
        return DDPMConfig(steps=self.diffusion_steps, clip_denoised=self.clip_denoised,
                          noise_scale=self.sample_noise)

    def ensemble(self) -> EnsembleConfig:
        return EnsembleConfig(members=self.members, elites=self.elites,
                              hidden=(self.ensemble_width,) * self.ensemble_layers, max_epochs=self.ensemble_epochs)


# -- helpers ---------------------------------------------------------------------------------------------------
def steps_left(episode_offsets) -> np.ndarray:
    """For every row t, the number of rows from t to its episode's last row, inclusive (>= 1)."""
    off = np.asarray(episode_offsets, dtype=np.int64)
    last = np.repeat(off[1:] - 1, np.diff(off))
    return last - np.arange(len(last)) + 1


def displacement_scale(obs: np.ndarray, next_obs: np.ndarray, left: np.ndarray, horizon: int) -> np.ndarray:
    """(horizon, d): row j - 1 is the std (ddof 0) over rows t with >= j steps left of s_{t+j} - s_t, with
    s_{t+j} = next_obs[t + j - 1]; floored at 1e-6; a j no row reaches copies the row before it."""
    obs, next_obs = np.asarray(obs, np.float64), np.asarray(next_obs, np.float64)
    table = np.empty((horizon, obs.shape[1]))
    for j in range(1, horizon + 1):
        rows = np.flatnonzero(left >= j)
        if len(rows):
            table[j - 1] = np.maximum((next_obs[rows + j - 1] - obs[rows]).std(0), 1e-6)
        else:
            table[j - 1] = table[j - 2]  # j = 1 always has rows: every episode has a step
    return table


def _seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2 ** 62, (1,), generator=generator, device=generator.device).item())


def _on(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """`generator` itself if it lives on `device`, else a generator there seeded from one draw of it."""
    g = generator.device
    if g.type == device.type and (device.index is None or g.index in (None, device.index)):
        return generator
    return torch.Generator(device).manual_seed(_seed(generator))


class DynamicsModel:
    """ASTRO's forward model: `fit` on a canonical Dataset, then `rollout(s0, actions, generator)`."""

    def __init__(self, cfg: DynamicsConfig, obs_dim: int, act_dim: int):
        self.cfg = replace(cfg).validate()  # a copy: the caller's config stays its own
        if obs_dim < 1 or act_dim < 1:
            raise ValueError(f"DynamicsModel: obs_dim and act_dim must be >= 1, got {obs_dim}, {act_dim}")
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.device = torch.device("cpu")
        self.net: SequenceDiT | None = None
        self.ensemble: GaussianEnsemble | None = None
        self.obs_norm: ZScore | None = None
        self.act_norm: ZScore | None = None
        self.scale: torch.Tensor | None = None  # (horizon, d) displacement scale, kind "dit"
        self.schedule = DDPMSchedule(self.cfg.ddpm())

    # -- building ---------------------------------------------------------------------------------------------
    def _build(self, generator: torch.Generator | None) -> None:
        cfg = self.cfg
        init = torch.Generator().manual_seed(0 if generator is None else _seed(generator))
        if cfg.kind == "dit":
            self.net = SequenceDiT(self.obs_dim, cfg.horizon, cfg.width, cfg.depth, cfg.heads,
                                   cond_dim=self.obs_dim, seq_cond_dim=self.act_dim + 1, generator=init)
        else:
            self.ensemble = GaussianEnsemble(self.obs_dim, self.act_dim, cfg.ensemble())

    def _to(self, device) -> None:
        self.device = torch.device(device)
        if self.net is not None:
            self.net.to(self.device).eval()
        if self.ensemble is not None:
            self.ensemble.to(self.device).eval()
        if self.scale is not None:
            self.scale = self.scale.to(self.device)
        self.schedule.to(self.device)

    def _require_fit(self) -> None:
        if self.net is None and (self.ensemble is None or not self.ensemble.elites):
            raise RuntimeError("DynamicsModel: call fit() (or from_state()) first")

    # -- training ---------------------------------------------------------------------------------------------
    def fit(self, dataset, generator: torch.Generator, device="cpu",
            progress: Callable[[int, int], None] | None = None) -> dict:
        """Train from scratch on `dataset` (a canonical bench.dataset.Dataset).  `progress(done, total)` is called
        every cfg.log_every steps and at the end (kind "ensemble": after every epoch, total = ensemble_epochs).
        Returns {"kind", "steps" (or "epochs"), "loss", "seconds", ...}."""
        cfg, start = self.cfg, time.time()
        n = len(dataset)
        obs = np.asarray(dataset.observations, np.float32).reshape(n, -1)
        nxt = np.asarray(dataset.next_observations, np.float32).reshape(n, -1)
        act = np.asarray(dataset.actions, np.float32).reshape(n, -1)
        if obs.shape[1] != self.obs_dim or act.shape[1] != self.act_dim:
            raise ValueError(f"DynamicsModel.fit: the data have {obs.shape[1]} state and {act.shape[1]} action "
                             f"values, the model {self.obs_dim} and {self.act_dim}")
        if n < 2:
            raise ValueError("DynamicsModel.fit: need at least 2 rows")
        self.net, self.ensemble = None, None
        self._build(generator)
        if cfg.kind == "ensemble":
            self._to(device)

            def log(info):
                if progress is not None:
                    progress(info["epoch"], cfg.ensemble_epochs)

            info = self.ensemble.fit(obs, act, nxt, np.asarray(dataset.rewards, np.float32), generator=generator,
                                     device=self.device, log=log)
            self.ensemble.eval()
            return {"kind": "ensemble", **info, "seconds": time.time() - start}

        left_np = steps_left(dataset.episode_offsets)
        if len(left_np) != n:
            raise ValueError(f"DynamicsModel.fit: episode_offsets cover {len(left_np)} rows, the dataset has {n}")
        self.obs_norm, self.act_norm = ZScore.fit(obs), ZScore.fit(act)
        self.scale = torch.as_tensor(displacement_scale(obs, nxt, left_np, cfg.horizon), dtype=torch.float32)
        self._to(device)
        dev, L = self.device, cfg.horizon
        gen = _on(generator, dev)
        obs_t, nxt_t = float_tensor(obs, dev), float_tensor(nxt, dev)
        obs_z, act_z = self.obs_norm.transform(obs_t), self.act_norm.transform(float_tensor(act, dev))
        max_len = torch.as_tensor(np.minimum(left_np, L), device=dev)
        offsets = torch.arange(L, device=dev)
        ddpm = cfg.ddpm()
        optim = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=0.0)
        self.net.train()
        losses, window, info = [], torch.zeros((), device=dev), {"step": 0, "loss": float("nan")}
        for step in range(1, cfg.train_steps + 1):
            t = torch.randint(n, (cfg.batch_size,), generator=gen, device=dev)
            length = (torch.rand(cfg.batch_size, generator=gen, device=dev) * max_len[t]).long() + 1
            valid = offsets[None, :] < length[:, None]  # (B, L)
            rows = torch.where(valid, t[:, None] + offsets[None, :], t[:, None])  # padded rows: any in-range row
            x0 = (nxt_t[rows] - obs_t[t][:, None, :]) / self.scale * valid[..., None]
            seq = torch.cat([act_z[rows] * valid[..., None], valid[..., None].float()], dim=-1)
            cond = obs_z[t]
            loss = ddpm_loss(self._denoiser(cond, seq), x0, ~valid[..., None], self.schedule, ddpm, gen)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            window = window + loss.detach()
            if step % cfg.log_every == 0 or step == cfg.train_steps:
                count = step - info["step"]
                info = {"step": step, "loss": float(window) / count}
                losses.append(info["loss"])
                window = torch.zeros((), device=dev)
                if progress is not None:
                    progress(step, cfg.train_steps)
        self.net.eval()
        return {"kind": "dit", "steps": cfg.train_steps, "loss": info["loss"], "losses": losses,
                "seconds": time.time() - start}

    def _denoiser(self, cond: torch.Tensor, seq: torch.Tensor) -> Callable:
        """The eps predictor in `ddpm_loss` / `ddpm_sample`'s contract net(x, t, cond, keep), always conditioned on
        the z-scored s_0 `cond` and the per-position `seq` (both are called with cond=None: no guidance)."""
        return lambda x, t, _cond, _keep: self.net(x, t, cond, None, seq)

    # -- rollouts ---------------------------------------------------------------------------------------------
    def _inputs(self, s0, actions) -> tuple[torch.Tensor, torch.Tensor]:
        s0, actions = float_tensor(s0, self.device), float_tensor(actions, self.device)
        if s0.dim() != 2 or s0.shape[1] != self.obs_dim:
            raise ValueError(f"DynamicsModel: s0 must be (B, {self.obs_dim}), got {tuple(s0.shape)}")
        if actions.dim() != 3 or actions.shape[0] != s0.shape[0] or actions.shape[2] != self.act_dim:
            raise ValueError(f"DynamicsModel: actions must be ({s0.shape[0]}, L', {self.act_dim}), "
                             f"got {tuple(actions.shape)}")
        if not 1 <= actions.shape[1] <= self.cfg.horizon:
            raise ValueError(f"DynamicsModel: rollouts of 1 to horizon = {self.cfg.horizon} steps, "
                             f"got {actions.shape[1]} actions")
        return s0, actions

    @torch.no_grad()
    def rollout(self, s0, actions, generator: torch.Generator) -> torch.Tensor:
        """s0 (B, d) raw states, actions (B, L', a) raw with 1 <= L' <= horizon: the (B, L', d) raw states
        s_1..s_L' reached, on the model's device; no gradient."""
        self._require_fit()
        s0, actions = self._inputs(s0, actions)
        if self.cfg.kind == "ensemble":
            return torch.cat([self._ensemble_rollout(s0[i:i + self.cfg.chunk], actions[i:i + self.cfg.chunk])
                              for i in range(0, s0.shape[0], self.cfg.chunk)]) if s0.shape[0] else \
                s0.new_zeros(0, actions.shape[1], self.obs_dim)
        gen = _on(generator, self.device)
        out = [self._dit_rollout(s0[i:i + self.cfg.chunk], actions[i:i + self.cfg.chunk], gen)
               for i in range(0, s0.shape[0], self.cfg.chunk)]
        return torch.cat(out) if out else s0.new_zeros(0, actions.shape[1], self.obs_dim)

    def _dit_rollout(self, s0: torch.Tensor, actions: torch.Tensor, gen: torch.Generator,
                     grad: bool = False) -> torch.Tensor:
        batch, length, L = s0.shape[0], actions.shape[1], self.cfg.horizon
        valid = (torch.arange(L, device=self.device) < length)[None, :, None].expand(batch, L, 1)
        act = torch.zeros(batch, L, self.act_dim, device=self.device)
        act[:, :length] = self.act_norm.transform(actions)
        seq = torch.cat([act, valid.float()], dim=-1)
        cond = self.obs_norm.transform(s0)
        x = ddpm_sample(self._denoiser(cond, seq), (batch, L, self.obs_dim),
                        self.schedule, self.cfg.ddpm(), gen, known_mask=~valid,
                        known_values=torch.zeros((), device=self.device), grad=grad)
        return x[:, :length] * self.scale[:length] + s0[:, None, :]

    def _ensemble_rollout(self, s0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        elites, s, out = self.ensemble.elites, s0, []
        for k in range(actions.shape[1]):
            mean, _ = self.ensemble(s, actions[:, k])  # every member's (E, B, d + 1): delta-state, then reward
            s = s + mean[elites, :, :self.obs_dim].mean(0)
            out.append(s)
        return torch.stack(out, dim=1)

    def rollout_grad(self, s0, actions, generator: torch.Generator | None = None) -> torch.Tensor:
        """`rollout` with gradients w.r.t. `actions` (and s0) for guidance; the inputs must be float32 tensors on
        the model's device for the gradient to reach them.  Kind "dit" draws its sampler's noise from `generator`
        (required there: the same generator state gives the same rollout as `rollout`); the ensemble draws none."""
        self._require_fit()
        s0, actions = self._inputs(s0, actions)
        if self.cfg.kind == "ensemble":
            return self._ensemble_rollout(s0, actions)
        if generator is None:
            raise ValueError("DynamicsModel.rollout_grad: kind 'dit' needs the generator its sampler's noise comes "
                             "from")
        gen = _on(generator, self.device)
        with torch.enable_grad():
            return torch.cat([self._dit_rollout(s0[i:i + self.cfg.chunk], actions[i:i + self.cfg.chunk], gen, True)
                              for i in range(0, s0.shape[0], self.cfg.chunk)])

    # -- save / load ------------------------------------------------------------------------------------------
    def to_state(self) -> dict:
        """Everything needed to rebuild this model: config, shapes, weights, normalisers, the scale table."""
        self._require_fit()
        state = {"config": asdict(self.cfg), "obs_dim": self.obs_dim, "act_dim": self.act_dim}
        if self.cfg.kind == "ensemble":
            return {**state, "ensemble": self.ensemble.to_state()}
        return {**state, "dit": {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()},
                "obs_norm": self.obs_norm.to_state(), "act_norm": self.act_norm.to_state(),
                "scale": self.scale.detach().cpu().clone()}

    @classmethod
    def from_state(cls, state: dict, device="cpu") -> DynamicsModel:
        known = {f.name for f in fields(DynamicsConfig)}
        unknown = set(state["config"]) - known
        if unknown:
            raise ValueError(f"DynamicsModel.from_state: unknown config keys {sorted(unknown)}")
        model = cls(DynamicsConfig(**state["config"]), state["obs_dim"], state["act_dim"])
        if model.cfg.kind == "ensemble":
            model.ensemble = GaussianEnsemble.from_state(state["ensemble"])
        else:
            model._build(None)
            model.net.load_state_dict(state["dit"])
            model.obs_norm = ZScore.from_state(state["obs_norm"])
            model.act_norm = ZScore.from_state(state["act_norm"])
            model.scale = state["scale"].clone()
        model._to(device)
        return model


# -- measurement -----------------------------------------------------------------------------------------------
def rollout_error(model: DynamicsModel, dataset, simulator, horizons=(5, 10, 15), n: int = 256,
                  generator: torch.Generator | None = None) -> dict:
    """Rollout error of `model` against the TRUE simulator (a `bench.dvr.Simulator`, e.g. `simulator_for(dataset)`).

    Start rows t: n drawn without replacement (all of them where fewer qualify) among the rows with at least
    max(horizons) steps left in their episode, by `generator` (a torch.Generator; default seeded 0), which also
    drives the model's rollout.  Actions: the data's own a_t..a_{t+H-1}, H = max(horizons); truth: the simulator
    stepped H times from s_t, all rows in one batch per step; prediction: ONE model rollout of H steps from s_t
    (as ASTRO uses it), read at each horizon.  Rows whose simulated states are not finite are dropped.

    Per horizon h: `model_l2` (mean Euclidean error, raw units), `model_scaled` (mean over rows and dimensions of
    |err_d| / sigma_d, sigma_d = `bench.dvr.delta_scale`: the std of the one-step change s' - s), the same two for
    the do-nothing baseline s_h = s_t (`static_l2`, `static_scaled`) and for the data's own s_{t+h} (`data_l2`,
    `data_scaled`: a sanity figure, ~0 when the simulator reproduces the data).
    """
    from bench.dvr import delta_scale

    horizons = sorted({int(h) for h in horizons})
    if not horizons or horizons[0] < 1:
        raise ValueError(f"rollout_error: horizons must be positive integers, got {horizons}")
    H = horizons[-1]
    if H > model.cfg.horizon:
        raise ValueError(f"rollout_error: horizon {H} exceeds the model's horizon {model.cfg.horizon}")
    size = len(dataset)
    obs = np.asarray(dataset.observations, np.float64).reshape(size, -1)
    nxt = np.asarray(dataset.next_observations, np.float64).reshape(size, -1)
    act = np.asarray(dataset.actions, np.float32).reshape(size, -1)
    eligible = np.flatnonzero(steps_left(dataset.episode_offsets) >= H)
    if not len(eligible):
        raise ValueError(f"rollout_error: no row has {H} steps left in its episode")
    gen = torch.Generator().manual_seed(0) if generator is None else generator
    pick = torch.randperm(len(eligible), generator=gen, device=gen.device)[:n].cpu().numpy()
    rows = eligible[pick]
    idx = rows[:, None] + np.arange(H)[None, :]  # (n, H): the rows of a_t..a_{t+H-1}
    start = time.time()
    truth, s = np.empty((len(rows), H, obs.shape[1])), obs[rows]
    for k in range(H):
        s = np.asarray(simulator.step(s, act[idx[:, k]]).next_obs, np.float64)
        truth[:, k] = s
    sim_seconds = time.time() - start
    start = time.time()
    pred = model.rollout(obs[rows].astype(np.float32), act[idx], gen).cpu().numpy().astype(np.float64)
    model_seconds = time.time() - start
    keep = np.isfinite(truth).all(axis=(1, 2))
    sigma = delta_scale(dataset)
    out = {"rows": int(keep.sum()), "dropped": int((~keep).sum()), "simulator_seconds": sim_seconds,
           "model_seconds": model_seconds, "horizons": {}}
    for h in horizons:
        target = truth[keep, h - 1]
        figures = {}
        for name, est in (("model", pred[keep, h - 1]), ("static", obs[rows[keep]]), ("data", nxt[idx[keep, h - 1]])):
            err = est - target
            figures[f"{name}_l2"] = float(np.linalg.norm(err, axis=1).mean())
            figures[f"{name}_scaled"] = float((np.abs(err) / sigma).mean())
        out["horizons"][h] = figures
    return out
