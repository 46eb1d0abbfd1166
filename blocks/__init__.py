"""Shared PyTorch building blocks for the harness's own trainers (algos/) and augmenters (methods/), each defined
once: `blocks.nn` (MLP, ensemble MLP, ball sampler), `blocks.dynamics` (the Gaussian dynamics ensemble of TATU and
DiffStitch, with TATU's disagreement) and `blocks.normalize` (SynthER's z-score and DiffStitch's empirical-CDF
normalisers).  Diffusion schedules and samplers, backbones with one `forward(x, t, cond)` contract and EMA join
them with the generative augmenters.

Torch is imported here, never by `bench/` at import time.
"""
