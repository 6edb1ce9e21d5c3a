"""Tasks that ingest, check and split the CelebA data."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact

from recognize_me.config import PipelineConfig
from recognize_me.console import quiet_environment
from recognize_me.data.celeba_files import CelebaFormatError, CelebaTables, locate_celeba_files
from recognize_me.data.check_report import CheckReport, DataCheckError, raise_on_critical
from recognize_me.data.decoded_cache import DecodedCacheDoesNotFit, decode_splits
from recognize_me.data.inventory import summarize_manifest
from recognize_me.data.splits import make_splits, split_counts, with_identity
from recognize_me.data.validation import check_tables, inventory_tables, load_tables
from recognize_me.fileio import write_with
from recognize_me.runs import (
    create_run_dir,
    data_fingerprint,
    folder_signature,
    package_versions,
    write_run_config,
)

CHECKS_KEY = "data-checks"


@task(name="create-run-folder")
def create_run_folder(config: PipelineConfig) -> Path:
    run_dir = create_run_dir(config.output_root, config.run_name)
    get_run_logger().info("run folder %s", run_dir)
    return run_dir


@task(name="ensure-demo-data")
def ensure_demo_data(config: PipelineConfig) -> None:
    """Generate the synthetic demo data once, when asked to and the folder has no attribute file."""
    if config.generate_demo_data and config.celeba_dir is not None \
            and not (config.celeba_dir / "list_attr_celeba.txt").exists():
        from recognize_me.demo.data import DEMO_IMAGES, generate_demo_data

        get_run_logger().info("generating demo data in %s", config.celeba_dir)
        generate_demo_data(config.celeba_dir, n_images=DEMO_IMAGES)


def _by_source(context, parameters) -> str:
    """Cache key: the source fingerprint (file contents, image folder listing, result-relevant config)."""
    return f"{context.task.name}-{parameters['source']}"


@task(name="fingerprint-sources")
def fingerprint_sources(config: PipelineConfig) -> str:
    """Never cached: it is what tells whether anything changed since the last run."""
    paths = locate_celeba_files(config.celeba_dir, config.attr_file, config.partition_file,
                                config.identity_file, config.images_dir)
    extra = [folder_signature(paths.images_dir)]  # the photo folders key the photo step, not this
    fingerprint = data_fingerprint([paths.attr_file, paths.partition_file, paths.identity_file],
                                   config.data_json(), extra=extra)
    get_run_logger().info("source fingerprint %s", fingerprint[:16])
    return fingerprint


@task(name="save-run-config")
def save_run_config(config: PipelineConfig, run_dir: Path, source: str) -> Path:
    return write_run_config(run_dir, config.to_json(), source, package_versions())


@task(name="ingest-celeba", cache_key_fn=_by_source, persist_result=True)
def ingest_celeba(config: PipelineConfig, source: str) -> CelebaTables:
    try:
        tables = load_tables(config)
    except CelebaFormatError as err:
        create_markdown_artifact(f"# Data checks failed\n\nThe files could not be read:\n\n> {err}\n",
                                 key=CHECKS_KEY, description="data checks: FAILED (unreadable file)")
        raise
    get_run_logger().info("read %d attribute rows (%s encoding) from %s", len(tables.attributes.frame),
                          tables.attributes.encoding, tables.paths.attr_file)
    return tables


@task(name="inventory-images", cache_key_fn=_by_source, persist_result=True)
def inventory(tables: CelebaTables, source: str, cache_dir: Path | None = None) -> pd.DataFrame:
    """The image manifest; with ``cache_dir`` only images that are new or changed since the last inventory of
    the folder are opened."""
    manifest = inventory_tables(tables, cache_dir=cache_dir)
    get_run_logger().info("image inventory (%d images opened, the rest reused): %s",
                          manifest.attrs.get("opened", len(manifest)), summarize_manifest(manifest))
    return manifest


@task(name="check-data", cache_key_fn=_by_source, persist_result=True)
def check_data(config: PipelineConfig, tables: CelebaTables, manifest: pd.DataFrame, run_dir: Path,
               source: str) -> CheckReport:
    report = check_tables(config, tables, manifest, docs_dir=run_dir / "data_docs")
    status = "passed" if report.success else "FAILED"
    create_markdown_artifact(report.to_markdown(), key=CHECKS_KEY, description=f"data checks: {status}")
    if report.data_docs_index is not None:
        create_link_artifact(report.data_docs_index.resolve().as_uri(), link_text="Great Expectations Data Docs",
                             key="data-docs")
    logger = get_run_logger()
    for failure in report.warnings:
        logger.warning("data check warning: %s %s: %s", failure.expectation, failure.column, failure.observed)
    try:
        raise_on_critical(report)
    except DataCheckError:
        logger.error("critical data check failures; no model will be built:\n%s", report.to_markdown())
        raise
    return report


@task(name="split-data")
def split_data(config: PipelineConfig, tables: CelebaTables, manifest: pd.DataFrame, run_dir: Path) -> Path:
    """Seeded splits of the available images, written with their labels to ``splits.csv``."""
    available = manifest.loc[manifest["exists"] & manifest["decodable"], "image_id"]
    splits = make_splits(available, seed=config.seed, fractions=config.split_fractions,
                         partition=tables.partition, identity=tables.identity,
                         use_official=config.use_official_partition, limit=config.limit_images)
    table = with_identity(splits, tables.identity).merge(tables.attributes.frame, on="image_id", how="left")
    path = write_with(run_dir / "splits.csv", lambda p: table.to_csv(p, index=False))
    get_run_logger().info("splits %s -> %s", split_counts(splits), path)
    return path


@task(name="decode-images")
def decode_images(config: PipelineConfig, splits_csv: Path, images_dir: Path, source: str) -> Path | None:
    """Decode every image of ``splits.csv`` once into the shared array cache (reused when it exists).

    None (the models then read the JPEGs) when ``decoded_cache`` is off or the array does not fit.
    """
    logger = get_run_logger()
    if not config.decoded_cache:
        return None
    quiet_environment()  # before decoding imports TensorFlow in the flow's process: no C++ start-up lines
    try:
        limit = None if config.memory_limit_mb is None else config.memory_limit_mb * 2**20
        folder, reused = decode_splits(splits_csv, config.output_root / "cache" / "decoded", source, images_dir,
                                       config.image_size, config.crop, memory_limit=limit)
    except DecodedCacheDoesNotFit as err:
        logger.warning("%s", err)
        return None
    if reused:
        logger.info("decoded images reused: %s", folder)
    else:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        logger.info("decoded images written: %s (%s decoded, %s copied unchanged from an earlier listing)",
                    folder, meta.get("decoded"), meta.get("copied"))
    return folder
