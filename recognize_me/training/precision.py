"""Numeric precision of training: Keras' mixed-precision policy, chosen per device.

``auto``: ``mixed_float16`` when TensorFlow sees a GPU, ``mixed_bfloat16`` on a CPU with bfloat16 matrix
units (AMX_BF16 or AVX512_BF16, where oneDNN runs bf16 convolutions natively), else ``float32``.
The builders keep their output layers in float32 (``dtype="float32"``), so scores and losses stay float32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

Precision = Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"]
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def resolve_precision(precision: str, gpus: int | None = None, flags: set[str] | None = None) -> str:
    """The Keras policy name for ``precision`` on this machine (``auto`` decided by device)."""
    if precision != "auto":
        if precision not in ("float32", "mixed_bfloat16", "mixed_float16"):
            raise ValueError(f"precision {precision!r}: use auto, float32, mixed_bfloat16 or mixed_float16")
        return precision
    if gpus is None:
        import tensorflow as tf

        gpus = len(tf.config.list_physical_devices("GPU"))
    if gpus:
        return "mixed_float16"
    flags = cpu_flags() if flags is None else flags
    return "mixed_bfloat16" if flags & set(BF16_CPU_FLAGS) else "float32"


def apply_precision(precision: str) -> str:
    """Set Keras' global dtype policy (process-wide: call in the training process before building)."""
    import keras

    name = resolve_precision(precision)
    keras.mixed_precision.set_global_policy(name)
    return name
