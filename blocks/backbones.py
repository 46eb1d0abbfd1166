"""Denoiser backbones for the diffusion augmenters, all with one contract: `forward(x, t, cond=None)`.

x is (B, d), t is (B,) the noise-level input (for EDM, c_noise = ln(sigma) / 4), cond is (B, c) or None; the output
is (B, d).

`ResidualMLPDenoiser` follows SynthER (conglu1997/SynthER, `synther/diffusion/denoiser_network.py`, with
`config/resmlp_denoiser.gin` for the offline defaults: width 2048, 6 blocks, ReLU, no LayerNorm, dim_t 128):

- time embedding: `fourier_features` // 2 fixed frequencies w ~ N(0, 1) (drawn once, never trained; kept, as by
  the authors, as a parameter with requires_grad=False), giving [t, sin(2 pi w t), cos(2 pi w t)], i.e.
  `fourier_features` + 1 = 17 values, then Linear -> SiLU -> Linear to dim_t;
- the input (concatenated with cond when `cond_dim` is given, the authors' conditioning) is projected by one
  Linear to dim_t and the time embedding is added;
- Linear(dim_t -> width), `depth` pre-activation residual blocks h + Linear(act(LN(h))) with ONE linear each, then
  (LN,) act and Linear(width -> d).  LayerNorm (only with `layer_norm=True`) sits where the authors put it: at the
  start of each block and once after the last block.

Initialisation is PyTorch's default for every layer (the authors do not re-initialise): Linear weights and biases
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), LayerNorm ones/zeros.  Here those draws, and the Fourier frequencies, come
from the `generator` argument (a CPU torch.Generator, seeded 0 when None): layers are created uninitialised
(`torch.nn.utils.skip_init`) and then filled explicitly from the generator, so construction is deterministic and
never touches the global RNG.  The authors draw from the global RNG; the draws here come in their constructor's
order (trunk Linear layers, input projection, Fourier frequencies, time MLP), so a generator seeded s gives the
weights their model gets after torch.manual_seed(s) (to float rounding of the uniform bound).

Deviation, as a named behaviour: the authors' unconditional network silently ignores a `cond` it is given (and a
conditional one asserts that cond is there); here both mismatches raise ValueError.

`TemporalUnet` is Decision Diffuser's 1-D temporal U-Net as DiffStitch trains it (guangheli12/DiffStitch and
anuragajay/decision-diffuser, `diffuser/models/temporal.py::TemporalUnet` with `helpers.py`'s SinusoidalPosEmb,
Downsample1d, Upsample1d, Conv1dBlock; DiffStitch's configs: dim 128, dim_mults (1, 4, 8), horizon 100, returns
conditioned).  Its contract extends the one above: `forward(x, t, cond=None, keep=None)` with x (B, H, D)
channels last (the trajectory), t (B,) the DDPM step, cond (B, 1) the return and keep (B,) the classifier-free
dropout mask (1 keeps the return embedding, 0 drops it).  The architecture, read from the authors' code:

- embedding: SinusoidalPosEmb(dim) (half = dim // 2 frequencies 10000^(-k / (half - 1)), [sin, cos]) ->
  Linear(dim, 4 dim) -> Mish -> Linear(4 dim, dim); the return MLP Linear(1, dim) -> Mish -> Linear(dim, 4 dim)
  -> Mish -> Linear(4 dim, dim), concatenated after the time embedding (embed_dim = 2 dim; dim unconditioned);
- channels dims = [D, dim * m for m in dim_mults]; one down level per consecutive pair, each two
  ResidualTemporalBlocks (in -> out, out -> out) and a Downsample1d (Conv1d k3 s2 p1) except at the last level;
  two mid blocks at the deepest width; one up level per pair but the first, reversed, each two blocks
  (2 out -> in, in -> in) on [x, skip] and an Upsample1d (ConvTranspose1d k4 s2 p1) at EVERY up level (the
  authors' `is_last` test there is never true), so the skip of the first down level is never used; final
  Conv1dBlock(dim, dim) and a 1x1 Conv1d(dim, D);
- ResidualTemporalBlock(in, out): Conv1dBlock(in, out)(x) + Linear(Mish(emb)) broadcast over time, then
  Conv1dBlock(out, out), plus a 1x1 Conv1d residual (identity when in == out); Conv1dBlock = Conv1d(k, padding
  k // 2) -> GroupNorm(8) -> Mish.

Named behaviours: the authors draw the dropout mask inside forward (Bernoulli(1 - p) from the global RNG, during
training) and zero the return embedding for the unconditional pass (`force_dropout`); here the caller passes
`keep`, and `cond=None` on a returns-conditioned net gives a zero return embedding (the same output as keep = 0).
A `cond` or `keep` given to a net built with returns_condition=False raises ValueError; a horizon (the
constructor's, or the H of an input: the net is fully convolutional, as the authors') not divisible by
2 ** (len(dim_mults) - 1) raises ValueError (the authors' net fails there on the skip concatenation).

Every layer keeps PyTorch's default initialisation; layers are created in the authors' order, inside
`torch.random.fork_rng` with the CPU default generator re-seeded from a seed drawn from `generator` (seeded 0 when
None), so the global RNG state is left as it was and equal generators give bit-identical weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import skip_init

_ACTIVATIONS = {"relu": F.relu, "silu": F.silu, "gelu": F.gelu, "elu": F.elu, "tanh": torch.tanh}


def _default_generator(generator: torch.Generator | None) -> torch.Generator:
    return torch.Generator().manual_seed(0) if generator is None else generator


def torch_default_linear(d_in: int, d_out: int, generator: torch.Generator) -> nn.Linear:
    """nn.Linear with PyTorch's default initialisation distribution, drawn from `generator`."""
    lin = skip_init(nn.Linear, d_in, d_out)
    bound = 1.0 / math.sqrt(d_in)  # kaiming_uniform(a=sqrt(5)) on the weight and the default bias bound agree
    with torch.no_grad():
        lin.weight.uniform_(-bound, bound, generator=generator)
        lin.bias.uniform_(-bound, bound, generator=generator)
    return lin


