"""Known-answer tests of blocks.diffusion (EDM as SynthER uses it) and blocks.backbones (SynthER's ResMLP).

The sampler is checked without any training against the exact denoiser of a Gaussian, whose output law under the
discrete sampler is also computed in closed form; one small end-to-end run trains a ResMLP on a 2-D mixture.
"""

from __future__ import annotations

import math
from dataclasses import replace
from itertools import pairwise

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from blocks.backbones import ResidualMLPDenoiser
from blocks.diffusion import (
    EDMConfig,
    EDMPrecond,
    churn_gammas,
    edm_loss,
    heun_sampler,
    karras_sigmas,
    preconditioning,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny matmuls: one thread (tests/conftest.py)


# ---------------------------------------------------------------------------------------------- config and maths

def test_config_defaults_are_synthers():
    cfg = EDMConfig().validate()
    assert (cfg.sigma_data, cfg.sigma_min, cfg.sigma_max, cfg.rho) == (1.0, 0.002, 80.0, 7.0)
    assert (cfg.p_mean, cfg.p_std, cfg.steps) == (-1.2, 1.2, 128)
    assert (cfg.s_churn, cfg.s_tmin, cfg.s_tmax, cfg.s_noise, cfg.clamp) == (80.0, 0.05, 50.0, 1.003, None)


@pytest.mark.parametrize("field, value", [("sigma_min", 0.0), ("sigma_max", 0.001), ("steps", 1), ("rho", 0.0),
                                          ("sigma_data", -1.0), ("p_std", -0.1), ("s_churn", -1.0),
                                          ("s_tmax", 0.01), ("s_noise", 0.0), ("clamp", 0.0),
                                          ("p_mean", float("nan")), ("steps", 2.5)])
def test_config_validate_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        replace(EDMConfig(), **{field: value}).validate()


def test_preconditioning_known_values():
    sigma = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = preconditioning(sigma, 1.0)
    for k, s in enumerate([0.5, 1.0, 2.0]):
        assert c_skip[k].item() == pytest.approx(1 / (1 + s * s), rel=1e-12)
        assert c_out[k].item() == pytest.approx(s / math.sqrt(1 + s * s), rel=1e-12)
        assert c_in[k].item() == pytest.approx(1 / math.sqrt(1 + s * s), rel=1e-12)
        assert c_noise[k].item() == pytest.approx(math.log(s) / 4, abs=1e-12)
    c_skip, c_out, c_in, _ = preconditioning(torch.tensor([2.0], dtype=torch.float64), 0.5)  # sigma_data != 1
    assert (c_skip.item(), c_out.item(), c_in.item()) == pytest.approx((0.25 / 4.25, 1 / math.sqrt(4.25),
                                                                        1 / math.sqrt(4.25)), rel=1e-12)
    assert preconditioning(torch.tensor([0.0]))[3].item() == pytest.approx(math.log(1e-20) / 4)  # clamped log


class Recorder(nn.Module):
    """A fixed backbone t-dependent in a known way, remembering what it was given."""

    def forward(self, x, t, cond=None):
        self.seen = (x.clone(), t.clone(), cond)
        return torch.sin(3 * x) + t[:, None] + (0 if cond is None else cond.sum(1, keepdim=True))


def test_precond_composes_the_backbone():
    net = Recorder()
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.3, 1.0, 7.0, 80.0], dtype=torch.float64)
    cond = torch.ones(5, 2, dtype=torch.float64)
    out = EDMPrecond(net, sigma_data=1.0)(x, sigma, cond)
    s = sigma[:, None]
    assert torch.allclose(net.seen[0], x / (1 + s ** 2).sqrt())
    assert torch.allclose(net.seen[1], sigma.log() / 4) and net.seen[2] is cond
    want = x / (1 + s ** 2) + s / (1 + s ** 2).sqrt() * (torch.sin(3 * x / (1 + s ** 2).sqrt()) + sigma.log()[:, None] / 4 + 2)
    assert torch.allclose(out, want)
    out_float = EDMPrecond(net)(x, 0.3)  # a float sigma means the same sigma for every row
    assert torch.allclose(out_float, EDMPrecond(net)(x, torch.full((5,), 0.3, dtype=torch.float64)))


