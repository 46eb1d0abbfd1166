"""Shared PyTorch building blocks for the harness's own trainers (algos/) and augmenters (methods/), each defined
once: `blocks.nn` (MLP, ensemble MLP, ball sampler), `blocks.dynamics` (the Gaussian dynamics ensemble of TATU and
DiffStitch, with TATU's disagreement), `blocks.normalize` (SynthER's z-score and DiffStitch's empirical-CDF
normalisers), `blocks.diffusion` (EDM as SynthER uses it: preconditioning, loss, Karras schedule, stochastic Heun
sampler; DDPM as Decision Diffuser / DiffStitch use it: cosine schedule, masked epsilon loss, ancestral sampler
with inpainting and classifier-free guidance) and `blocks.backbones` (denoisers with one `forward(x, t, cond)`
contract: SynthER's residual MLP, Decision Diffuser's temporal U-Net, which also takes the guidance `keep`).

Torch is imported here, never by `bench/` at import time.
"""
