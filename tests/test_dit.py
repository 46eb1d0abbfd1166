"""Tests of blocks.backbones.SequenceDiT, the 1-D Diffusion Transformer shared by ASTRO's two diffusion models."""

from __future__ import annotations

import copy

import pytest
import torch

from blocks.backbones import SequenceDiT, sincos_positions
from blocks.diffusion import DDPMConfig, DDPMSchedule, ddpm_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny transformers: one thread (tests/conftest.py)

X_DIM, HORIZON, COND, SEQ = 3, 12, 2, 5
TINY = {"width": 32, "depth": 2, "heads": 4, "cond_dim": COND, "seq_cond_dim": SEQ}


def inputs(batch: int, length: int = HORIZON, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, length, X_DIM, generator=g), torch.randint(0, 100, (batch,), generator=g),
            torch.randn(batch, COND, generator=g), torch.randn(batch, length, SEQ, generator=g))


def train(net: SequenceDiT, steps: int, seed: int = 0) -> SequenceDiT:
    """A few Adam steps of regression to a fixed random target that depends on position, cond and seq_cond:
    enough to move every layer away from its adaLN-Zero start."""
    x, t, cond, seq = inputs(8, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    keep = (torch.rand(8, generator=g) < 0.7).float()
    target = torch.randn(8, HORIZON, X_DIM, generator=g)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = (net(x, t, cond, keep, seq_cond=seq) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def trained(one_torch_thread) -> SequenceDiT:
    return train(SequenceDiT(X_DIM, HORIZON, **TINY, generator=torch.Generator().manual_seed(1)), steps=30)


@pytest.mark.parametrize("batch,length", [(1, HORIZON), (4, HORIZON), (3, 5), (2, 1)])
def test_output_shape(batch, length):
    net = SequenceDiT(X_DIM, HORIZON, **TINY)
    x, t, cond, seq = inputs(batch, length)
    assert net(x, t, cond, None, seq).shape == (batch, length, X_DIM)
    assert net(x, t.float() / 7, None, None, None).shape == (batch, length, X_DIM)  # float t, no conditions
    assert net(x, torch.tensor(3)).shape == (batch, length, X_DIM)  # scalar t broadcast over the batch


def test_default_size_shape():
    net = SequenceDiT(X_DIM, HORIZON)
    assert net.width == 256 and len(net.blocks) == 4 and net.blocks[0].attn.heads == 4
    assert net.blocks[0].mlp[0].out_features == 1024  # mlp_ratio 4
    assert net(torch.randn(2, 7, X_DIM), torch.tensor([0, 99])).shape == (2, 7, X_DIM)


def test_fresh_net_outputs_zeros_until_trained():
    net = SequenceDiT(X_DIM, HORIZON, **TINY)
    x, t, cond, seq = inputs(4)
    assert torch.equal(net(x, t, cond, None, seq), torch.zeros(4, HORIZON, X_DIM))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(x, t, cond, None, seq).sub(1.0).pow(2).mean().backward()
    opt.step()
    out = net(x, t, cond, None, seq)
    assert out.abs().min() > 0


def test_init_is_deterministic_and_leaves_global_rng():
    state = torch.get_rng_state()
    a = SequenceDiT(X_DIM, HORIZON, **TINY, generator=torch.Generator().manual_seed(7))
    b = SequenceDiT(X_DIM, HORIZON, **TINY, generator=torch.Generator().manual_seed(7))
    c = SequenceDiT(X_DIM, HORIZON, **TINY, generator=torch.Generator().manual_seed(8))
    d, e = SequenceDiT(X_DIM, HORIZON, **TINY), SequenceDiT(X_DIM, HORIZON, **TINY, generator=None)
    assert torch.equal(torch.get_rng_state(), state)
    pa, pb, pc = a.state_dict(), b.state_dict(), c.state_dict()
    assert pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)
    assert all(torch.equal(p, q) for p, q in zip(d.parameters(), e.parameters()))
    assert not torch.equal(pa["x_proj.weight"], pc["x_proj.weight"])
    # DiT's initialisation: zeroed adaLN and output layers, xavier-uniform elsewhere, the fixed sin-cos table
    for lin in [blk.modulation[-1] for blk in a.blocks] + [a.final_modulation[-1], a.out]:
        assert not lin.weight.any() and not lin.bias.any()
    bound = (6 / (32 + 3 * 32)) ** 0.5
    qkv = a.blocks[0].attn.qkv
    assert qkv.weight.abs().max() <= bound and qkv.weight.std() > bound / 3 and not qkv.bias.any()
    assert 0.01 < a.t_mlp[0].weight.std() < 0.03
    assert torch.equal(a.pos_embed, sincos_positions(HORIZON, 32)) and "pos_embed" not in pa
    one = torch.tensor(1.0)
    assert torch.allclose(a.pos_embed[1, [0, 16]], torch.stack([one.sin(), one.cos()]))  # [sin(p w), cos(p w)]
    assert torch.equal(a.pos_embed[0], torch.cat([torch.zeros(16), torch.ones(16)]))


def test_cond_none_equals_keep_zero(trained):
    x, t, cond, seq = inputs(4, seed=3)
    with torch.no_grad():
        none = trained(x, t, None, None, seq)
        dropped = trained(x, t, cond, torch.zeros(4), seq)
        kept = trained(x, t, cond, torch.ones(4), seq)
        plain = trained(x, t, cond, None, seq)
        mixed = trained(x, t, cond, torch.tensor([1.0, 0.0, 1.0, 0.0]), seq)
    assert torch.equal(none, dropped)
    assert torch.equal(kept, plain)
    assert (kept - none).abs().max() > 1e-3
    assert torch.allclose(mixed[1::2], none[1::2], atol=1e-6)
    assert torch.allclose(mixed[::2], kept[::2], atol=1e-6)


def test_seq_cond_changes_output_and_none_is_zeros(trained):
    x, t, cond, seq = inputs(4, seed=4)
    with torch.no_grad():
        none = trained(x, t, cond, None, None)
        zeros = trained(x, t, cond, None, torch.zeros_like(seq))
        given = trained(x, t, cond, None, seq)
    assert torch.equal(none, zeros)
    assert (given - none).abs().max() > 1e-2


def test_positional_embedding_breaks_permutation_equivariance(trained):
    x, t, cond, _ = inputs(3, seed=5)
    perm = torch.arange(HORIZON)
    perm[[2, 9]] = perm[[9, 2]]
    with torch.no_grad():
        out, out_swapped = trained(x, t, cond), trained(x[:, perm], t, cond)
        assert (out_swapped - out[:, perm]).abs().max() > 1e-3
        # the check has teeth: with the positional table zeroed the same net is permutation-equivariant
        no_pos = copy.deepcopy(trained)
        no_pos.pos_embed.zero_()
        assert torch.allclose(no_pos(x[:, perm], t, cond), no_pos(x, t, cond)[:, perm], atol=1e-5)


def test_bad_shapes_raise():
    net = SequenceDiT(X_DIM, HORIZON, **TINY)
    x, t, cond, seq = inputs(2)
    bad = [
        lambda: net(x[0], t),  # no batch dimension
        lambda: net(torch.randn(2, HORIZON, X_DIM + 1), t),
        lambda: net(torch.randn(2, HORIZON + 1, X_DIM), t),
        lambda: net(torch.randn(2, 0, X_DIM), t),
        lambda: net(x, t[:1]),
        lambda: net(x, t, cond[:, :1]),
        lambda: net(x, t, cond, torch.ones(3)),
        lambda: net(x, t, None, None, seq[:, :5]),
        lambda: net(x, t, None, None, seq[..., :2]),
    ]
    for call in bad:
        with pytest.raises(ValueError, match="SequenceDiT"):
            call()
    plain = SequenceDiT(X_DIM, HORIZON, width=32, depth=1)
    for call in (lambda: plain(x, t, cond), lambda: plain(x, t, None, torch.ones(2)),
                 lambda: plain(x, t, seq_cond=seq)):
        with pytest.raises(ValueError, match="takes no"):
            call()
    for kw in ({"width": 30, "heads": 4}, {"width": 33, "heads": 1}, {"horizon": 0}, {"depth": 0},
               {"cond_dim": -1}, {"mlp_ratio": 0.0}, {"x_dim": 2.5}):
        args = {"x_dim": X_DIM, "horizon": HORIZON, "width": 32} | kw
        with pytest.raises(ValueError, match="SequenceDiT"):
            SequenceDiT(**args)


def test_tiny_dit_overfits_fixed_batch_with_ddpm_loss():
    """width 32, depth 2, trained with DiffStitch's eps loss (ddpm_loss calls net(x_t, t, cond, keep), with
    classifier-free dropout of cond) on 4 fixed trajectories: the loss falls > 5x in 400 Adam steps (7.6x-10.9x
    over init seeds 0-3 when written)."""
    cfg = DDPMConfig(steps=10)
    schedule = DDPMSchedule(cfg)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 8, X_DIM, generator=g).clamp(-2, 2) / 2
    cond = torch.randn(4, COND, generator=g)
    net = SequenceDiT(X_DIM, 8, width=32, depth=2, heads=4, cond_dim=COND, generator=torch.Generator().manual_seed(0))
    steps = 400
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)

    def eval_loss() -> float:  # the same 16 draws of (t, noise, keep) before and after training
        eg = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return sum(ddpm_loss(net, x0, None, schedule, cfg, eg, cond).item() for _ in range(16)) / 16

    start = eval_loss()
    train_g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        loss = ddpm_loss(net, x0, None, schedule, cfg, train_g, cond)
        opt.zero_grad()
        loss.backward()
        opt.step()
        decay.step()
    end = eval_loss()
    assert 0.8 < start < 1.2  # a fresh net predicts eps = 0: the loss is E[noise^2] = 1
    assert end < start / 5, (start, end)
