"""Learning-rate schedules: STG-CMA's (and MAE/CAV-MAE's) linear warm-up then cosine to a floor, and the step
decay of DG-SCT's scripts (torch's ``StepLR`` per epoch)."""

from __future__ import annotations

import math


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int, lr: float, min_lr: float) -> float:
    """Multiplier of a parameter group's peak ``lr`` at optimiser step ``step`` (0-based, per iteration).

    Warm-up: ``lr · step / warmup_steps`` rises linearly from 0. Then
    ``min_lr + (lr − min_lr) · ½ (1 + cos(π · progress))`` falls to ``min_lr`` at ``total_steps``.
    Each group calls it with its own peak (the head's 0.1 × the adapters') and the same absolute ``min_lr``,
    so every group ends at the same floor, as in the reference AVE schedule; a peak below the floor stays
    flat after the warm-up.
    """
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if step < warmup_steps:
        return step / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    min_lr = min(min_lr, lr)
    return (min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))) / lr


def warmup_step_factor(step: int, warmup_steps: int, steps_per_decay: int, gamma: float) -> float:
    """Multiplier at optimiser step ``step``: the linear warm-up from 0 (if any), then ``gamma ** k`` where k counts
    the whole ``steps_per_decay`` periods since step 0 (``StepLR(step_size, gamma)`` stepped every epoch, with
    ``steps_per_decay`` = step_size × steps per epoch)."""
    if steps_per_decay < 1 or not 0 < gamma <= 1:
        raise ValueError(f"need steps_per_decay >= 1 and 0 < gamma <= 1, got {steps_per_decay}, {gamma}")
    if step < warmup_steps:
        return step / warmup_steps
    return gamma ** (step // steps_per_decay)