class RandomFourierEmbedding(nn.Module):
    """t (B,) -> [t, sin(2 pi w t), cos(2 pi w t)] (B, features + 1) with features // 2 fixed w ~ N(0, 1)."""

    def __init__(self, features: int = 16, generator: torch.Generator | None = None):
        super().__init__()
        if features <= 0 or features % 2:
            raise ValueError(f"fourier_features must be a positive even number, got {features}")
        weights = torch.randn(features // 2, generator=_default_generator(generator))
        self.weights = nn.Parameter(weights, requires_grad=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        t = t[:, None]
        freqs = t * self.weights[None, :] * (2 * math.pi)
        return torch.cat((t, freqs.sin(), freqs.cos()), dim=-1)


class ResidualBlock(nn.Module):
    """h + Linear(act(LN(h))): pre-activation, one linear layer."""

    def __init__(self, width: int, act, layer_norm: bool, generator: torch.Generator):
        super().__init__()
        self.ln = nn.LayerNorm(width) if layer_norm else nn.Identity()
        self.linear = torch_default_linear(width, width, generator)
        self.act = act

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.linear(self.act(self.ln(h)))


class ResidualMLPDenoiser(nn.Module):
    """SynthER's residual-MLP denoiser; see the module docstring."""

    def __init__(self, d_in: int, width: int = 2048, depth: int = 6, dim_t: int = 128, fourier_features: int = 16,
                 layer_norm: bool = False, activation: str = "relu", cond_dim: int | None = None,
                 generator: torch.Generator | None = None):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation '{activation}' (one of {sorted(_ACTIVATIONS)})")
        gen = _default_generator(generator)
        act = _ACTIVATIONS[activation]
        self.d_in, self.cond_dim = d_in, cond_dim
        # Draw order as in the authors' constructor (see the module docstring).
        self.inp = torch_default_linear(dim_t, width, gen)
        self.blocks = nn.Sequential(*[ResidualBlock(width, act, layer_norm, gen) for _ in range(depth)])
        self.final_ln = nn.LayerNorm(width) if layer_norm else nn.Identity()
        self.act = act
        self.out = torch_default_linear(width, d_in, gen)
        self.proj = torch_default_linear(d_in + (cond_dim or 0), dim_t, gen)
        self.fourier = RandomFourierEmbedding(fourier_features, gen)
        self.time_mlp = nn.Sequential(torch_default_linear(fourier_features + 1, dim_t, gen), nn.SiLU(),
                                      torch_default_linear(dim_t, dim_t, gen))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if (cond is None) != (self.cond_dim is None):
            raise ValueError("cond must be given exactly when the network was built with cond_dim "
                             f"(cond_dim={self.cond_dim}, cond {'missing' if cond is None else 'given'})")
        if cond is not None:
            x = torch.cat((x, cond), dim=-1)
        t = t.to(x.dtype).expand(x.shape[0]) if t.dim() == 0 else t.to(x.dtype)
        h = self.proj(x) + self.time_mlp(self.fourier(t))
        h = self.final_ln(self.blocks(self.inp(h)))
        return self.out(self.act(h))


# -------------------------------------------------------------------------------------- Decision Diffuser U-Net

class SinusoidalPosEmb(nn.Module):
    """t (B,) -> [sin(t f), cos(t f)] (B, dim), f_k = 10000^(-k / (dim // 2 - 1)), k < dim // 2."""

    def __init__(self, dim: int):
        super().__init__()
        if dim < 4 or dim % 2:
            raise ValueError(f"SinusoidalPosEmb needs an even dim >= 4, got {dim}")
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, device=t.device) * (-math.log(10000) / (half - 1)))
        arg = t.float()[:, None] * freqs[None, :]
        return torch.cat((arg.sin(), arg.cos()), dim=-1)


