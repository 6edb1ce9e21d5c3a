"""Ingestion + data checks from a config, shared by the ``validate`` command and the flow's tasks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from recognize_me.config import PipelineConfig
from recognize_me.data.celeba_files import CelebaTables, load_celeba_tables, locate_celeba_files
from recognize_me.data.check_report import CheckReport
from recognize_me.data.checks import check_celeba
from recognize_me.data.inventory import inventory_cache_file, inventory_images


def load_tables(config: PipelineConfig) -> CelebaTables:
    paths = locate_celeba_files(config.celeba_dir, config.attr_file, config.partition_file,
                                config.identity_file, config.images_dir)
    return load_celeba_tables(paths, config.attribute_names)


def inventory_tables(tables: CelebaTables, progress: bool = False, cache_dir: Path | None = None) -> pd.DataFrame:
    """The image manifest; with ``cache_dir`` (``inventory_cache_dir``) only new or changed images are opened."""
    images_dir = tables.paths.images_dir
    cache = None if cache_dir is None else inventory_cache_file(cache_dir, images_dir)
    return inventory_images(images_dir, tables.attributes.frame["image_id"], progress=progress, cache=cache)


def inventory_cache_dir(config: PipelineConfig) -> Path:
    return Path(config.output_root) / "cache" / "inventory"


def check_tables(config: PipelineConfig, tables: CelebaTables, manifest: pd.DataFrame,
                 docs_dir: Path | None) -> CheckReport:
    return check_celeba(tables.attributes.frame, tables.partition, manifest,
                        declared_rows=tables.attributes.declared_rows, attribute_names=config.attribute_names,
                        max_absent_fraction=config.max_absent_fraction,
                        max_undecodable_fraction=config.max_undecodable_fraction, docs_dir=docs_dir)


@dataclass(frozen=True)
class Validation:
    tables: CelebaTables
    manifest: pd.DataFrame
    report: CheckReport


def validate(config: PipelineConfig, docs_dir: Path | None = None, progress: bool = False) -> Validation:
    """Read, inventory and check the CelebA files named by ``config`` (CelebaFormatError if unreadable)."""
    tables = load_tables(config)
    manifest = inventory_tables(tables, progress=progress, cache_dir=inventory_cache_dir(config))
    return Validation(tables, manifest, check_tables(config, tables, manifest, docs_dir))
