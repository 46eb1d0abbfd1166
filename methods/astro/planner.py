"""ASTRO's stitch planner: a diffusion model with a transformer backbone (`blocks.backbones.SequenceDiT`) that
generates the ACTION sequence from a source state to a target state, conditioned on the masked stitching sequence,
and corrected during denoising by Rollout Deviation Feedback from a learned dynamics model
(methods/astro/dynamics.py).

ASTRO's paper (arXiv 2511.23442) names these pieces but publishes no code or equations (see
shared/reference/astro-facts.md); everything below is chosen here, each choice a `PlannerConfig` option:

- Data.  A training example is a real segment: a start row t, a length k drawn uniformly in [min_length,
  min(horizon, steps left in the episode)], the actions a_t .. a_t+k-1 and the states s_t .. s_t+k (s_t+j+1 =
  next_observations[t + j]).  Actions are min-max scaled to [-1, 1] per dimension (the action box of the data,
  so the x0 clamp at 1 keeps actions inside it), states z-scored (`blocks.normalize`).
- Model.  DDPM (`blocks.diffusion`: cosine schedule, epsilon prediction, x0 clamped to [-1, 1], ancestral
  sampler) over (B, horizon, act_dim) action sequences.  Positions j >= k (after the stitch) are known zeros
  (inpainted, no loss), so one model plans every length up to `horizon`.  Global condition: [z(s_0), k /
  horizon].  The masked stitching sequence is the per-position condition (`seq_cond`), aligned with action j:
  the state it leads to, z(s_j+1), where known, else 0; a known flag; a valid flag (j < k).  The target (j = k -
  1) is always known; each middle state is hidden with probability `mask_ratio` during training (ASTRO's M / l,
  best at 1 = every middle state hidden, the default); at stitch time only the two ends are known.
- Rollout Deviation Feedback (`feedback`, sampling; the planner is trained for it when `feedback_train` > 0).
  At a denoising step, the current estimate of the clean actions x0_hat (from the step's epsilon) is executed by
  the dynamics model from s_0, giving the reached states s^_1 .. s^_k.  The feedback is three per-position
  channels of state size plus a flag: the reached state z(s^_j+1); the deviation z(s_j+1) - z(s^_j+1) where
  s_j+1 is known (the target, and the revealed middle states in training); the terminal deviation z(s_k) -
  z(s^_k) broadcast to every valid position (so every token sees how far the plan ends from the target); and a
  flag that feedback is present.  Modes:
  * "condition" (default): the feedback of step i is the condition of step i - 1 (the first step has none, flag
    0).  Trained as self-conditioning (Chen et al. 2022): with probability `feedback_train` a training batch
    first denoises its x_t without feedback (no gradient), executes that x0_hat through the FROZEN dynamics model,
    and is then trained with that feedback as its condition (ASTRO's order: TDR, dynamics, then the planner with
    the dynamics frozen).
  * "guidance": a gradient step on x0_hat against the endpoint and known-state deviation, through a
    differentiable rollout (`rollout_grad`: either dynamics model), x0 <- x0 - `guidance_scale` * grad of the
    summed squared z-deviation (over the plan's known positions and state dimensions; a sum over the plans of
    the batch, so each plan gets its own gradient), turned back into epsilon; the planner's condition carries no
    feedback.
  * "both": guidance and condition.  "off": neither (the ablation; the same fitted planner).
  `feedback_every` > 1 refreshes the feedback only every that many steps (the last value is reused between).
- The stitch is the final action plan executed by the dynamics model (`Plan.states`), so states and actions
  agree by construction (in the model); `reach` is the endpoint error max_d |s^_k,d - s_k,d| / sigma_d, sigma
  the per-dimension std of the one-step state change over the data (the DVR's scale: "in typical steps").

Randomness: only the torch.Generators passed in.  Everything is batched: one network call per denoising step
for the whole batch, the dynamics called on the whole batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from blocks.backbones import SequenceDiT
from blocks.diffusion import DDPMConfig, DDPMSchedule, ddpm_loss, ddpm_sample
from blocks.normalize import MinMax, ZScore

FEEDBACK = ("condition", "guidance", "both", "off")


@dataclass
class PlannerConfig:
    horizon: int = 40  # longest stitch (actions)
    min_length: int = 1  # shortest training segment
    width: int = 256
    depth: int = 4
    heads: int = 4
    diffusion_steps: int = 20
    train_steps: int = 100_000
    batch_size: int = 256
    lr: float = 3e-4
    mask_ratio: float = 1.0  # share of middle states hidden in training (ASTRO's M / l)
    feedback_train: float = 0.5  # share of training batches conditioned on their own rollout feedback
    noise_scale: float = 1.0  # DDPM sampling noise
    feedback: str = "condition"  # sampling: "condition", "guidance", "both" or "off"
    feedback_every: int = 1
    guidance_scale: float = 1.0
    log_every: int = 500

    def validate(self) -> PlannerConfig:
        def bad(name, rule):
            raise ValueError(f"PlannerConfig.{name} = {getattr(self, name)!r}: must be {rule}")

        for name, low in (("horizon", 1), ("min_length", 1), ("width", 2), ("depth", 1), ("heads", 1),
                          ("diffusion_steps", 1), ("train_steps", 0), ("batch_size", 1), ("feedback_every", 1),
                          ("log_every", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                bad(name, f"an integer >= {low}")
        if self.min_length > self.horizon:
            bad("min_length", f"<= horizon ({self.horizon})")
        for name, lo, hi in (("mask_ratio", 0, 1), ("feedback_train", 0, 1), ("noise_scale", 0, math.inf),
                             ("guidance_scale", 0, math.inf), ("lr", 0, math.inf)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
                bad(name, f"a finite number in [{lo}, {hi}]")
        if self.feedback not in FEEDBACK:
            bad("feedback", f"one of {', '.join(FEEDBACK)}")
        return self


@dataclass
class Plan:
    actions: torch.Tensor  # (B, horizon, a) raw; valid for j < k
    states: torch.Tensor  # (B, horizon, d) raw: s^_1 .. s^_horizon reached by the dynamics model
    reach: torch.Tensor  # (B,) endpoint error in typical steps
    history: list = field(default_factory=list)  # mean reach error after each feedback rollout while denoising


class ActionPlanner:
    """Fit on a canonical Dataset with a frozen dynamics model; `plan(s0, target, k, dynamics, generator)`."""

    def __init__(self, cfg: PlannerConfig, obs_dim: int, act_dim: int):
        self.cfg = cfg.validate()
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.net: SequenceDiT | None = None

    # -- pieces -------------------------------------------------------------------------------------------------
    @property
    def seq_cond_dim(self) -> int:
        return 4 * self.obs_dim + 3  # known next state, known flag, valid flag, 3 feedback channels, its flag

    def _build(self, generator) -> None:
        c = self.cfg
        self.net = SequenceDiT(self.act_dim, c.horizon, width=c.width, depth=c.depth, heads=c.heads,
                               cond_dim=self.obs_dim + 1, seq_cond_dim=self.seq_cond_dim, generator=generator)
        self.schedule = DDPMSchedule(DDPMConfig(steps=c.diffusion_steps))

    def _fit_normalisers(self, dataset) -> None:
        obs = np.asarray(dataset.observations, np.float32)
        self.s_norm = ZScore.fit(obs)
        self.a_norm = MinMax.fit(np.asarray(dataset.actions, np.float32))
        change = np.asarray(dataset.next_observations, np.float64) - obs
        self.step_scale = np.maximum(change.std(0), 1e-6).astype(np.float32)

    def _z(self, s: torch.Tensor) -> torch.Tensor:
        return self.s_norm.transform(s)

    def reach_error(self, reached: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        scale = torch.as_tensor(self.step_scale, device=reached.device)
        return ((reached - target).abs() / scale).amax(-1)

    def _conditions(self, s0, k, known_next, known):
        """Global condition (B, d + 1) and the masked stitching sequence (B, H, d + 2) without feedback."""
        H = self.cfg.horizon
        pos = torch.arange(H, device=s0.device)
        valid = (pos < k[:, None]).float()[..., None]
        known = known.float()[..., None]
        cond = torch.cat([self._z(s0), (k.float() / H)[:, None]], 1)
        seq = torch.cat([self._z(known_next) * known, known, valid], -1)
        return cond, seq, valid, known

    def _feedback(self, x0, s0, target_seq, known, valid, k, dynamics, generator, grad: bool = False):
        """Execute the clean-action estimate x0 (B, H, a) through the dynamics model: the feedback channels
        (B, H, 3d + 1), the reached states (B, H, d) and the endpoint error."""
        actions = self.a_norm.inverse(x0)
        reached = dynamics.rollout_grad(s0, actions, generator) if grad else dynamics.rollout(s0, actions, generator)
        z_reached, z_target = self._z(reached), self._z(target_seq)
        rows = torch.arange(len(k), device=k.device)
        end_dev = (z_target[rows, k - 1] - z_reached[rows, k - 1])[:, None]  # (B, 1, d)
        fb = torch.cat([z_reached * valid, (z_target - z_reached) * known, end_dev * valid,
                        torch.ones_like(valid)], -1)
        return fb, reached

    # -- training ---------------------------------------------------------------------------------------------
    def fit(self, dataset, dynamics, generator: torch.Generator, device="cpu",
            progress: Callable[[int, int], None] | None = None, state: dict | None = None,
            checkpoint: Callable[[dict], None] | None = None, checkpoint_every: int = 5000) -> dict:
        """Train for cfg.train_steps steps (resuming from `state`, a dict given to `checkpoint` earlier)."""
        c, H = self.cfg, self.cfg.horizon
        self._fit_normalisers(dataset)
        self._build(generator)
        self.net.to(device)
        self.schedule.to(device)
        opt = torch.optim.Adam(self.net.parameters(), lr=c.lr)
        start = 0
        if state is not None:
            self.net.load_state_dict(state["net"])
            opt.load_state_dict(state["opt"])
            generator.set_state(state["generator"])
            start = state["step"]
        obs = torch.tensor(np.asarray(dataset.observations, np.float32), device=device)
        nxt = torch.tensor(np.asarray(dataset.next_observations, np.float32), device=device)
        act = self.a_norm.transform(torch.tensor(np.asarray(dataset.actions, np.float32), device=device))
        offsets = np.asarray(dataset.episode_offsets, np.int64)
        lengths = np.diff(offsets)
        left = np.repeat(offsets[1:], lengths) - np.arange(len(obs))  # steps left from each row, itself included
        rows_ok = np.flatnonzero(left >= c.min_length)
        if len(rows_ok) == 0:
            raise ValueError(f"ActionPlanner.fit: no episode has {c.min_length} steps")
        rows_ok_t = torch.as_tensor(rows_ok, device=device)
        left_t = torch.as_tensor(left, device=device)
        pos = torch.arange(H, device=device)
        dcfg = DDPMConfig(steps=c.diffusion_steps)
        self.net.train()
        loss = torch.zeros(())
        for step in range(start, c.train_steps):
            B = c.batch_size
            t0 = rows_ok_t[torch.randint(len(rows_ok), (B,), generator=generator, device=device)]
            span = left_t[t0].clamp(max=H)
            u = torch.rand(B, generator=generator, device=device)
            k = c.min_length + (u * (span - c.min_length + 1)).long().clamp(max=span - c.min_length)
            idx = (t0[:, None] + pos).clamp(max=len(obs) - 1)
            valid = pos < k[:, None]
            x0 = torch.where(valid[..., None], act[idx], 0.0)
            next_states = nxt[idx]
            hide = torch.rand((B, H), generator=generator, device=device) < c.mask_ratio
            known = valid & ((pos == (k - 1)[:, None]) | ~hide)
            s0 = obs[t0]
            cond, seq, valid_f, known_f = self._conditions(s0, k, next_states, known)
            use_fb = c.feedback_train > 0 and float(torch.rand((), generator=generator, device=device)) < c.feedback_train

            def net(x_t, t, _cond, _keep):
                fb = torch.zeros((B, H, 3 * self.obs_dim + 1), device=x_t.device)
                if use_fb:
                    with torch.no_grad():
                        eps = self.net(x_t, t, cond, None, torch.cat([seq, fb], -1))
                        x0_hat = self.schedule.predict_start_from_noise(x_t, t, eps).clamp(-1, 1)
                        x0_hat = torch.where(valid[..., None], x0_hat, 0.0)
                        fb, _ = self._feedback(x0_hat, s0, next_states, known_f, valid_f, k, dynamics, generator)
                return self.net(x_t, t, cond, None, torch.cat([seq, fb], -1))

            loss = ddpm_loss(net, x0, (~valid)[..., None], self.schedule, dcfg, generator, reduction="unknown")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done = step + 1
            if checkpoint is not None and (done % checkpoint_every == 0 or done == c.train_steps):
                checkpoint({"net": self.net.state_dict(), "opt": opt.state_dict(), "generator": generator.get_state(),
                            "step": done})
            if progress is not None and (done % c.log_every == 0 or done == c.train_steps):
                progress(done, c.train_steps)
        self.net.eval()
        return {"steps": c.train_steps, "loss": float(loss.detach())}

    # -- planning ---------------------------------------------------------------------------------------------
    def plan(self, s0, target, k, dynamics, generator: torch.Generator, feedback: str | None = None) -> Plan:
        """Action plans from s0 (B, d) to target (B, d) in k (B,) steps (1 <= k <= horizon), raw units."""
        c, H = self.cfg, self.cfg.horizon
        mode = c.feedback if feedback is None else feedback
        if mode not in FEEDBACK:
            raise ValueError(f"ActionPlanner.plan: feedback must be one of {', '.join(FEEDBACK)}, got {mode!r}")
        if self.net is None:
            raise RuntimeError("ActionPlanner: call fit() (or from_state()) first")
        B, dev = s0.shape[0], s0.device
        k = torch.as_tensor(k, device=dev).long()
        if bool(((k < 1) | (k > H)).any()):
            raise ValueError(f"ActionPlanner.plan: stitch lengths must lie in [1, {H}]")
        pos = torch.arange(H, device=dev)
        valid = pos < k[:, None]
        known = pos == (k - 1)[:, None]
        target_seq = target[:, None].expand(B, H, self.obs_dim)
        cond, seq, valid_f, known_f = self._conditions(s0, k, target_seq, known)
        condition, guide = mode in ("condition", "both"), mode in ("guidance", "both")
        fb = torch.zeros((B, H, 3 * self.obs_dim + 1), device=dev)
        history, calls = [], [0]

        def net(x_t, t, _cond, _keep):
            nonlocal fb
            eps = self.net(x_t, t, cond, None, torch.cat([seq, fb], -1))
            refresh = calls[0] % c.feedback_every == 0
            calls[0] += 1
            if not (condition or guide) or not refresh:
                return eps
            x0 = self.schedule.predict_start_from_noise(x_t, t, eps).clamp(-1, 1)
            x0 = torch.where(valid[..., None], x0, 0.0)
            if guide:
                with torch.enable_grad():
                    x0g = x0.detach().requires_grad_(True)
                    _, reached = self._feedback(x0g, s0, target_seq, known_f, valid_f, k, dynamics, generator,
                                                grad=True)
                    dev_z = (self._z(target_seq) - self._z(reached)) * known_f
                    obj = (dev_z ** 2).sum()  # per-plan objectives: each plan's own gradient
                    (grad,) = torch.autograd.grad(obj, x0g)
                x0 = (x0 - c.guidance_scale * grad).clamp(-1, 1)
                x0 = torch.where(valid[..., None], x0, 0.0)
                eps = ((self.schedule._at(self.schedule.sqrt_recip_alphas_cumprod, t, x_t) * x_t - x0)
                       / self.schedule._at(self.schedule.sqrt_recipm1_alphas_cumprod, t, x_t))
            if condition or guide:
                new_fb, reached = self._feedback(x0, s0, target_seq, known_f, valid_f, k, dynamics, generator)
                history.append(float(self.reach_error(reached[torch.arange(B, device=dev), k - 1], target).mean()))
                if condition:
                    fb = new_fb
            return eps

        dcfg = DDPMConfig(steps=c.diffusion_steps, noise_scale=c.noise_scale, clip_denoised=1.0)
        zeros = torch.zeros((B, H, self.act_dim), device=dev)
        x = ddpm_sample(net, (B, H, self.act_dim), self.schedule, dcfg, generator,
                        known_mask=(~valid)[..., None], known_values=zeros)
        actions = self.a_norm.inverse(x.clamp(-1, 1))
        with torch.no_grad():
            states = dynamics.rollout(s0, actions, generator)
        reach = self.reach_error(states[torch.arange(B, device=dev), k - 1], target)
        return Plan(actions=actions, states=states, reach=reach, history=history)

    # -- save / load ------------------------------------------------------------------------------------------
    def to_state(self) -> dict:
        return {"config": self.cfg.__dict__.copy(), "obs_dim": self.obs_dim, "act_dim": self.act_dim,
                "net": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
                "s_norm": self.s_norm.to_state(), "a_norm": self.a_norm.to_state(), "step_scale": self.step_scale}

    @classmethod
    def from_state(cls, state: dict, device="cpu", **sampling) -> ActionPlanner:
        """Rebuild; `sampling` overrides sampling-only fields (feedback, feedback_every, guidance_scale,
        noise_scale)."""
        cfg = PlannerConfig(**{**state["config"], **sampling})
        p = cls(cfg, state["obs_dim"], state["act_dim"])
        p._build(torch.Generator().manual_seed(0))
        p.net.load_state_dict(state["net"])
        p.net.to(device).eval()
        p.schedule.to(device)
        p.s_norm, p.a_norm = ZScore.from_state(state["s_norm"]), MinMax.from_state(state["a_norm"])
        p.step_scale = state["step_scale"]
        return p
