"""benchmarks/full_scale.py builds its full-size stand-in outside the repo: every listed id present, the
shared images under their own ids, the others links to them; stage times parsed from a flow log."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from celeba_fixtures import image_ids, write_images

from benchmarks.full_scale import build_full_folder, listed_ids, stage_times


def _fake_celeba(root: Path, listed: int, present: int) -> list[str]:
    ids = image_ids(listed)
    rows = "\n".join(f"{i} " + " ".join(["1", "-1"]) for i in ids)
    (root / "list_attr_celeba.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "list_attr_celeba.txt").write_text(f"{listed}\nSmiling Young \n{rows}\n")
    (root / "list_eval_partition.txt").write_text("\n".join(f"{i} 0" for i in ids) + "\n")
    write_images(root / "img_align_celeba", ids[:present], size=(8, 10))
    return ids


def test_the_full_folder_lists_every_id_and_links_the_rest_to_shared_images(tmp_path: Path) -> None:
    ids = _fake_celeba(tmp_path / "shared", listed=11, present=4)
    assert listed_ids(tmp_path / "shared" / "list_attr_celeba.txt") == ids
    target = tmp_path / "full" / "celeba"
    assert build_full_folder(tmp_path / "shared", target) == {"listed": 11, "own": 4, "linked": 7}
    images = target / "img_align_celeba"
    assert sorted(os.listdir(images)) == sorted(ids)
    source = (tmp_path / "shared" / "img_align_celeba").resolve()
    for i in ids[:4]:  # the shared images under their own ids
        assert (images / i).resolve() == source / i
    donors = [(images / i).resolve().name for i in ids[4:]]
    assert set(donors) == set(ids[:4]) and all((images / i).read_bytes() for i in ids)  # round-robin, readable
    assert (target / "list_attr_celeba.txt").read_text() == (tmp_path / "shared" / "list_attr_celeba.txt").read_text()
    # a second build reuses the links
    assert build_full_folder(tmp_path / "shared", target)["listed"] == 11 and len(os.listdir(images)) == 11


def test_the_full_folder_is_never_built_inside_the_repository(tmp_path: Path) -> None:
    from benchmarks.common import REPO

    _fake_celeba(tmp_path / "shared", listed=2, present=1)
    with pytest.raises(ValueError, match="inside the repository"):
        build_full_folder(tmp_path / "shared", REPO / "artifacts" / "full-size")


def test_stage_times_from_a_flow_log() -> None:
    log = ("11:00:00.000 | INFO    | Task run 'ingest-celeba-0ab' - Finished in state Completed()\n"
           "11:01:52.500 | INFO    | Task run 'inventory-images-1cd' - Finished in state Completed()\n"
           "noise\n"
           "11:51:52.500 | INFO    | Task run 'train-resnet' - Finished in state Completed()\n")
    assert stage_times(log) == [("ingest-celeba", 0.0), ("inventory-images", 112.5), ("train-resnet", 3000.0)]