def test_edm_loss_known_answer():
    """Per-sample mean over dimensions, weighted by (s^2 + sd^2)/(s sd)^2, then the batch mean; sigma drawn first."""
    cfg = EDMConfig(sigma_data=0.7)
    x0 = torch.randn(64, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model = EDMPrecond(Recorder(), sigma_data=cfg.sigma_data)
    got = edm_loss(model, x0, cfg, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    sigma = (-1.2 + 1.2 * torch.randn(64, generator=g, dtype=torch.float64)).exp()
    noised = x0 + sigma[:, None] * torch.randn(64, 3, generator=g, dtype=torch.float64)
    per_sample = ((model(noised, sigma) - x0) ** 2).mean(1)
    weight = (sigma ** 2 + 0.49) / (sigma * 0.7) ** 2
    assert got.item() == pytest.approx((weight * per_sample).mean().item(), rel=1e-12)


def test_karras_sigmas():
    sig = karras_sigmas(128, 0.002, 80.0, 7.0)
    assert sig.shape == (129,) and sig.dtype == torch.float32
    assert sig[0].item() == pytest.approx(80.0, rel=1e-6) and sig[-2].item() == pytest.approx(0.002, rel=1e-5)
    assert sig[-1].item() == 0.0 and bool((sig[1:] < sig[:-1]).all())
    roots = sig[:-1].double() ** (1 / 7)
    assert torch.allclose(roots.diff(), torch.full((127,), (0.002 ** (1 / 7) - 80 ** (1 / 7)) / 127,
                                                   dtype=torch.float64), rtol=1e-4)
    gammas = churn_gammas(sig.tolist(), EDMConfig())  # SynthER's 128 steps: churn capped at sqrt(2) - 1
    on = [i for i, g in enumerate(gammas) if g > 0]
    assert on == list(range(11, 107)) and {gammas[i] for i in on} == {math.sqrt(2) - 1}


# ------------------------------------------------------------------------- sampler against an exact denoiser

MU = torch.tensor([0.5, -1.0], dtype=torch.float64)
SIGMA = torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=torch.float64)  # eigenvalues 1.40 and 0.10
LAM, U = torch.linalg.eigh(SIGMA)


def gaussian_denoiser(x, sigma, cond=None):
    """E[x0 | x0 + sigma n = x] for x0 ~ N(MU, SIGMA): MU + SIGMA (SIGMA + sigma^2 I)^-1 (x - MU), per row."""
    shrink = LAM / (LAM + sigma[:, None] ** 2)
    return MU + ((x - MU) @ U * shrink) @ U.T


def sampler_law(cfg: EDMConfig):
    """Exact mean and covariance of the discrete sampler's output for that Gaussian: in each eigendirection the
    sampler is the scalar linear recursion y_hat = y + sqrt(s_hat^2 - s^2) S_noise n, y' = a_i y_hat."""
    sig = karras_sigmas(cfg.steps, cfg.sigma_min, cfg.sigma_max, cfg.rho).tolist()
    churn = min(cfg.s_churn / cfg.steps, math.sqrt(2) - 1)
    means, variances = [], []
    for lam, m in zip(LAM.tolist(), (-MU @ U).tolist()):  # centred coordinates start with mean -MU
        v = sig[0] ** 2

        def slope(q, lam=lam):  # (x - D(x; q)) / q = slope(q) x in this direction
            return (1 - lam / (lam + q * q)) / q

        for s, s_next in pairwise(sig):
            s_hat = s * (1 + (churn if cfg.s_tmin <= s <= cfg.s_tmax else 0.0))
            v += (s_hat ** 2 - s ** 2) * cfg.s_noise ** 2
            euler = 1 + (s_next - s_hat) * slope(s_hat)
            a = euler if s_next == 0 else 1 + 0.5 * (s_next - s_hat) * (slope(s_hat) + euler * slope(s_next))
            v, m = v * a * a, m * a
        means.append(m)
        variances.append(v)
    return MU + U @ torch.tensor(means, dtype=torch.float64), U @ torch.diag(torch.tensor(variances,
                                                                                  dtype=torch.float64)) @ U.T


def standard_errors(cov: torch.Tensor, n: int):
    """Standard errors of the sample mean and of each sample-covariance entry of n Gaussian draws."""
    d = cov.diag()
    return (d / n).sqrt(), ((d[:, None] * d[None, :] + cov ** 2) / n).sqrt()


@pytest.mark.parametrize("cfg", [EDMConfig(), EDMConfig(steps=32, s_churn=0.0), EDMConfig(steps=16, s_noise=1.2)],
                         ids=["synther-128-churn", "32-no-churn", "16-churn-noise-1.2"])
def test_sampler_exact_gaussian(cfg):
    n = 20_000
    x = heun_sampler(gaussian_denoiser, (n, 2), cfg, torch.Generator().manual_seed(0), dtype=torch.float64)
    mean, cov = x.mean(0), torch.cov(x.T)
    law_mean, law_cov = sampler_law(cfg)
    se_mean, se_cov = standard_errors(law_cov, n)
    # the samples follow the sampler's exact law (5 standard errors; 16 steps has a large, predicted bias)
    assert bool(((mean - law_mean).abs() < 5 * se_mean).all()), (mean, law_mean)
    assert bool(((cov - law_cov).abs() < 5 * se_cov).all()), (cov, law_cov)
    if cfg.steps == 128:
        # SynthER's setting reproduces N(MU, SIGMA): churn (gamma = 0.414 on 96 of 128 steps) and S_noise inflate
        # the covariance by ~2.3 %, which is below 3 %; the samples are within 5 SE plus that of SIGMA
        assert torch.allclose(law_mean, MU, atol=1e-6) and bool(((law_cov - SIGMA).abs() < 0.03 * SIGMA).all())
        assert bool(((mean - MU).abs() < 5 * se_mean).all())
        assert bool(((cov - SIGMA).abs() < 5 * se_cov + 0.03 * SIGMA.abs()).all()), cov
        no_churn_cov = sampler_law(replace(cfg, s_churn=0.0))[1]  # the ODE alone at 128 steps is within 0.2 %
        assert bool(((no_churn_cov - SIGMA).abs() < 0.002 * SIGMA).all())


class SigmaRecorder:
    """Wraps a denoiser, recording the sigma and input of every call."""

    def __init__(self, denoise):
        self.denoise, self.sigmas, self.inputs = denoise, [], []

    def __call__(self, x, sigma, cond=None):
        assert sigma.shape == (x.shape[0],) and bool((sigma == sigma[0]).all())
        self.sigmas.append(sigma[0].item())
        self.inputs.append(x.clone())
        return self.denoise(x, sigma, cond)


def test_sampler_calls_the_denoiser_at_churned_then_next_sigma():
    """Step i evaluates D at s_hat_i = s_i (1 + gamma_i), then (Heun) at s_{i+1} unless s_{i+1} = 0: 2N - 1 calls,
    gamma_i = min(S_churn/N, sqrt 2 - 1) exactly where S_tmin <= s_i <= S_tmax."""
    for cfg in (EDMConfig(), EDMConfig(steps=40, s_churn=10.0)):  # 80/128 is capped at 0.414; 10/40 = 0.25 is not
        rec = SigmaRecorder(gaussian_denoiser)
        heun_sampler(rec, (3, 2), cfg, torch.Generator().manual_seed(0), dtype=torch.float64)
        sig = karras_sigmas(cfg.steps, cfg.sigma_min, cfg.sigma_max, cfg.rho).tolist()
        gamma = min(cfg.s_churn / cfg.steps, math.sqrt(2) - 1)
        want = []
        for s, s_next in pairwise(sig):
            want.append(s * (1 + gamma) if 0.05 <= s <= 50 else s)
            want += [s_next] if s_next else []
        assert len(rec.sigmas) == 2 * cfg.steps - 1 and rec.sigmas == pytest.approx(want, rel=1e-12)


def test_sampler_clamp_option():
    """A point mass at c: D = c; the last (Euler) step lands exactly on D, clamped to [-1, 1] when asked."""
    point = torch.tensor([3.0, -0.5])

    def at_point(x, sigma, cond=None):
        return point.expand_as(x)

    cfg = EDMConfig(steps=8)
    assert torch.allclose(heun_sampler(at_point, (4, 2), cfg, torch.Generator().manual_seed(0)),
                          point.expand(4, 2), atol=1e-5)
    clamped = heun_sampler(at_point, (4, 2), replace(cfg, clamp=1.0), torch.Generator().manual_seed(0))
    assert torch.allclose(clamped, torch.tensor([1.0, -0.5]).expand(4, 2), atol=1e-5)
    # every denoised estimate is clamped, not only the result: the path equals that of a denoiser at the
    # clamped point
    rec, rec_clamped_point = SigmaRecorder(gaussian_denoiser), SigmaRecorder(gaussian_denoiser)
    rec.denoise = lambda x, sigma, cond: 3 * gaussian_denoiser(x, sigma)
    rec_clamped_point.denoise = lambda x, sigma, cond: (3 * gaussian_denoiser(x, sigma)).clamp(-1.0, 1.0)
    heun_sampler(rec, (50, 2), replace(cfg, clamp=1.0), torch.Generator().manual_seed(1), dtype=torch.float64)
    heun_sampler(rec_clamped_point, (50, 2), cfg, torch.Generator().manual_seed(1), dtype=torch.float64)
    assert all(torch.equal(a, b) for a, b in zip(rec.inputs, rec_clamped_point.inputs, strict=True))


# ------------------------------------------------------------------------------- backbone and determinism

def test_backbone_parameter_count_is_synthers():
    """d_in 27 (hopper with terminals), width 2048, 6 blocks, dim_t 128, 16 Fourier features, no LayerNorm."""
    net = ResidualMLPDenoiser(27)
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    #   proj 27*128+128 + time MLP (17*128+128 + 128*128+128) + in 128*2048+2048 + 6 (2048^2+2048) + out 2048*27+27
    assert trainable == 3_584 + 2_304 + 16_512 + 264_192 + 6 * 4_196_352 + 55_323 == 25_520_027
    assert sum(p.numel() for p in net.parameters()) == 25_520_027 + 8  # the 8 fixed frequencies
    assert net.fourier.weights.shape == (8,) and not net.fourier.weights.requires_grad


def test_backbone_layer_norm_and_cond_sizes():
    base = sum(p.numel() for p in ResidualMLPDenoiser(5, width=32, depth=3, dim_t=16).parameters())
    ln = sum(p.numel() for p in ResidualMLPDenoiser(5, width=32, depth=3, dim_t=16, layer_norm=True).parameters())
    assert ln - base == (3 + 1) * 2 * 32  # one LayerNorm per block and one after the last block
    cond = sum(p.numel() for p in ResidualMLPDenoiser(5, width=32, depth=3, dim_t=16, cond_dim=4).parameters())
    assert cond - base == 4 * 16  # cond is concatenated to x before the input projection


def test_backbone_contract():
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(6, 5, generator=g), torch.randn(6, generator=g)
    net = ResidualMLPDenoiser(5, width=32, depth=2, dim_t=16, layer_norm=True)
    assert net(x, t).shape == (6, 5) and net(x, t, None).shape == (6, 5)
    assert not torch.allclose(net(x, t), net(x, t + 1.0))
    emb = net.fourier(t)
    w = net.fourier.weights
    assert emb.shape == (6, 17)
    angle = 2 * math.pi * w * t[:, None]
    assert torch.allclose(emb, torch.cat([t[:, None], angle.sin(), angle.cos()], 1), atol=1e-5)
    cnet = ResidualMLPDenoiser(5, width=32, depth=2, dim_t=16, cond_dim=3)
    c = torch.randn(6, 3, generator=g)
    assert cnet(x, t, c).shape == (6, 5) and not torch.allclose(cnet(x, t, c), cnet(x, t, c + 1))
    with pytest.raises(ValueError, match="cond"):
        cnet(x, t)
    with pytest.raises(ValueError, match="cond"):
        net(x, t, c)
    with pytest.raises(ValueError, match="activation"):
        ResidualMLPDenoiser(5, activation="nope")


def test_backbone_forward_known_answer():
    """[x, cond] -> proj + time MLP(fourier(t)) -> Linear -> blocks h + W act(LN(h)) -> LN -> act -> Linear."""
    g = torch.Generator().manual_seed(2)
    net = ResidualMLPDenoiser(3, width=16, depth=2, dim_t=8, layer_norm=True, activation="silu", cond_dim=2)
    with torch.no_grad():  # non-trivial LayerNorm affine parameters
        for ln in [b.ln for b in net.blocks] + [net.final_ln]:
            ln.weight.uniform_(0.5, 1.5, generator=g)
            ln.bias.uniform_(-0.5, 0.5, generator=g)
    x, t, c = torch.randn(4, 3, generator=g), torch.randn(4, generator=g), torch.randn(4, 2, generator=g)

    def lin(layer, v):
        return v @ layer.weight.T + layer.bias

    def norm(layer, v):
        return (v - v.mean(1, keepdim=True)) / (v.var(1, unbiased=False, keepdim=True) + 1e-5).sqrt() \
            * layer.weight + layer.bias

    angle = 2 * math.pi * t[:, None] * net.fourier.weights
    emb = lin(net.time_mlp[2], F.silu(lin(net.time_mlp[0], torch.cat([t[:, None], angle.sin(), angle.cos()], 1))))
    h = lin(net.inp, lin(net.proj, torch.cat([x, c], 1)) + emb)
    for block in net.blocks:
        h = h + lin(block.linear, F.silu(norm(block.ln, h)))
    want = lin(net.out, F.silu(norm(net.final_ln, h)))
    assert torch.allclose(net(x, t, c), want, atol=1e-5)


def test_backbone_init_is_pytorch_default_in_the_authors_order():
    """A generator seeded s gives the weights a plain-PyTorch model built in the authors' constructor order
    (trunk Linear layers, input projection, Fourier frequencies, time MLP) gets after torch.manual_seed(s)."""
    d, width, depth, dim_t = 4, 24, 2, 16
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        ref = [nn.Linear(dim_t, width)] + [nn.Linear(width, width) for _ in range(depth)] + [nn.Linear(width, d)]
        ref += [nn.Linear(d, dim_t)]
        freqs = torch.randn(8)
        ref += [nn.Linear(17, dim_t), nn.Linear(dim_t, dim_t)]
    net = ResidualMLPDenoiser(d, width=width, depth=depth, dim_t=dim_t, generator=torch.Generator().manual_seed(7))
    ours = [net.inp, *[b.linear for b in net.blocks], net.out, net.proj, net.time_mlp[0], net.time_mlp[2]]
    for a, b in zip(ours, ref, strict=True):
        assert torch.allclose(a.weight, b.weight, atol=1e-7) and torch.allclose(a.bias, b.bias, atol=1e-7)
    assert torch.equal(net.fourier.weights, freqs)


def test_determinism_and_global_rng_untouched():
    state = torch.get_rng_state()
    a, b = ResidualMLPDenoiser(3, width=32, depth=2, dim_t=16), ResidualMLPDenoiser(3, width=32, depth=2, dim_t=16)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    c = ResidualMLPDenoiser(3, width=32, depth=2, dim_t=16, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(a.inp.weight, c.inp.weight)
    model, cfg = EDMPrecond(a), EDMConfig(steps=6)
    s1 = heun_sampler(model, (10, 3), cfg, torch.Generator().manual_seed(3))
    s2 = heun_sampler(model, (10, 3), cfg, torch.Generator().manual_seed(3))
    s3 = heun_sampler(model, (10, 3), cfg, torch.Generator().manual_seed(4))
    assert torch.equal(s1, s2) and not torch.equal(s1, s3)
    loss = edm_loss(model, torch.zeros(8, 3), cfg, torch.Generator().manual_seed(0))
    assert loss.item() == edm_loss(model, torch.zeros(8, 3), cfg, torch.Generator().manual_seed(0)).item()
    assert torch.equal(torch.get_rng_state(), state)


# ------------------------------------------------------------------------------------------- end to end

WEIGHTS = torch.tensor([0.7, 0.3])
MODES = torch.tensor([[-1.0, -0.5], [1.5, 1.0]])
MODE_STD = 0.25


def mixture(n: int, g: torch.Generator) -> torch.Tensor:
    k = (torch.rand(n, generator=g) < WEIGHTS[1]).long()
    return MODES[k] + MODE_STD * torch.randn(n, 2, generator=g)


def test_train_and_sample_gaussian_mixture():
    """ResMLP (width 128, 2 blocks) + EDMPrecond, 1000 Adam steps of edm_loss with cosine decay (as SynthER's
    trainer), then 4000 samples with 32 churned Heun steps: moments, mode weights and mode widths match."""
    net = ResidualMLPDenoiser(2, width=128, depth=2, generator=torch.Generator().manual_seed(0))
    model, cfg, steps = EDMPrecond(net), EDMConfig(steps=32), 1000
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(100)
    for _ in range(steps):
        loss = edm_loss(model, mixture(1024, g), cfg, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    n = 4000
    x = heun_sampler(model, (n, 2), cfg, torch.Generator().manual_seed(200))
    mean = (WEIGHTS[:, None] * MODES).sum(0)
    cov = MODE_STD ** 2 * torch.eye(2) + sum(w * torch.outer(m - mean, m - mean) for w, m in zip(WEIGHTS, MODES))
    scale = cov.diag().sqrt()
    assert bool(((x.mean(0) - mean).abs() < 3 * (cov.diag() / n).sqrt()).all()), x.mean(0)  # ~0.056 and 0.035
    assert bool(((torch.cov(x.T) - cov).abs() < 0.1 * torch.outer(scale, scale)).all()), torch.cov(x.T)
    dist = torch.cdist(x, MODES)
    nearest = dist.argmin(1)
    assert abs((nearest == 1).float().mean().item() - 0.3) < 4 * math.sqrt(0.21 / n)  # mode weight, 0.029
    assert (dist.min(1).values < 3 * MODE_STD).float().mean().item() > 0.95  # 98.9 % for the true mixture
    for k in range(2):  # each mode about as wide as the data's (32 churned steps inflate it by ~5 %)
        std = x[nearest == k].std(0)
        assert bool(((std > 0.8 * MODE_STD) & (std < 1.2 * MODE_STD)).all()), (k, std)
