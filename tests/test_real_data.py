"""The real CelebA files in ../shared/data (skipped when absent): all 202,599 rows, 20,000 images."""

from __future__ import annotations

import pytest

from recognize_me.cli import main

pytestmark = [pytest.mark.real_data, pytest.mark.slow]


def test_validate_real_celeba(shared_data, capsys, tmp_path):
    code = main(["validate", "--celeba", str(shared_data / "celeba"), "--docs-dir", str(tmp_path / "docs")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "202599 listed images: 20000 available, 182599 absent" in out
    assert (tmp_path / "docs" / "index.html").is_file()


def test_real_splits_follow_the_official_partition(shared_data):
    from recognize_me.data.celeba_files import load_celeba_tables, locate_celeba_files
    from recognize_me.data.inventory import inventory_images
    from recognize_me.data.splits import make_splits, split_counts

    tables = load_celeba_tables(locate_celeba_files(shared_data / "celeba"), ("Male", "Smiling"))
    assert tables.attributes.declared_rows == len(tables.attributes.frame) == 202_599
    ids = sorted(p.name for p in (shared_data / "celeba" / "img_align_celeba").iterdir())
    manifest = inventory_images(tables.paths.images_dir, ids[:500])
    assert manifest["decodable"].all() and set(manifest["width"]) == {178}
    splits = make_splits(ids, seed=0, partition=tables.partition)
    assert split_counts(splits) == {"train": 16_000, "val": 2_000, "test": 2_000}
