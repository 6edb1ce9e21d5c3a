"""Per-stage caching through the train-all flow: each step reruns exactly when what it reads changed,
a rerun whose training jobs are all cached starts no Dask cluster, and an unchanged rerun keeps the champion.

The first run is the session's ``me_flow_run`` (conftest.py, with refresh); this test reruns its config
after edits to its copy of the data.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageOps

pytestmark = pytest.mark.flow


@pytest.fixture
def clusters(me_flow_run, monkeypatch) -> list[int]:
    """The worker count of every Dask cluster asked for: ``me_flow_run``'s, then this test's runs'."""
    import flows.training

    made = list(me_flow_run.clusters)
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


def test_each_stage_reruns_exactly_when_its_inputs_change(me_flow_run, clusters):
    from flows.train_all import train_all
    from recognize_me.registry import ModelRegistry

    data, first = me_flow_run.data, me_flow_run.run_dir
    # the reruns train the two strategies _trained looks at (from_scratch's cache works the same way)
    config = me_flow_run.config.model_copy(update={"me_strategies": ["feature_extraction", "fine_tuning"]})
    everything = {"celeba": True, "photos": True, "feature_extraction": True, "fine_tuning": True}
    nothing = dict.fromkeys(everything, False)

    assert _trained(first) == everything and clusters == [1, 2]  # one CelebA model; the transfers on two

    subflows = _flow_runs("train-models", "train-transfer-models")
    assert subflows >= 2  # the first run's two (other tests share the server)
    unchanged = Path(train_all(config=config)).parent
    assert unchanged != first
    assert _trained(unchanged) == nothing and not (unchanged / "models").exists(), \
        "an unchanged rerun must not train again"
    assert clusters == [1, 2], "a rerun whose jobs are all cached must not start a cluster"
    assert _flow_runs("train-models", "train-transfer-models") == subflows, "nor a training subflow"
    assert (unchanged / "report.html").is_file() and (unchanged / "me_report.html").is_file()
    from recognize_me.me.predict import load_run_models

    served = load_run_models(unchanged)  # what `predict/find --run <the rerun>` uses: the cached transfers too
    assert served.me_model.is_file() and served.me_model.is_relative_to(first)
    assert json.loads((unchanged / "leaderboard.json").read_text())[0]["model"] in {"cnn_scheduled",
                                                                                      "majority_baseline"}
    registry = ModelRegistry(config.output_root / "registry")
    assert [v["version"] for v in registry.versions("celeba")] == [1]
    decisions = registry.decisions("celeba")
    assert [d["promoted"] for d in decisions] == [True, False]
    assert "champion kept" in decisions[1]["reason"]

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
    assert (refreshed / "data_docs").is_dir() and not (unchanged / "data_docs").exists()