class Downsample1d(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample1d(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.ConvTranspose1d(channels, channels, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Conv1dBlock(nn.Module):
    """Conv1d (same padding) -> GroupNorm(n_groups) -> Mish on (B, C, H)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, n_groups: int = 8):
        super().__init__()
        if c_out % n_groups:
            raise ValueError(f"Conv1dBlock: {c_out} channels are not divisible into {n_groups} groups")
        self.block = nn.Sequential(nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2),
                                   nn.GroupNorm(n_groups, c_out), nn.Mish())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class ResidualTemporalBlock(nn.Module):
    """conv_block(c_in -> c_out) + Linear(Mish(emb)), conv_block(c_out -> c_out), plus a 1x1-conv residual."""

    def __init__(self, c_in: int, c_out: int, embed_dim: int, kernel_size: int = 5):
        super().__init__()
        self.blocks = nn.ModuleList([Conv1dBlock(c_in, c_out, kernel_size), Conv1dBlock(c_out, c_out, kernel_size)])
        self.time_mlp = nn.Sequential(nn.Mish(), nn.Linear(embed_dim, c_out))
        self.residual_conv = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.blocks[0](x) + self.time_mlp(emb)[:, :, None]
        return self.blocks[1](h) + self.residual_conv(x)


class TemporalUnet(nn.Module):
    """Decision Diffuser's temporal U-Net (eps predictor over (B, H, D) trajectories); see the module docstring."""

    def __init__(self, horizon: int, transition_dim: int, dim: int = 128, dim_mults=(1, 4, 8), kernel_size: int = 5,
                 returns_condition: bool = True, generator: torch.Generator | None = None):
        super().__init__()
        dim_mults = tuple(dim_mults)
        if not dim_mults:
            raise ValueError("TemporalUnet: dim_mults must not be empty")
        factor = 2 ** (len(dim_mults) - 1)
        if horizon < 1 or horizon % factor:
            raise ValueError(f"TemporalUnet: horizon {horizon} must be a positive multiple of "
                             f"2 ** (len(dim_mults) - 1) = {factor} for dim_mults {dim_mults}")
        self.horizon, self.transition_dim, self.returns_condition = horizon, transition_dim, returns_condition
        self.factor = factor
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=_default_generator(generator)).item())
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)  # CPU generator only: CUDA generators are not touched
            self._build(transition_dim, dim, dim_mults, kernel_size)

    def _build(self, transition_dim: int, dim: int, dim_mults: tuple, kernel_size: int) -> None:
        mish = nn.Mish
        self.time_mlp = nn.Sequential(SinusoidalPosEmb(dim), nn.Linear(dim, 4 * dim), mish(),
                                      nn.Linear(4 * dim, dim))
        self.dim = dim
        if self.returns_condition:
            self.returns_mlp = nn.Sequential(nn.Linear(1, dim), mish(), nn.Linear(dim, 4 * dim), mish(),
                                             nn.Linear(4 * dim, dim))
            embed_dim = 2 * dim
        else:
            embed_dim = dim
        dims = [transition_dim] + [dim * m for m in dim_mults]
        in_out = list(zip(dims[:-1], dims[1:]))
        self.downs = nn.ModuleList()
        for level, (c_in, c_out) in enumerate(in_out):
            last = level == len(in_out) - 1
            self.downs.append(nn.ModuleList([
                ResidualTemporalBlock(c_in, c_out, embed_dim, kernel_size),
                ResidualTemporalBlock(c_out, c_out, embed_dim, kernel_size),
                nn.Identity() if last else Downsample1d(c_out)]))
        self.mid_block1 = ResidualTemporalBlock(dims[-1], dims[-1], embed_dim, kernel_size)
        self.mid_block2 = ResidualTemporalBlock(dims[-1], dims[-1], embed_dim, kernel_size)
        self.ups = nn.ModuleList()
        for c_in, c_out in reversed(in_out[1:]):
            self.ups.append(nn.ModuleList([
                ResidualTemporalBlock(2 * c_out, c_in, embed_dim, kernel_size),
                ResidualTemporalBlock(c_in, c_in, embed_dim, kernel_size),
                Upsample1d(c_in)]))
        self.final_conv = nn.Sequential(Conv1dBlock(dim, dim, kernel_size), nn.Conv1d(dim, transition_dim, 1))

    def _embedding(self, t: torch.Tensor, cond: torch.Tensor | None, keep: torch.Tensor | None,
                   batch: int) -> torch.Tensor:
        if t.dim() == 0:
            t = t.expand(batch)
        emb = self.time_mlp(t)
        if not self.returns_condition:
            if cond is not None or keep is not None:
                raise ValueError("TemporalUnet built with returns_condition=False takes no cond or keep")
            return emb
        if cond is None:
            ret = emb.new_zeros(batch, self.dim)
        else:
            ret = self.returns_mlp(cond.to(emb.dtype).reshape(batch, 1))
            if keep is not None:
                ret = ret * keep.to(ret.dtype)[:, None]
        return torch.cat([emb, ret], dim=-1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None,
                keep: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 3 or x.shape[2] != self.transition_dim or x.shape[1] % self.factor:
            raise ValueError(f"TemporalUnet expects x of shape (B, H, {self.transition_dim}) with H a multiple of "
                             f"{self.factor}, got {tuple(x.shape)}")
        emb = self._embedding(torch.as_tensor(t, device=x.device), cond, keep, x.shape[0])
        h = x.transpose(1, 2)
        skips = []
        for block1, block2, down in self.downs:
            h = block2(block1(h, emb), emb)
            skips.append(h)
            h = down(h)
        h = self.mid_block2(self.mid_block1(h, emb), emb)
        for block1, block2, up in self.ups:
            h = torch.cat((h, skips.pop()), dim=1)
            h = up(block2(block1(h, emb), emb))
        return self.final_conv(h).transpose(1, 2)


# ----------------------------------------------------------------------------------- 1-D Diffusion Transformer

def dit_timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """t (B,) -> (B, dim) float32: [cos(t f), sin(t f)] with f_k = max_period^(-k / half), k < half = dim // 2.

    The frequency embedding of DiT's TimestepEmbedder (facebookresearch/DiT `models.py`, after GLIDE); note the
    cosines come first and the exponent divides by half, not half - 1 as in `SinusoidalPosEmb`.  An odd dim gets
    one zero column at the end, as there.  t may be fractional.
    """
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * (-math.log(max_period) / half))
    arg = t.to(torch.float32)[:, None] * freqs[None, :]
    emb = torch.cat((arg.cos(), arg.sin()), dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


def sincos_positions(length: int, dim: int) -> torch.Tensor:
    """The fixed 1-D sin-cos position table (length, dim) float32 that DiT uses per axis (MAE's
    `get_1d_sincos_pos_embed_from_grid`): [sin(p w), cos(p w)] with w_k = 10000^(-k / (dim / 2)), k < dim // 2,
    computed in float64."""
    if dim < 2 or dim % 2:
        raise ValueError(f"sincos_positions needs an even dim >= 2, got {dim}")
    omega = torch.pow(10000.0, -torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    arg = torch.arange(length, dtype=torch.float64)[:, None] * omega[None, :]
    return torch.cat((arg.sin(), arg.cos()), dim=-1).to(torch.float32)


def _modulate(h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: h (B, H, W) * (1 + scale) + shift, with shift and scale (B, W) broadcast over the H positions."""
    return h * (1 + scale[:, None, :]) + shift[:, None, :]


class SequenceSelfAttention(nn.Module):
    """Multi-head self-attention over the H positions of (B, H, W): one fused qkv Linear (with bias, as timm's
    `Attention` that DiT uses), F.scaled_dot_product_attention (softmax(q k^T / sqrt(W / heads)) v), and an output
    Linear.  No mask: every position attends to every other, so without a positional signal the layer is
    permutation-equivariant over positions."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, n, w = h.shape
        q, k, v = self.qkv(h).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, H, W / heads)
        return self.proj(out.transpose(1, 2).reshape(b, n, w))


class DiTBlock1d(nn.Module):
    """One adaLN-Zero transformer block (DiT's `DiTBlock`), on (B, H, W) tokens and a (B, W) condition c.

    SiLU(c) -> Linear(W, 6 W) gives shift, scale and gate for the attention and for the MLP; then
    h + gate_a * Attn(modulate(LN(h), shift_a, scale_a)) and h + gate_m * MLP(modulate(LN(h), shift_m, scale_m)),
    with LayerNorm without affine (eps 1e-6) and MLP = Linear(W, mlp_ratio W) -> GELU(tanh) -> Linear back.  The
    residual is the block's input, as in DiT (CleanDiffuser's `DiT1d` block instead overwrites h with the
    modulated normalised tokens before the attention residual; not followed).
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = SequenceSelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.modulation(c).chunk(6, dim=-1)
        h = h + gate_a[:, None, :] * self.attn(_modulate(self.norm1(h), shift_a, scale_a))
        return h + gate_m[:, None, :] * self.mlp(_modulate(self.norm2(h), shift_m, scale_m))


class SequenceDiT(nn.Module):
    """A 1-D Diffusion Transformer (DiT, Peebles & Xie 2023) over (B, H, x_dim) sequences, channels last.

    The shared backbone of ASTRO's dynamics model and stitch planner.  Its contract extends TemporalUnet's:
    `forward(x, t, cond=None, keep=None, seq_cond=None)` -> (B, H, x_dim), with 1 <= H <= horizon, so it plugs
    into `ddpm_loss` / `ddpm_sample` (which call net(x_t, t, cond, keep)).

    The architecture follows facebookresearch/DiT `models.py` (DiT, DiTBlock, FinalLayer, TimestepEmbedder), with
    the sequence (instead of image patches) tokenisation of CleanDiffuser's `cleandiffuser/nn_diffusion/dit.py::
    DiT1d`:

    - tokens: Linear(x_dim + seq_cond_dim -> width) of [x, seq_cond] per position (seq_cond (B, H, seq_cond_dim)
      is the per-position conditioning, e.g. the planner's masked stitching sequence and feedback; zeros when
      None), plus DiT's fixed sin-cos positional table (`sincos_positions`, a non-trainable buffer of `horizon`
      rows, the first H used);
    - condition c (B, width): DiT's TimestepEmbedder, `dit_timestep_embedding(t, 256)` -> Linear(256, width) ->
      SiLU -> Linear(width, width), plus the global condition's embedding Linear(cond_dim, width) -> SiLU ->
      Linear(width, width) (DiT adds its label embedding the same way), multiplied by `keep` (B,) for
      classifier-free guidance dropout (1 keeps it, 0 drops it); `cond=None` gives a zero condition embedding, the
      same output as keep = 0 (TemporalUnet's convention).  t is used as given: a DDPM step index (int or float,
      as DiT); a continuous noise level such as EDM's ln(sigma) / 4 works but is best scaled by the caller to
      span a few units or more;
    - `depth` adaLN-Zero blocks (`DiTBlock1d`), then the final layer: LayerNorm (no affine) modulated by
      SiLU(c) -> Linear(width, 2 width) (shift, scale), and Linear(width, x_dim).

    Initialisation as DiT's `initialize_weights`: every Linear xavier-uniform with zero bias; the timestep MLP's
    two weights N(0, 0.02^2); the modulation Linear of every block, the final modulation Linear and the output
    Linear all zero (adaLN-Zero), so a fresh net outputs exactly zeros and each block starts as the identity.
    The draws happen inside `torch.random.fork_rng(devices=[])` with the CPU default generator re-seeded from a
    seed drawn from `generator` (seeded 0 when None): the global RNG state is left as it was and equal generators
    give bit-identical weights.

    Named behaviours: a `cond` or `keep` on a net built with cond_dim=0, or a `seq_cond` on one built with
    seq_cond_dim=0, raises ValueError, as does any input of the wrong shape (DiT's fixed-size positional table
    has no counterpart for H > horizon, which also raises).  No dropout (DiT trains without; CleanDiffuser's
    optional attention/MLP dropout is left out).
    """

    FREQUENCY_DIM = 256  # DiT's frequency_embedding_size

    def __init__(self, x_dim: int, horizon: int, width: int = 256, depth: int = 4, heads: int = 4,
                 mlp_ratio: float = 4.0, cond_dim: int = 0, seq_cond_dim: int = 0,
                 generator: torch.Generator | None = None):
        super().__init__()
        for name, value, low in (("x_dim", x_dim, 1), ("horizon", horizon, 1), ("width", width, 2),
                                 ("depth", depth, 1), ("heads", heads, 1), ("cond_dim", cond_dim, 0),
                                 ("seq_cond_dim", seq_cond_dim, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"SequenceDiT: {name} must be an integer >= {low}, got {value!r}")
        if width % 2 or width % heads:
            raise ValueError(f"SequenceDiT: width {width} must be even and divisible by heads={heads}")
        if not mlp_ratio > 0 or int(width * mlp_ratio) < 1:
            raise ValueError(f"SequenceDiT: mlp_ratio must give a positive MLP width, got {mlp_ratio!r}")
        self.x_dim, self.horizon, self.width = x_dim, horizon, width
        self.cond_dim, self.seq_cond_dim = cond_dim, seq_cond_dim
        self.register_buffer("pos_embed", sincos_positions(horizon, width), persistent=False)
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=_default_generator(generator)).item())
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)  # CPU generator only: CUDA generators are not touched
            self._build(depth, heads, mlp_ratio)
            self._initialise()

    def _build(self, depth: int, heads: int, mlp_ratio: float) -> None:
        w = self.width
        self.x_proj = nn.Linear(self.x_dim + self.seq_cond_dim, w)
        self.t_mlp = nn.Sequential(nn.Linear(self.FREQUENCY_DIM, w), nn.SiLU(), nn.Linear(w, w))
        self.cond_mlp = (nn.Sequential(nn.Linear(self.cond_dim, w), nn.SiLU(), nn.Linear(w, w))
                         if self.cond_dim else None)
        self.blocks = nn.ModuleList([DiTBlock1d(w, heads, mlp_ratio) for _ in range(depth)])
        self.final_norm = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(w, 2 * w))
        self.out = nn.Linear(w, self.x_dim)

    @torch.no_grad()
    def _initialise(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.t_mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_mlp[2].weight, std=0.02)
        zeroed = [block.modulation[-1] for block in self.blocks] + [self.final_modulation[-1], self.out]
        for lin in zeroed:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def _condition(self, t, cond: torch.Tensor | None, keep: torch.Tensor | None, batch: int,
                   x: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device)
        if t.dim() == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"SequenceDiT expects t of shape ({batch},) or a scalar, got {tuple(t.shape)}")
        c = self.t_mlp(dit_timestep_embedding(t, self.FREQUENCY_DIM).to(x.dtype))
        if self.cond_mlp is None:
            if cond is not None or keep is not None:
                raise ValueError("SequenceDiT built with cond_dim=0 takes no cond or keep")
            return c
        if cond is None:
            return c  # a zero condition embedding: the same output as keep = 0
        if cond.shape != (batch, self.cond_dim):
            raise ValueError(f"SequenceDiT expects cond of shape ({batch}, {self.cond_dim}), got {tuple(cond.shape)}")
        emb = self.cond_mlp(cond.to(x.dtype))
        if keep is not None:
            if keep.shape != (batch,):
                raise ValueError(f"SequenceDiT expects keep of shape ({batch},), got {tuple(keep.shape)}")
            emb = emb * keep.to(emb.dtype)[:, None]
        return c + emb

    def forward(self, x: torch.Tensor, t, cond: torch.Tensor | None = None, keep: torch.Tensor | None = None,
                seq_cond: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 3 or x.shape[2] != self.x_dim or not 1 <= x.shape[1] <= self.horizon:
            raise ValueError(f"SequenceDiT expects x of shape (B, H, {self.x_dim}) with 1 <= H <= horizon="
                             f"{self.horizon}, got {tuple(x.shape)}")
        batch, length = x.shape[:2]
        if self.seq_cond_dim == 0:
            if seq_cond is not None:
                raise ValueError("SequenceDiT built with seq_cond_dim=0 takes no seq_cond")
            tokens = x
        else:
            if seq_cond is None:
                seq_cond = x.new_zeros(batch, length, self.seq_cond_dim)
            elif seq_cond.shape != (batch, length, self.seq_cond_dim):
                raise ValueError(f"SequenceDiT expects seq_cond of shape ({batch}, {length}, {self.seq_cond_dim}), "
                                 f"got {tuple(seq_cond.shape)}")
            tokens = torch.cat((x, seq_cond.to(x.dtype)), dim=-1)
        c = self._condition(t, cond, keep, batch, x)
        h = self.x_proj(tokens) + self.pos_embed[:length].to(x.dtype)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_modulation(c).chunk(2, dim=-1)
        return self.out(_modulate(self.final_norm(h), shift, scale))
