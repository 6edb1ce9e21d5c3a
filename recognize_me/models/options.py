"""The knobs every model builder takes (its own module: `builders` and `vgg` both need it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BuildOptions:
    """Knobs shared by all builders."""

    learning_rate: float = 1e-3
    vgg_weights: str = "none"  # "imagenet", "none", or a path to a local .h5 / .weights.h5 file
    dropout: float = 0.3
    seed: int = 0
    weight_decay: float = 0.0  # > 0: AdamW with this decoupled decay (see losses.make_optimizer)
    warmup_epochs: float = 1.0  # warm-up of the cosine schedule (scheduled rungs)
    embedding_dim: int = 128  # identity-aware rung: size of the "embedding" layer
