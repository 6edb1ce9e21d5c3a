"""Per-stage caching through the train-all flow: each step reruns exactly when what it reads changed,
and a rerun whose training jobs are all cached starts no Dask cluster."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from recognize_me.config import PipelineConfig

pytestmark = pytest.mark.slow


@pytest.fixture
def data(demo_data: Path, tmp_path: Path) -> Path:
    """The attribute files and photo folders copied (so they can be edited); images shared."""
    root = tmp_path / "data"
    root.mkdir()
    for name in ("list_attr_celeba.txt", "list_eval_partition.txt"):
        shutil.copy2(demo_data / name, root / name)
    for folder in ("me", "others"):
        shutil.copytree(demo_data / folder, root / folder)
    return root


@pytest.fixture
def clusters(monkeypatch) -> list[int]:
    """Records the worker count of every Dask cluster the flow asks for."""
    import flows.training

    made: list[int] = []
    original = flows.training.dask_runner

    def recording(address, n_workers):
        made.append(n_workers)
        return original(address, n_workers)

    monkeypatch.setattr(flows.training, "dask_runner", recording)
    return made


def _trained(run_dir: Path) -> dict[str, bool]:
    """Which steps produced files in this run folder (a cache hit writes nothing there)."""
    return {"celeba": (run_dir / "models" / "cnn_scheduled" / "model.keras").is_file(),
            "photos": (run_dir / "photos" / "photos.csv").is_file(),
            **{s: (run_dir / "me" / s / "model.keras").is_file() for s in ("feature_extraction", "fine_tuning")}}


def _flow_runs(*names: str) -> int:
    """How many runs of these flows the test server holds."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        return len(client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=list(names)))))


def test_each_stage_reruns_exactly_when_its_inputs_change(prefect_server, demo_data, data, tmp_path, clusters):
    from flows.train_all import train_all

    config = PipelineConfig(celeba_dir=data, images_dir=demo_data / "img_align_celeba", me_dir=data / "me",
                            others_dir=data / "others", output_root=tmp_path / "out", image_size=(32, 32),
                            epochs=1, batch_size=32, seed=11, models=["cnn_scheduled"], me_epochs=2,
                            me_min_photos=4, n_workers=1)
    everything = {"celeba": True, "photos": True, "feature_extraction": True, "fine_tuning": True}
    nothing = dict.fromkeys(everything, False)

    first = Path(train_all(config=config.model_copy(update={"refresh": True}))).parent
    assert _trained(first) == everything and clusters == [1, 1]

    subflows = _flow_runs("train-models", "train-transfer-models")
    assert subflows >= 2  # the first run's two (other tests share the server)
    unchanged = Path(train_all(config=config)).parent
    assert _trained(unchanged) == nothing
    assert clusters == [1, 1], "a rerun whose jobs are all cached must not start a cluster"
    assert _flow_runs("train-models", "train-transfer-models") == subflows, "nor a training subflow"
    assert (unchanged / "report.html").is_file() and (unchanged / "me_report.html").is_file()

    photo = sorted((data / "me").iterdir())[0]
    ImageOps.mirror(Image.open(photo).convert("RGB")).save(data / "me" / f"mirrored_{photo.stem}.png")
    new_photo = Path(train_all(config=config)).parent
    assert _trained(new_photo) == {**everything, "celeba": False}, "a new 'me' photo retrains the transfers only"
    assert len(clusters) == 3

    attr = data / "list_attr_celeba.txt"
    lines = attr.read_bytes().split(b"\r\n")
    row = lines[3].split()  # the second image: flip its last attribute
    lines[3] = lines[3][:-2] + (b" 1" if row[-1] == b"-1" else b"-1")
    attr.write_bytes(b"\r\n".join(lines))
    new_label = Path(train_all(config=config)).parent
    assert _trained(new_label)["celeba"], "a changed attribute value retrains the CelebA models"
    assert not _trained(new_label)["photos"], "the photo folders did not change"

    refreshed = Path(train_all(config=config.model_copy(update={"refresh": True}))).parent
    assert _trained(refreshed) == everything
