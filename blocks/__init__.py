"""Shared PyTorch building blocks for the harness's own trainers (algos/) and augmenters (methods/), each defined
once: today `blocks.nn` (MLP, ensemble MLP, ball sampler).  Diffusion schedules and samplers, backbones with one
`forward(x, t, cond)` contract, dynamics ensembles, normalisers and EMA join them with the generative augmenters.

Torch is imported here, never by `bench/` at import time.
"""
