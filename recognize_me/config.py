"""The one typed configuration: it is the ``train-all`` flow's parameter set and the CLI's flags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from recognize_me.catalog import (
    FEATURES,
    MODELS,
    STRATEGIES,
    FeatureChoice,
    ModelChoice,
    StrategyChoice,
    choices_help,
)
from recognize_me.data.attributes import resolve_attributes


class PipelineConfig(BaseModel):
    """Everything a run depends on. Unknown fields and mis-typed values are rejected by name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- data -------------------------------------------------------------------------------
    celeba_dir: Path | None = Field(
        None, description="Folder with list_attr_celeba.(txt|csv), list_eval_partition.(txt|csv), "
        "optional identity_CelebA.txt and img_align_celeba/.")
    attr_file: Path | None = Field(None, description="Attribute file; default: found in celeba_dir.")
    partition_file: Path | None = Field(None, description="Partition file; default: found in celeba_dir.")
    identity_file: Path | None = Field(None, description="Identity file; default: found in celeba_dir.")
    images_dir: Path | None = Field(None, description="Image folder; default: celeba_dir/img_align_celeba.")
    me_dir: Path | None = Field(None, description="Folder of the user's own photos.")
    others_dir: Path | None = Field(None, description="Folder of photos of other people (optional).")
    generate_demo_data: bool = Field(False, description="Write synthetic demo data into celeba_dir first "
                                     "when it holds no attribute file (the train-all/demo deployment).")
    attributes: str | list[str] = Field("all40", description="Preset (all40, reliable32) or attribute names.")
    limit_images: int | None = Field(None, ge=1, description="Use at most this many available images "
                                     "(seeded sample, kept per split); None = all.")
    max_absent_fraction: float = Field(0.95, ge=0, le=1, description="Listed images absent from disk "
                                       "above this fraction fail the data checks.")
    max_undecodable_fraction: float = Field(0.001, ge=0, le=1, description="Present but undecodable "
                                            "images above this fraction fail the data checks.")

    # --- splits and input -------------------------------------------------------------------
    seed: int = Field(42, description="Base seed: splits, shuffling, initialisation.")
    use_official_partition: bool = True
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    image_size: tuple[int, int] = Field((64, 64), description="(height, width) fed to the models.")
    crop: Literal["none", "square", "face"] = Field(
        "square", description="none: whole 178x218 frame; square: central 178x178; face: the 148x148 "
        "face box used by most CelebA papers.")
    augment_flip: bool = True

    # --- training ---------------------------------------------------------------------------
    models: list[ModelChoice] = Field(default_factory=lambda: ["baseline_cnn"], description="CelebA models to "
                                      f"train side by side ({', '.join(MODELS.names())}; see recognize_me/catalog.py).")
    epochs: int = Field(5, ge=1, description="Upper bound of each model's training in epochs (passes over the "
                        "train split). Training runs in sub-epochs of optimizer steps: whole epochs without a time "
                        "budget, about 1/8 of the model's share with one (recognize_me/training/budget.py).")
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(1e-3, gt=0, description="Peak learning rate (reached after the warm-up of "
                                 "the scheduled models; the fixed rate of baseline_cnn).")
    weight_decay: float = Field(0.01, ge=0, description="Decoupled weight decay: > 0 trains with AdamW (batch-norm "
                                "and bias variables not decayed), 0 with Adam.")
    vgg_weights: str = Field("none", description="imagenet, none, or a path to a local weights file.")
    precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"] = Field(
        "auto", description="Training precision (Keras mixed-precision policy; output layers stay float32). "
        "auto: mixed_float16 on a GPU, mixed_bfloat16 on a CPU with AMX/AVX512_BF16, else float32.")
    time_budget_min: float | None = Field(
        None, gt=0, description="Minutes for the whole CelebA training stage (all models, evaluation "
        "included) on n_workers processes; each model plans its epochs from its measured epoch time and "
        "keeps its best epoch. epochs stays the upper bound. None: every model trains `epochs` epochs.")
    decoded_cache: bool = Field(True, description="Decode, crop and resize every image once into a "
                                "memory-mapped array under output_root/cache/decoded, shared by all models "
                                "and reruns (falls back to reading the JPEGs when it does not fit).")
    memory_limit_mb: int | None = Field(None, ge=1, description="Memory (MiB) the decoded array may take; None: "
                                        "the memory available when decoding. A larger array is not built: "
                                        "training then streams the JPEGs (nothing cached), said in one log line.")
    dask_address: str | None = Field(None, description="Existing Dask scheduler; None = local cluster.")
    n_workers: int | None = Field(None, ge=1, description="Local training processes; default min(models, cores).")

    # --- recognize me (transfer from the CelebA model) ---------------------------------------------
    me_base_model: ModelChoice = Field("resnet", description="CelebA model to transfer from (the best "
                                       "completed one when this one was not trained or did not complete).")
    me_epochs: int = Field(8, ge=2, description="Transfer epochs (fine tuning: half head-only, half unfrozen).")
    me_min_photos: int = Field(10, ge=1, description="Fewer usable 'me' photos fail the photo checks.")
    me_split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    celeba_others: int = Field(300, ge=0, description="'Other' photos sampled from CelebA's train split, beside "
                               "others_dir's (a few people alone teach 'not them', not 'not me'); 0 = none, "
                               "only with others_dir.")
    me_strategies: list[StrategyChoice] = Field(
        default_factory=lambda: [s.name for s in STRATEGIES if s.default],
        description="'Is this me?' strategies trained side by side (one that cannot run here is skipped with a "
        f"message; default: all but the opt-in distilled). {choices_help(STRATEGIES)}.")
    me_features: FeatureChoice = Field(
        "auto", description="The layer(s) feature_extraction reads (L2-normalised, flip-averaged, into a logistic "
        f"regression). {choices_help(FEATURES)}.")
    me_fill: Literal["face_box", "replicate", "reflect"] = Field(
        "face_box", description="How aligned photos fill CelebA's 178x218 frame: face_box keeps only the "
        "template's face box and replicates its border (every photo alike); replicate/reflect fill only "
        "what lies outside the photo.")
    me_student_images: int = Field(20000, ge=2, description="distilled: at most this many CelebA train and val "
                                   "images (seeded sample) embedded by the teacher and learned by the student.")
    me_student_epochs: int = Field(28, ge=1, description="distilled: the student's training epochs (28 chosen on "
                                   "CelebA validation agreement with the teacher; benchmarks/teacher_student.py).")
    me_student_model: Path | None = Field(None, description="distilled: an already trained student's model.keras "
                                          "(config.json beside it; e.g. <run>/student/model.keras) instead of "
                                          "training one. The student depends on CelebA only, not on your photos.")
    me_val_strangers: int = Field(100, ge=0, description="CelebA validation-split photos (people in no training "
                                  "split) added to the 'me' validation split as others, so the threshold and C are "
                                  "chosen against people the model never saw; 0 = none.")
    me_strangers: int = Field(100, ge=0, description="CelebA test-partition photos (people in no training "
                              "split) scored as 'strangers' against the test 'me' photos; 0 = none.")

    # --- output ------------------------------------------------------------------------------
    output_root: Path = Path("artifacts")
    run_name: str | None = Field(None, description="Run folder name; default: timestamp + short id.")
    refresh: bool = Field(False, description="Ignore cached results and recompute.")
    fault_injection: dict[str, int] = Field(default_factory=dict, description="Testing only: model name -> "
                                            "epoch (0-based) at whose start that model's process exits hard.")

    @field_validator("split_fractions", "me_split_fractions")
    @classmethod
    def _fractions_sum_to_one(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f < 0 for f in v) or abs(sum(v) - 1.0) > 1e-6:
            raise ValueError(f"split_fractions must be three non-negative numbers summing to 1, got {v}")
        return v

    @field_validator("attributes")
    @classmethod
    def _known_attributes(cls, v: str | list[str]) -> str | list[str]:
        resolve_attributes(v)
        return v

    @field_validator("models")
    @classmethod
    def _models_unique(cls, v: list[str]) -> list[str]:
        if not v or len(set(v)) != len(v):
            raise ValueError(f"models must be a non-empty list without repeats, got {v}")
        return v

    @field_validator("run_name")
    @classmethod
    def _safe_run_name(cls, v: str | None) -> str | None:
        if v is not None and (not v or "/" in v or "\\" in v or v in {".", ".."}):
            raise ValueError(f"run_name must be a plain folder name, got {v!r}")
        return v

    @model_validator(mode="after")
    def _has_attribute_source(self) -> PipelineConfig:
        if self.celeba_dir is None and self.attr_file is None:
            raise ValueError("give celeba_dir or attr_file")
        if self.me_dir is not None and self.others_dir is None and self.celeba_others == 0:
            raise ValueError("no 'other' photos: give others_dir, or celeba_others >= 1")
        return self

    # --- derived -------------------------------------------------------------------------------
    @property
    def attribute_names(self) -> tuple[str, ...]:
        return resolve_attributes(self.attributes)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True)

    #: Fields that decide what is read and checked (the ingestion caches' key).
    DATA_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"celeba_dir", "attr_file", "partition_file", "identity_file", "images_dir",
         "attributes", "max_absent_fraction", "max_undecodable_fraction"})

    def data_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", include=set(self.DATA_FIELDS)), sort_keys=True)
