"""One "is this me?" transfer job: everything it needs as plain values and file paths, so it runs in any
process that sees the same files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from recognize_me.catalog import FEATURES, STRATEGIES

TransferHook = Callable[[str, int, int, dict], None]  # (strategy, epoch 1-based, epochs, logs)


@dataclass(frozen=True)
class TransferJob:
    strategy: str  # a name in recognize_me.catalog.STRATEGIES
    base_model_path: Path  # a CelebA model's model.keras
    photos_csv: Path  # written by me.photo_set.prepare_photos
    out_dir: Path
    image_size: tuple[int, int]  # (height, width), as the base model was trained
    crop: str  # as the base model was trained ("none", "square", "face")
    epochs: int = 8
    batch_size: int = 16
    learning_rate: float = 1e-3
    seed: int = 0
    threads: int = 1
    features: str = "auto"  # feature_extraction: which base layer(s) to read (recognize_me.catalog.FEATURES)

    def __post_init__(self) -> None:
        entry = STRATEGIES.get(self.strategy)  # ValueError naming the valid ones
        FEATURES.get(self.features)
        if self.epochs < entry.min_epochs:
            raise ValueError(f"{self.strategy} needs epochs >= {entry.min_epochs}, got {self.epochs}")
        if self.batch_size < 1 or self.learning_rate <= 0 or self.threads < 1:
            raise ValueError("batch_size and threads must be >= 1 and learning_rate > 0")
