"""Tasks of the "is this me?" stage: photos in and checked, transfer report, champion."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from recognize_me.config import PipelineConfig
from recognize_me.console import quiet_environment
from recognize_me.data.check_report import CheckReport, DataCheckError, raise_on_critical
from recognize_me.data.checks import check_photos
from recognize_me.me.align import FaceAligner
from recognize_me.me.dlib_resnet import convert_dlib_resnet
from recognize_me.me.face_choice import CHOSEN_DIR, base_features, choice_markdown, resolve_photo_faces
from recognize_me.me.photo_set import (
    PHOTO_TABLE_VERSION,
    PhotoSources,
    photo_counts,
    photo_manifest,
    prepare_photos,
    split_membership_digest,
)
from recognize_me.me.plan import student_settings
from recognize_me.me.report import build_me_report
from recognize_me.me.student import distill_student
from recognize_me.training.cache_keys import tree_signature

PHOTO_CHECKS_KEY = "photo-checks"


def _photo_folders_key(context, parameters) -> str:
    """The photo folders (every file, sub-folders included), the settings that shape the photo set, the
    photo table's layout version and, when photos are sampled from CelebA, which image is in which split (not
    the attribute values: a relabelled image does not change the photo set)."""
    config: PipelineConfig = parameters["config"]
    parts = [PHOTO_TABLE_VERSION, tree_signature(config.me_dir), tree_signature(config.others_dir), str(config.seed),
             str(config.me_split_fractions), str(config.me_min_photos), str(config.celeba_others),
             str(config.me_strangers), str(config.me_val_strangers)]
    if config.celeba_others or config.me_strangers or config.me_val_strangers:
        parts.append(split_membership_digest(Path(parameters["splits_csv"])))
    return "photos-" + hashlib.sha256("\0".join(parts).encode()).hexdigest()


@task(name="prepare-me-photos", cache_key_fn=_photo_folders_key, persist_result=True)
def prepare_me_photos(config: PipelineConfig, run_dir: Path, splits_csv: Path, images_dir: Path) -> Path:
    """Scan, align, split and check the user's photos; "others" include a CelebA train sample, strangers
    come from CelebA's test split and validation strangers from its validation split (people in no
    training split)."""
    quiet_environment()  # before the face detector imports TensorFlow in the flow's process
    ids = pd.read_csv(splits_csv, usecols=["image_id", "split"], dtype={"image_id": str})
    celeba, val_strangers, strangers = ([Path(images_dir) / i for i in ids.loc[ids["split"] == split, "image_id"]]
                                        for split in ("train", "val", "test"))
    sources = PhotoSources(config.me_dir, config.others_dir, celeba_images=celeba,
                           celeba_others=config.celeba_others, stranger_images=strangers,
                           n_strangers=config.me_strangers, val_stranger_images=val_strangers,
                           n_val_strangers=config.me_val_strangers)
    photos = prepare_photos(sources, Path(run_dir) / "photos", seed=config.seed,
                            fractions=config.me_split_fractions, cropper=FaceAligner(fill=config.me_fill))
    report = check_photos(photos.to_manifest(), min_me=config.me_min_photos,
                          docs_dir=Path(run_dir) / "data_docs")
    rejected = "\n".join(f"- `{r.path.name}`: {r.reason}" for r in photos.rejected[:20]) or "none"
    create_markdown_artifact(f"{report.to_markdown()}\n\n## Rejected photos ({len(photos.rejected)})\n\n"
                             f"{rejected}\n\n## Photos per split\n\n{photos.counts()}\n\n## Face found by\n\n"
                             f"{photos.table['detector'].value_counts().to_dict()}\n\n## Multi-face 'me' photos\n\n"
                             f"{report.stats.get('me_photos_face_not_chosen', 0)}: the face is chosen once the "
                             f"CelebA base model is trained (task choose-me-faces)\n",
                             key=PHOTO_CHECKS_KEY, description="photo checks")
    logger = get_run_logger()
    logger.info("photos per split %s; %d rejected", photos.counts(), len(photos.rejected))
    _stop_on_critical(report, "no model will be built")
    return Path(run_dir) / "photos" / "photos.csv"


def _stop_on_critical(report: CheckReport, consequence: str) -> None:
    """Log the critical photo check failures and raise ``DataCheckError`` when there are any."""
    try:
        raise_on_critical(report)
    except DataCheckError:
        get_run_logger().error("critical photo check failures; %s:\n%s", consequence, report.to_markdown())
        raise


@task(name="choose-me-faces")
def choose_me_faces(config: PipelineConfig, run_dir: Path, photos_csv: Path, base_model: Path) -> Path:
    """Take the user's face in each multi-face "me" photo by agreement with the single-face ones, in the
    features of ``base_model`` (the face-recognition base when the run has one, else the CelebA model;
    ``face_choice``); write ``<run>/photos_chosen/photos.csv`` and, when there were
    such photos, check the result again and publish it as the photo-checks artifact."""
    quiet_environment()  # before the base model's features import TensorFlow in the flow's process
    out, choice = resolve_photo_faces(photos_csv, Path(run_dir) / CHOSEN_DIR, base_features(base_model))
    logger = get_run_logger()
    if choice.choices.empty:
        return out
    logger.info("%s", choice.summary())
    report = check_photos(photo_manifest(choice.table), min_me=config.me_min_photos,
                          docs_dir=Path(run_dir) / "data_docs")
    create_markdown_artifact(f"{report.to_markdown()}\n\n{choice_markdown(choice)}\n## Photos per split\n\n"
                             f"{photo_counts(choice.table)}\n", key=PHOTO_CHECKS_KEY,
                             description="photo checks, multi-face 'me' photos resolved")
    _stop_on_critical(report, "after choosing the faces of multi-face 'me' photos, no transfer will run")
    return out


def _student_key(context, parameters) -> str:
    """The data fingerprint and every setting that shapes the student."""
    config: PipelineConfig = parameters["config"]
    parts = [parameters["data_fingerprint"], str(student_settings(config)), str(config.me_student_images),
             split_membership_digest(Path(parameters["splits_csv"]))]
    return "student-" + hashlib.sha256("\0".join(parts).encode()).hexdigest()


@task(name="distill-student", cache_key_fn=_student_key, persist_result=True)
def train_distilled_student(config: PipelineConfig, run_dir: Path, splits_csv: Path, images_dir: Path,
                            data_fingerprint: str) -> Path:
    """The teacher's embeddings of the run's CelebA train and val images, then the student that learns them
    (``me.student``): the base of the ``distilled`` strategy. Returns its model.keras."""
    quiet_environment()
    out, logger = Path(run_dir) / "student", get_run_logger()

    def progress(epoch: int, epochs: int, logs: dict) -> None:
        logger.info("student epoch %d/%d: %s", epoch, epochs, ", ".join(f"{k}={v:.4g}" for k, v in logs.items()))

    metrics = distill_student(splits_csv, images_dir, out, Path(config.output_root) / "cache" / "teacher",
                              student_settings(config), config.me_student_images,
                              lineage={"data_fingerprint": data_fingerprint, "seed": config.seed}, on_epoch=progress)
    logger.info("distilled student: %s", metrics)
    return out / "model.keras"


@task(name="convert-dlib-resnet")
def convert_dlib_base(config: PipelineConfig) -> Path:
    """dlib's face-recognition ResNet as a Keras base (``me.dlib_resnet``), converted once per weights file
    into the output root's cache: the base of the ``dlib_resnet`` strategy. Returns its model.keras."""
    quiet_environment()
    path = convert_dlib_resnet(Path(config.output_root) / "cache")
    get_run_logger().info("dlib ResNet (Keras): %s", path)
    return path


@task(name="publish-me-report")
def publish_me_report(run_dir: Path, results: list[dict[str, Any]]) -> Path:
    report = build_me_report(run_dir, results)
    create_table_artifact(report.rows, key="recognize-me-metrics",
                          description="is this me? every strategy side by side (test split, strangers)")
    create_link_artifact(report.html_path.resolve().as_uri(), link_text="me_report.html", key="me-report")
    get_run_logger().info("recognize-me report written to %s", report.html_path)
    return report.html_path
