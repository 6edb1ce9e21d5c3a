"""Reruns after a change of the listing open only what changed: the image inventory (data.inventory with a
cache file) and the decoded array (data.decoded_cache copies unchanged rows from an earlier folder)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from celeba_fixtures import image_ids, write_images

from recognize_me.data import inventory as inventory_module
from recognize_me.data.inventory import inventory_cache_file, inventory_images


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the images the inventory opens."""
    names: list[str] = []
    inspect = inventory_module.inspect_image

    def counting(path: Path):
        names.append(Path(path).name)
        return inspect(path)

    monkeypatch.setattr(inventory_module, "inspect_image", counting)
    return names


def test_inventory_rerun_opens_only_added_or_changed_images(tmp_path: Path, opened: list[str]) -> None:
    ids = image_ids(12)
    folder = tmp_path / "img"
    write_images(folder, ids[:10], size=(20, 24))
    cache = inventory_cache_file(tmp_path / "cache", folder)
    listed = [*ids[:11], "../etc.jpg"]  # one listed but absent, one unsafe
    first = inventory_images(folder, listed, workers=2, cache=cache)
    assert sorted(opened) == sorted(ids[:10]) and first.attrs["opened"] == 10 and cache.is_file()

    opened.clear()
    write_images(folder, [ids[10]], size=(20, 24))  # the absent one arrives
    second = inventory_images(folder, listed, workers=2, cache=cache)
    assert opened == [ids[10]] and second.attrs["opened"] == 1
    assert second.set_index("image_id").loc[ids[10], "decodable"]

    opened.clear()
    (folder / ids[3]).write_bytes(b"not a jpeg any more")  # replaced: size (and mtime) changed
    third = inventory_images(folder, [*listed, ids[11]], workers=2, cache=cache)
    assert opened == [ids[3]]
    fresh = inventory_images(folder, [*listed, ids[11]], workers=2)  # no cache: everything opened
    assert third.equals(fresh)
    row = third.set_index("image_id").loc[ids[3]]
    assert row["exists"] and not row["decodable"] and row["error"]

    opened.clear()
    assert inventory_images(folder, listed, workers=2, cache=cache).attrs["opened"] == 0 and opened == []


def test_a_damaged_inventory_cache_costs_a_full_inventory_not_a_wrong_row(tmp_path: Path, opened: list[str]) -> None:
    ids = image_ids(3)
    write_images(tmp_path / "img", ids, size=(8, 8))
    cache = tmp_path / "inventory.csv"
    cache.write_text("image_id,garbage\n1,2\n")
    frame = inventory_images(tmp_path / "img", ids, workers=1, cache=cache)
    assert sorted(opened) == sorted(ids) and frame["decodable"].all()


def test_decoded_cache_decodes_only_the_added_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tensorflow")
    import json

    from recognize_me.data.decoded_cache import DecodedImages, ensure_decoded

    ids = image_ids(9)
    folder = tmp_path / "img"
    write_images(folder, ids, size=(20, 24))
    first, reused = ensure_decoded(tmp_path / "cache", "fp1", ids[:8], folder, (8, 8), "none")
    assert not reused and json.loads((first / "meta.json").read_text())["decoded"] == 8

    # one image added, one replaced (new content, newer mtime): those two are decoded, six rows copied
    write_images(folder, [ids[2]], size=(24, 20))
    os.utime(folder / ids[2], ns=(1, 2))
    second, reused = ensure_decoded(tmp_path / "cache", "fp2", ids, folder, (8, 8), "none")
    meta = json.loads((second / "meta.json").read_text())
    assert not reused and second != first and (meta["decoded"], meta["copied"]) == (2, 7)
    fresh, _ = ensure_decoded(tmp_path / "fresh", "fp2", ids, folder, (8, 8), "none")
    np.testing.assert_array_equal(DecodedImages.open(second).images, DecodedImages.open(fresh).images)
    assert DecodedImages.open(second).ids == tuple(ids)
