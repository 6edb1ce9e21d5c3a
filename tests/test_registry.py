"""Champion registry: promotion rules, atomic versions/pointer, decision log, locking, task-name safety."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import queue
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from recognize_me import registry as registry_mod
from recognize_me.registry import Candidate, ModelRegistry

TEST_SET = "testset-fingerprint-aaaaaaaaaaaaaaaaaaaa"


def make_model_dir(parent: Path, name: str, payload: str = "weights") -> Path:
    """A fake finished model folder, with the clutter training leaves around that must not be copied."""
    d = parent / name
    d.mkdir(parents=True)
    (d / "model.keras").write_bytes(f"KERAS:{payload}".encode())
    (d / "metrics.json").write_text(json.dumps({"mean_accuracy": payload}))
    (d / "config.json").write_text(json.dumps({"model": name}))
    (d / "backup").mkdir()
    (d / "backup" / "ckpt.weights.h5").write_bytes(b"backup")
    (d / "history.phase1.partial.csv").write_text("epoch\n0\n")
    (d / ".model.keras.abc123.keras").write_bytes(b"half")
    return d


def cand(model_dir: Path, value: float, *, task: str = "celeba", test_set: str = TEST_SET,
         metric: str = "mean_accuracy", run_id: str = "run") -> Candidate:
    return Candidate(task=task, model_dir=model_dir, metric=metric, value=value, test_set=test_set,
                     lineage={"run_id": run_id, "seed": 1, "data_fingerprint": "fp"})


def read_decisions(reg: ModelRegistry, task: str = "celeba") -> list[dict[str, Any]]:
    path = reg.root / task / "decisions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def reg(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


def test_first_candidate_is_promoted_as_v1(reg: ModelRegistry, tmp_path: Path) -> None:
    assert reg.champion("celeba") is None
    assert reg.champion_model_path("celeba") is None
    assert reg.versions("celeba") == []

    d = reg.consider(cand(make_model_dir(tmp_path, "m1"), 0.90, run_id="r1"))

    assert d.promoted and d.version == 1
    assert d.reason == "first model for celeba"
    v1 = reg.root / "celeba" / "v0001"
    assert sorted(p.name for p in v1.iterdir()) == ["config.json", "metrics.json", "model.keras",
                                                     "record.json"]
    assert (v1 / "model.keras").read_bytes() == b"KERAS:weights"
    pointer = json.loads((reg.root / "celeba" / "CHAMPION.json").read_text())
    assert pointer["version"] == 1 and pointer["value"] == 0.90
    record = json.loads((v1 / "record.json").read_text())
    assert record["version"] == 1 and record["value"] == 0.90 and record["test_set"] == TEST_SET
    assert record["metric"] == "mean_accuracy" and record["lineage"]["run_id"] == "r1"
    assert record["created_at"].endswith("+00:00")
    assert set(record["files"]) == {"model.keras", "metrics.json", "config.json"}
    assert d.champion == record == reg.champion("celeba")
    assert reg.champion_model_path("celeba") == v1 / "model.keras"
    [line] = read_decisions(reg)
    assert line["promoted"] is True and line["version"] == 1 and line["champion_value"] is None
    assert line["candidate_value"] == 0.90 and line["run_id"] == "r1"


def test_worse_challenger_is_not_promoted(reg: ModelRegistry, tmp_path: Path) -> None:
    reg.consider(cand(make_model_dir(tmp_path, "m1"), 0.90))
    pointer_before = (reg.root / "celeba" / "CHAMPION.json").read_bytes()

    d = reg.consider(cand(make_model_dir(tmp_path, "m2"), 0.88, run_id="r2"))

    assert not d.promoted and d.version == 1
    assert d.reason == "mean_accuracy 0.88 <= champion 0.9 (v1): champion kept"
    assert d.champion is not None and d.champion["value"] == 0.90
    assert (reg.root / "celeba" / "CHAMPION.json").read_bytes() == pointer_before
    assert [r["version"] for r in reg.versions("celeba")] == [1]
    assert not (reg.root / "celeba" / "v0002").exists()
    last = read_decisions(reg)[-1]
    assert last["promoted"] is False and last["run_id"] == "r2"
    assert last["candidate_value"] == 0.88 and last["champion_value"] == 0.90
    assert "0.88" in last["reason"] and "0.9" in last["reason"]


def test_better_challenger_is_promoted_and_old_version_kept(reg: ModelRegistry, tmp_path: Path) -> None:
    reg.consider(cand(make_model_dir(tmp_path, "m1", payload="old"), 0.90))
    v1_record = (reg.root / "celeba" / "v0001" / "record.json").read_bytes()

    d = reg.consider(cand(make_model_dir(tmp_path, "m2", payload="new"), 0.91))

    assert d.promoted and d.version == 2
    assert d.reason == "mean_accuracy 0.91 > champion 0.9 (v1)"
    assert reg.champion("celeba")["version"] == 2
    assert reg.champion_model_path("celeba").read_bytes() == b"KERAS:new"
    assert (reg.root / "celeba" / "v0001" / "model.keras").read_bytes() == b"KERAS:old"
    assert (reg.root / "celeba" / "v0001" / "record.json").read_bytes() == v1_record
    assert [r["value"] for r in reg.versions("celeba")] == [0.90, 0.91]
    assert [line["promoted"] for line in read_decisions(reg)] == [True, True]


def test_equal_value_is_not_promoted(reg: ModelRegistry, tmp_path: Path) -> None:
    reg.consider(cand(make_model_dir(tmp_path, "m1"), 0.90))
    d = reg.consider(cand(make_model_dir(tmp_path, "m2"), 0.90))
    assert not d.promoted and d.version == 1
    assert "<=" in d.reason
    assert len(reg.versions("celeba")) == 1


def test_min_delta_must_be_exceeded(reg: ModelRegistry, tmp_path: Path) -> None:
    reg.consider(cand(make_model_dir(tmp_path, "m1"), 0.90))
    small = reg.consider(cand(make_model_dir(tmp_path, "m2"), 0.905), min_delta=0.01)
    assert not small.promoted and "min_delta 0.01" in small.reason
    big = reg.consider(cand(make_model_dir(tmp_path, "m3"), 0.92), min_delta=0.01)
    assert big.promoted and big.version == 2
    with pytest.raises(ValueError, match="min_delta"):
        reg.consider(cand(make_model_dir(tmp_path, "m4"), 0.99), min_delta=-0.1)


def test_different_test_set_is_not_comparable(reg: ModelRegistry, tmp_path: Path) -> None:
    reg.consider(cand(make_model_dir(tmp_path, "m1"), 0.90))
    pointer_before = (reg.root / "celeba" / "CHAMPION.json").read_bytes()

    refused = reg.consider(cand(make_model_dir(tmp_path, "m2"), 0.99, test_set="other-test-set"))
    assert not refused.promoted and refused.version == 1
    assert "different test set" in refused.reason and "other-test-set" in refused.reason
    assert "allow_new_test_set" in refused.reason
    assert (reg.root / "celeba" / "CHAMPION.json").read_bytes() == pointer_before
    assert len(reg.versions("celeba")) == 1

    # Even a *lower* value is promoted when the new test set is explicitly accepted.
    allowed = reg.consider(cand(make_model_dir(tmp_path, "m3"), 0.50, test_set="other-test-set"),
                           allow_new_test_set=True)
    assert allowed.promoted and allowed.version == 2
    assert "different test set" in allowed.reason and "allow_new_test_set=True" in allowed.reason
    assert reg.champion("celeba")["test_set"] == "other-test-set"
    # From now on comparisons are against the new test set.
    assert reg.consider(cand(make_model_dir(tmp_path, "m4"), 0.60, test_set="other-test-set")).promoted
    assert [line["promoted"] for line in read_decisions(reg)] == [True, False, True, True]


def test_different_metric_is_not_comparable(reg: ModelRegistry, tmp_path: Path) -> None:
    reg.consider(cand(make_model_dir(tmp_path, "m1"), 0.90))
    d = reg.consider(cand(make_model_dir(tmp_path, "m2"), 0.95, metric="f1"))
    assert not d.promoted and "different metric" in d.reason


def test_existing_version_folder_is_never_overwritten(reg: ModelRegistry, tmp_path: Path) -> None:
    reg.consider(cand(make_model_dir(tmp_path, "m1"), 0.80))
    squatter = reg.root / "celeba" / "v0002"
    squatter.mkdir()  # an empty folder: a plain POSIX rename would silently replace it
    (reg.root / "celeba" / "v0003").mkdir()
    (reg.root / "celeba" / "v0003" / "keep.txt").write_text("mine")

    d = reg.consider(cand(make_model_dir(tmp_path, "m2"), 0.85))

    assert d.promoted and d.version == 4
    assert squatter.is_dir() and list(squatter.iterdir()) == []
    assert (reg.root / "celeba" / "v0003" / "keep.txt").read_text() == "mine"
    assert reg.champion_model_path("celeba") == reg.root / "celeba" / "v0004" / "model.keras"
    assert [r["version"] for r in reg.versions("celeba")] == [1, 4]


def test_failure_during_copy_leaves_registry_untouched(reg: ModelRegistry, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    reg.consider(cand(make_model_dir(tmp_path, "m1"), 0.80))
    tdir = reg.root / "celeba"
    pointer_before = (tdir / "CHAMPION.json").read_bytes()
    log_before = (tdir / "decisions.jsonl").read_bytes()
    entries_before = sorted(p.name for p in tdir.iterdir())

    real_copy2 = shutil.copy2
    calls = []

    def flaky_copy2(src, dst, *args, **kwargs):
        calls.append(src)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_copy2(src, dst, *args, **kwargs)

    monkeypatch.setattr(shutil, "copy2", flaky_copy2)
    with pytest.raises(OSError, match="disk full"):
        reg.consider(cand(make_model_dir(tmp_path, "m2"), 0.95))

    assert len(calls) == 2  # the failure really happened mid-copy
    assert not (tdir / "v0002").exists()
    assert (tdir / "CHAMPION.json").read_bytes() == pointer_before
    assert (tdir / "decisions.jsonl").read_bytes() == log_before
    assert sorted(p.name for p in tdir.iterdir()) == entries_before  # no temp folders or files left
    assert reg.champion("celeba")["version"] == 1

    monkeypatch.setattr(shutil, "copy2", real_copy2)
    retry = reg.consider(cand(tmp_path / "m2", 0.95))
    assert retry.promoted and retry.version == 2


def test_stale_temp_folder_from_a_killed_run_is_cleaned(reg: ModelRegistry, tmp_path: Path) -> None:
    reg.consider(cand(make_model_dir(tmp_path, "m1"), 0.80))
    stale = reg.root / "celeba" / ".tmp-killed"
    stale.mkdir()
    (stale / "model.keras").write_bytes(b"half")
    reg.consider(cand(make_model_dir(tmp_path, "m2"), 0.70))
    assert not stale.exists()
    assert [r["version"] for r in reg.versions("celeba")] == [1]


def test_model_dir_without_model_is_rejected(reg: ModelRegistry, tmp_path: Path) -> None:
    d = make_model_dir(tmp_path, "m1")
    (d / "model.keras").unlink()
    with pytest.raises(ValueError, match="model.keras"):
        reg.consider(cand(d, 0.9))
    assert reg.champion("celeba") is None


def test_non_finite_value_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="finite"):
        cand(tmp_path, float("nan"))
    with pytest.raises(ValueError, match="finite"):
        cand(tmp_path, float("inf"))


def test_tasks_are_independent(reg: ModelRegistry, tmp_path: Path) -> None:
    reg.consider(cand(make_model_dir(tmp_path, "m1"), 0.90))
    d = reg.consider(cand(make_model_dir(tmp_path, "m2"), 0.10, task="recognize_me", metric="f1"))
    assert d.promoted and d.version == 1
    assert reg.champion("celeba")["value"] == 0.90
    assert reg.champion("recognize_me")["value"] == 0.10


def test_lost_champion_record_raises(reg: ModelRegistry, tmp_path: Path) -> None:
    reg.consider(cand(make_model_dir(tmp_path, "m1"), 0.90))
    shutil.rmtree(reg.root / "celeba" / "v0001")
    with pytest.raises(RuntimeError, match="v0001"):
        reg.consider(cand(make_model_dir(tmp_path, "m2"), 0.10))


@pytest.mark.parametrize("task", ["", "Celeba", "1celeba", "../etc", "a/b", "celeba\n", "a b", ".lock",
                                  "x" * 42, "café"])
def test_invalid_task_names_are_rejected(reg: ModelRegistry, tmp_path: Path, task: str) -> None:
    with pytest.raises(ValueError, match="task name"):
        Candidate(task=task, model_dir=tmp_path, metric="f1", value=0.5, test_set="t", lineage={})
    with pytest.raises(ValueError, match="task name"):
        reg.champion(task)
    with pytest.raises(ValueError, match="task name"):
        reg.versions(task)
    assert not reg.root.exists()


def test_valid_task_names_are_accepted(reg: ModelRegistry) -> None:
    for task in ("celeba", "recognize_me", "a", "x-1", "a" + "b" * 40):
        assert reg.champion(task) is None


def test_lock_timeout_raises(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "registry", lock_timeout=0.2)
    reg.consider(cand(make_model_dir(tmp_path, "m1"), 0.5))
    with open(reg.root / "celeba" / ".lock", "a") as held:  # another open file description: conflicts
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            reg.consider(cand(make_model_dir(tmp_path, "m2"), 0.9))
        assert time.monotonic() - start >= 0.2
    assert reg.champion("celeba")["value"] == 0.5
    assert reg.consider(cand(tmp_path / "m2", 0.9)).promoted  # lock released: works again


# --------------------------------------------------------------------------- concurrency

def _race_worker(root: str, model_dir: str, value: float, copy_delay: float, barrier, out) -> None:
    """Runs in a spawned process. The copy step is slowed down so that, without the lock, both workers
    would read the same champion before either wrote the pointer (and the slower, worse one would win)."""
    real = registry_mod._copy_model_files

    def slow_copy(src: Path, dst: Path) -> dict[str, str]:
        time.sleep(copy_delay)
        return real(src, dst)

    registry_mod._copy_model_files = slow_copy
    reg = ModelRegistry(Path(root))
    barrier.wait(timeout=30)
    d = reg.consider(cand(Path(model_dir), value, run_id=f"run-{value}"))
    out.put({"value": value, "promoted": d.promoted, "version": d.version, "pid": os.getpid()})


def test_concurrent_consider_is_serialised(reg: ModelRegistry, tmp_path: Path) -> None:
    reg.consider(cand(make_model_dir(tmp_path, "m0"), 0.7))
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    # The worse challenger copies slowly, so without serialisation it would write the pointer last.
    procs = [ctx.Process(target=_race_worker,
                         args=(str(reg.root), str(make_model_dir(tmp_path, f"m{i}")), value, delay,
                               barrier, out))
             for i, (value, delay) in enumerate([(0.8, 1.0), (0.9, 0.2)], start=1)]
    for p in procs:
        p.start()
    results: list[dict[str, Any]] = []
    deadline = time.monotonic() + 90
    while len(results) < len(procs) and time.monotonic() < deadline:
        try:
            results.append(out.get(timeout=0.5))
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in procs):
                break  # a worker crashed: fail now rather than wait for the deadline
    for p in procs:
        p.join(timeout=30)
    assert [p.exitcode for p in procs] == [0, 0]
    assert len(results) == 2

    by_value = {r["value"]: r for r in results}
    assert by_value[0.9]["promoted"] is True  # 0.9 beats both 0.7 and 0.8 whichever went first
    champ = reg.champion("celeba")
    assert champ is not None and champ["value"] == 0.9
    promoted = [r for r in results if r["promoted"]]
    stored = reg.versions("celeba")
    assert sorted(r["value"] for r in stored) == sorted([0.7] + [r["value"] for r in promoted])
    assert len({r["version"] for r in stored}) == len(stored)
    assert sorted(r["version"] for r in promoted) == sorted(r["version"] for r in stored)[1:]
    lines = read_decisions(reg)
    assert len(lines) == 3
    assert sorted(line["candidate_value"] for line in lines[1:]) == [0.8, 0.9]
    # Serialised: the second decision saw the first one's outcome as its champion.
    assert lines[2]["champion_value"] == (lines[1]["candidate_value"] if lines[1]["promoted"] else 0.7)
    assert not [p for p in (reg.root / "celeba").iterdir() if p.name.startswith(".tmp-")]
