"""Plan the "is this me?" transfer jobs from the CelebA training outcomes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recognize_me.catalog import STRATEGIES
from recognize_me.config import PipelineConfig
from recognize_me.me.job import TransferJob
from recognize_me.me.student import StudentSettings


def pick_base_model(outcomes: list[dict[str, Any]], preferred: str, run_dir: Path) -> Path | None:
    """``preferred``'s model.keras when it completed, else the best completed model's; None if none did."""
    from recognize_me.evaluation.report import model_folder

    done = {o["model"]: o for o in outcomes if o.get("status") == "completed"}
    if not done:
        return None
    chosen = done.get(preferred) or max(done.values(), key=lambda o: o["mean_accuracy"])
    return model_folder(run_dir, chosen) / "model.keras"


def skipped_strategies(config: PipelineConfig) -> list[dict[str, Any]]:
    """Rows (strategy, status "skipped", error = why) for configured strategies that cannot run here."""
    def why_missing(name: str) -> str | None:
        entry = STRATEGIES.get(name)
        if entry.base == "student" and config.me_student_model is not None:
            return None  # a given student needs no teacher: nothing to distil
        return entry.why_missing()

    why = {name: why_missing(name) for name in config.me_strategies}
    return [{"strategy": name, "status": "skipped", "error": error} for name, error in why.items() if error]


def plan_transfer_jobs(config: PipelineConfig, run_dir: Path, photos_csv: Path, base_model: Path,
                       threads: int, skip: tuple[str, ...] = (), student: Path | None = None,
                       dlib: Path | None = None) -> list[TransferJob]:
    """One job per ``config.me_strategies`` (except ``skip``) into ``<run>/me/<strategy>/``: from the CelebA
    model, or, for the strategies whose catalog ``base`` is "student" / "dlib", from ``student`` / ``dlib``
    (the converted dlib ResNet), with the input size and crop saved beside that model (skipped without it)."""
    from recognize_me.me.transfer import base_input_settings

    other_bases = {"student": student, "dlib": dlib}
    jobs = []
    for strategy in config.me_strategies:
        kind = STRATEGIES.get(strategy).base
        if strategy in skip or (kind in other_bases and other_bases[kind] is None):
            continue
        other = other_bases.get(kind)
        base, (size, crop) = ((other, base_input_settings(other)) if other is not None
                              else (base_model, (config.image_size, config.crop)))
        jobs.append(TransferJob(strategy=strategy, base_model_path=Path(base), photos_csv=Path(photos_csv),
                                out_dir=Path(run_dir) / "me" / strategy, image_size=size, crop=crop,
                                epochs=config.me_epochs, learning_rate=config.learning_rate, seed=config.seed + 5000,
                                threads=threads, features=config.me_features))
    return jobs


def student_settings(config: PipelineConfig) -> StudentSettings:
    """The distilled student's recipe for this run: its epochs and seed from the config."""
    return StudentSettings(epochs=config.me_student_epochs, seed=config.seed + 6000)


def wants_base(config: PipelineConfig, skip: tuple[str, ...], kind: str) -> bool:
    """Whether a configured, runnable strategy transfers from the base ``kind`` ("student", "dlib", ...)."""
    return any(STRATEGIES.get(s).base == kind for s in config.me_strategies if s not in skip)
