"""Which visual block works with which audio block when the two encoders differ in depth."""

from __future__ import annotations

from collections.abc import Sequence


def pair_blocks(visual_depths: Sequence[int], audio_depths: Sequence[int]) -> list[tuple[int, int]]:
    """(visual block, audio block) index pairs, each index counted over all blocks of its encoder.

    Stages are zipped when both encoders have as many stages (Swin-V2 and HTS-AT: four). Within a stage pair
    of n_v visual and n_a audio blocks, block k of the shallower side pairs with block ⌊(k + 1)·n_l / n_s⌋ − 1
    of the deeper side (n_s ≤ n_l the two depths): the official rule, audio block k with visual block 3k + 2
    in stage 3 of Swin-V2-L (18) against HTS-AT (6); equal depths pair block for block. The deeper side's
    other blocks run unadapted; every stage's last blocks are paired.

    Encoders with different stage counts (a one-stage ViT against a four-stage Swin) have no stages to zip:
    the same rule runs over the two flattened block lists, so ViT-B's 12 blocks against HTS-AT's 2 + 2 + 6 + 2
    pair one to one, and a 24-block ViT-L pairs its odd blocks with them.

    Pairs come out in increasing order of both indices, the order the blocks run in.
    """
    if any(d < 0 for d in (*visual_depths, *audio_depths)):
        raise ValueError(f"depths must be ≥ 0, got {visual_depths} and {audio_depths}")
    if len(visual_depths) != len(audio_depths):
        visual_depths, audio_depths = [sum(visual_depths)], [sum(audio_depths)]
    pairs: list[tuple[int, int]] = []
    visual_start = audio_start = 0
    for n_visual, n_audio in zip(visual_depths, audio_depths):
        shallow, deep = sorted((n_visual, n_audio))
        for k in range(shallow):
            partner = (k + 1) * deep // shallow - 1
            visual, audio = (partner, k) if n_visual >= n_audio else (k, partner)
            pairs.append((visual_start + visual, audio_start + audio))
        visual_start += n_visual
        audio_start += n_audio
    return pairs
