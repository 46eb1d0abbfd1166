"""DROL (Mu, Zhao, Zhong and Zhang 2026, arXiv 2604.22229): a one-step latent actor trained by top-1 dynamic routing.

Facts from the authors' JAX code (muzhancun/DROL @ 7e669b0, agents/drol.py, utils/networks.py; checked in
../shared/reference/method-facts.md, section 4):

- Actor f(s, z): MLP 4 x 512, GELU, input [s, z], output hard-clipped to [-1, 1] (no tanh), no LayerNorm.
  z is uniform in the solid ball of radius sqrt(action_dim).
- Actor loss, per state: K fresh latents -> K clipped candidates; the dataset action is routed to its nearest
  candidate (squared L2), recomputed every step.  Only that winner is trained:
      bc_coef * |winner - a|^2 / action_dim  -  q_coef * Q(s, winner) / max(mean |Q(s, winner)|, 1e-6)
  with Q = min of the two critics, the scale carrying no gradient, and no gradient into the critics.
- Critics: two 4 x 512 GELU MLPs with LayerNorm after each hidden activation.  TD target
  r + gamma * (1 - terminal) * agg(Q_target(s', a')), a' = f(s', z') with one fresh latent from the *current*
  actor (no target actor); agg = mean (default) or min.  Polyak 0.005 on the target critics.
- One Adam (3e-4) on actor loss + critic loss; batch 256; dataset actions clipped to +-(1 - 1e-5).
- Evaluation: one fresh random latent per step.  `eval_latent: zero` (z = 0) is offered as a labelled option;
  the authors never use it.

Batches come from the same array sampler the d3rlpy trainers use (bench.batches, so the mixing of generated data
is identical; device tensors on CUDA); latents come from the trainer's own torch generators, which its
checkpoints carry.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from algos import TRAINERS
from algos.base import Trainer, TrainerConfig
from bench.errors import BenchError

# name -> (dataset-name pattern it is published for, values).  Source of every value: the authors'
# scripts/production_run_commands.sh and agents/drol.py get_config() (method-facts.md, R8, R9, R11).
# "-tuned" presets are the paper's DROL* reruns, which change only K (and for D4RL AntMaze, bc_coef).
NAVIGATE = dict(gamma=0.995)  # OGBench navigation families (antmaze, antsoccer, humanoidmaze)
PUBLISHED = {
    "ogbench-antmaze-large-navigate": (r"antmaze-large-navigate", dict(bc_coef=0.03, q_agg="min", **NAVIGATE)),
    "ogbench-antmaze-giant-navigate": (r"antmaze-giant-navigate", dict(bc_coef=0.03, q_agg="min", **NAVIGATE)),
    "ogbench-antsoccer": (r"antsoccer-", dict(bc_coef=0.1, **NAVIGATE)),
    "ogbench-humanoidmaze-medium": (r"humanoidmaze-medium-", dict(bc_coef=0.3, **NAVIGATE)),
    "ogbench-humanoidmaze-large": (r"humanoidmaze-large-", dict(bc_coef=0.3, **NAVIGATE)),
    "ogbench-cube-single": (r"cube-single-", dict(bc_coef=10.0)),
    "ogbench-cube-double": (r"cube-double-", dict(bc_coef=3.0)),
    "ogbench-scene": (r"scene-", dict(bc_coef=3.0)),
    "ogbench-puzzle-3x3": (r"puzzle-3x3-", dict(bc_coef=0.3)),
    "ogbench-puzzle-4x4": (r"puzzle-4x4-", dict(bc_coef=10.0)),
    # D4RL AntMaze (rewards shifted by -1 in the authors' d4rl_utils.py) and Adroit (target min).
    "d4rl-antmaze-umaze": (r"antmaze[-/]umaze-v", dict(bc_coef=0.3, reward_offset=-1.0)),
    "d4rl-antmaze": (r"antmaze[-/](umaze-diverse|medium|large)", dict(bc_coef=0.1, reward_offset=-1.0)),
    "d4rl-pen": (r"pen[-/]", dict(bc_coef=1.0, q_agg="min")),
    "d4rl-door": (r"door[-/]", dict(bc_coef=10.0, q_agg="min")),
    "d4rl-hammer": (r"hammer[-/]", dict(bc_coef=3.0, q_agg="min")),
    "d4rl-relocate": (r"relocate[-/]", dict(bc_coef=10.0, q_agg="min")),
}
TUNED = {  # DROL*: K per family; D4RL AntMaze tuned bc_coef too
    "ogbench-antmaze-giant-navigate": dict(num_candidates=1), "ogbench-antsoccer": dict(num_candidates=4),
    "ogbench-humanoidmaze-large": dict(num_candidates=4), "ogbench-cube-double": dict(num_candidates=64),
    "ogbench-scene": dict(num_candidates=64), "ogbench-puzzle-3x3": dict(num_candidates=32),
    "ogbench-puzzle-4x4": dict(num_candidates=64), "d4rl-door": dict(num_candidates=8),
    "d4rl-hammer": dict(num_candidates=8), "d4rl-relocate": dict(num_candidates=32),
}
PRESETS = {
    # No published preset: the authors' get_config() defaults (bc_coef 1, K 16, mean target, gamma 0.99).
    "default": {},
    **{name: values for name, (_, values) in PUBLISHED.items()},
    **{f"{name}-tuned": {**PUBLISHED[name][1], **k} for name, k in TUNED.items()},
    # Not a published setting: a tiny model for CPU smoke tests and the contract tester.
    "cpu-smoke": dict(actor_hidden_units=(32, 32), critic_hidden_units=(32, 32), num_candidates=4, batch_size=32),
}


@dataclass
class DROLTrainerConfig(TrainerConfig):
    ranges = {
        "num_candidates": "[1, 4096]",
        "bc_coef": "[0, inf)",
        "q_coef": "[0, inf)",
        "gamma": "(0, 1]",
        "tau": "(0, 1]",
        "learning_rate": "(0, 1]",
        "actor_hidden_units": "[1, 65536]",
        "critic_hidden_units": "[1, 65536]",
        "action_clip": "(0, 1]",
        "reward_offset": "(-inf, inf)",
    }
    preset: str = "default"
    num_candidates: int = 16  # K latents decoded per state for routing
    bc_coef: float = 1.0
    q_coef: float = 1.0
    normalize_q_loss: bool = True  # scale -Q by 1 / max(mean |Q|, 1e-6), no gradient through the scale
    q_agg: Literal["mean", "min"] = "mean"  # TD target over the two target critics
    actor_q_agg: Literal["mean", "min"] = "min"  # Q in the actor loss
    gamma: float = 0.99
    tau: float = 0.005
    learning_rate: float = 3e-4
    actor_hidden_units: list[int] = (512, 512, 512, 512)
    critic_hidden_units: list[int] = (512, 512, 512, 512)
    critic_layer_norm: bool = True
    action_clip: float = 1.0 - 1e-5  # dataset actions clipped to +-action_clip
    reward_offset: float = 0.0  # added to every reward (the authors shift D4RL AntMaze by -1)
    eval_latent: Literal["random", "zero"] = "random"  # "zero" is NOT the authors' protocol; labelled option

    def check(self, where: str) -> None:
        super().check(where)
        if self.num_candidates < 1:
            raise BenchError(f"{where}: 'num_candidates' must be >= 1, got {self.num_candidates}")
        if not 0.0 < self.action_clip <= 1.0:
            raise BenchError(f"{where}: 'action_clip' must be in (0, 1], got {self.action_clip}")
        if not 0.0 < self.tau <= 1.0:
            raise BenchError(f"{where}: 'tau' must be in (0, 1], got {self.tau}")


def preset_warning(preset: str, dataset_name: str) -> str | None:
    """The line a run records when its preset was not published for its dataset (None when it was)."""
    if preset == "cpu-smoke":
        return "drol: preset 'cpu-smoke' is a tiny model for CPU smoke tests, not a published setting"
    matching = [n for n, (pattern, _) in PUBLISHED.items() if re.search(pattern, dataset_name)]
    base = preset.removesuffix("-tuned")
    if base in PUBLISHED:
        if base in matching:
            return None
        return f"drol: preset '{preset}' is published for datasets matching '{PUBLISHED[base][0]}', " \
               f"not for '{dataset_name}'"
    hint = f"; preset '{matching[0]}' is published for it" if matching else ""
    return f"drol: no published preset for '{dataset_name}'{hint}: used the documented default " \
           f"(the authors' get_config: bc_coef 1.0, K 16, mean target, gamma 0.99) with this run's overrides"


@TRAINERS.register
class DROL(Trainer):
    name = "drol"
    config_class = DROLTrainerConfig
    presets = PRESETS
    policy_filename = "policy.pt"

    def build_model(self, dataset) -> None:
        import torch

        from blocks.nn import EnsembleMLP, mlp

        c = self.config
        torch.manual_seed(self.seed)  # the networks' initialisation
        self.obs_dim = int(np.prod(dataset.observations.shape[1:]))
        self.action_dim = int(dataset.actions.shape[1])
        self.radius = math.sqrt(self.action_dim)
        dev = torch.device(self.device)
        self.actor = mlp(self.obs_dim + self.action_dim, c.actor_hidden_units, self.action_dim, "gelu").to(dev)
        self.critic = EnsembleMLP(2, self.obs_dim + self.action_dim, c.critic_hidden_units, 1, "gelu",
                                  layer_norm=c.critic_layer_norm).to(dev)
        self.target = EnsembleMLP(2, self.obs_dim + self.action_dim, c.critic_hidden_units, 1, "gelu",
                                  layer_norm=c.critic_layer_norm).to(dev)
        self.target.load_state_dict(self.critic.state_dict())
        self.target.requires_grad_(False)
        self.optim = torch.optim.Adam([*self.actor.parameters(), *self.critic.parameters()], lr=c.learning_rate)
        self.train_gen = torch.Generator(device=dev).manual_seed(self.seed)
        self.eval_gen = torch.Generator(device=dev).manual_seed(self.seed + 1_000_003)
        warning = preset_warning(c.preset, dataset.meta.name)
        if warning:
            self.warnings.append(warning)

    # -- the policy -------------------------------------------------------------------------------------------
    def decode(self, obs, z):
        """Clipped actions f([s, z]); obs (..., S), z (..., A)."""
        import torch

        return self.actor(torch.cat([obs, z], dim=-1)).clamp(-1.0, 1.0)

    def latents(self, shape: tuple[int, ...], generator):
        from blocks.nn import sample_in_ball

        return sample_in_ball(shape, self.radius, generator=generator, device=self.train_gen.device)

    def q_values(self, network, obs, actions, params=None):
        """(2, B) Q values; `params` evaluates the critics with those (detached) tensors instead."""
        import torch

        x = torch.cat([obs, actions], dim=-1)
        out = network(x) if params is None else torch.func.functional_call(network, params, (x,))
        return out.squeeze(-1)

    # -- the losses -------------------------------------------------------------------------------------------
    def critic_loss(self, obs, actions, rewards, next_obs, masks):
        import torch

        c = self.config
        with torch.no_grad():
            next_actions = self.decode(next_obs, self.latents(tuple(actions.shape), self.train_gen))
            next_q = self.q_values(self.target, next_obs, next_actions)
            next_q = next_q.mean(0) if c.q_agg == "mean" else next_q.min(0).values
            target = rewards + c.gamma * masks * next_q
        return (self.q_values(self.critic, obs, actions) - target).pow(2).mean()

    def actor_loss(self, obs, actions):
        """Returns (loss, winner index per state, candidates)."""
        import torch

        c = self.config
        batch, k, dim = obs.shape[0], c.num_candidates, self.action_dim
        z = self.latents((batch, k, dim), self.train_gen)
        candidates = self.decode(obs.unsqueeze(1).expand(batch, k, obs.shape[-1]), z)  # (B, K, A)
        d2 = (candidates - actions.unsqueeze(1)).pow(2).sum(-1)  # (B, K)
        winner = d2.argmin(dim=1)
        rows = torch.arange(batch, device=obs.device)
        bc = d2[rows, winner].mean() / dim
        frozen = {name: p.detach() for name, p in self.critic.named_parameters()}
        q = self.q_values(self.critic, obs, candidates[rows, winner], params=frozen)
        q = q.min(0).values if c.actor_q_agg == "min" else q.mean(0)
        scale = 1.0 / q.abs().mean().detach().clamp_min(1e-6) if c.normalize_q_loss else 1.0
        return c.bc_coef * bc - c.q_coef * scale * q.mean(), winner, candidates

    def update(self, obs, actions, rewards, next_obs, masks) -> dict:
        import torch

        critic_loss = self.critic_loss(obs, actions, rewards, next_obs, masks)
        actor_loss, _, _ = self.actor_loss(obs, actions)
        self.optim.zero_grad(set_to_none=True)
        (critic_loss + actor_loss).backward()
        self.optim.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(self.target.parameters()), list(self.critic.parameters()), self.config.tau)
        return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach()}

    def tensors(self, batch):
        from bench.batches import to_torch

        c = self.config
        obs = to_torch(batch.observations).reshape(len(batch), -1)
        next_obs = to_torch(batch.next_observations).reshape(len(batch), -1)
        actions = to_torch(batch.actions).clamp(-c.action_clip, c.action_clip)
        rewards = to_torch(batch.rewards).reshape(-1) + c.reward_offset
        masks = 1.0 - to_torch(batch.terminals).reshape(-1)
        return obs, actions, rewards, next_obs, masks

    # -- the trainer interface --------------------------------------------------------------------------------
    def train(self, n_steps: int) -> None:
        self.actor.train()
        for _ in range(n_steps):
            self.last_losses = self.update(*self.tensors(self.sampler.sample()))
            self.grad_steps += 1

    def act(self, observation: np.ndarray, last_reward: float = 0.0) -> np.ndarray:
        import torch

        with torch.no_grad():
            obs = torch.as_tensor(np.array(observation, np.float32).reshape(1, -1), device=self.train_gen.device)
            if self.config.eval_latent == "zero":
                z = torch.zeros(1, self.action_dim, device=obs.device)
            else:
                z = self.latents((1, self.action_dim), self.eval_gen)
            return self.decode(obs, z)[0].cpu().numpy()

    def state(self) -> dict:
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "target": self.target.state_dict()}

    def save(self, path: Path) -> None:
        import torch

        with open(path, "wb") as f:
            torch.save({"config": self.config.to_dict(), "obs_dim": self.obs_dim, "action_dim": self.action_dim,
                        **self.state()}, f)

    def save_checkpoint(self, path: Path) -> None:
        import torch

        with open(path, "wb") as f:
            torch.save({**self.state(), "optim": self.optim.state_dict(), "grad_steps": self.grad_steps,
                        "train_gen": self.train_gen.get_state(), "eval_gen": self.eval_gen.get_state()}, f)

    def load_checkpoint(self, path: Path, grad_steps: int) -> None:
        import torch

        state = torch.load(path, map_location="cpu", weights_only=False)  # load_state_dict moves to the device
        if state["grad_steps"] != grad_steps:
            raise BenchError(f"{path}: checkpoint holds step {state['grad_steps']}, expected {grad_steps}")
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.target.load_state_dict(state["target"])
        self.optim.load_state_dict(state["optim"])
        self.train_gen.set_state(state["train_gen"])
        self.eval_gen.set_state(state["eval_gen"])
        self.grad_steps = grad_steps
