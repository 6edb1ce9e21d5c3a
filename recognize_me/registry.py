"""Champion registry: every promoted model version with its lineage, so a retrain never replaces a better model.

Layout under the registry root (``<output_root>/registry/``)::

    <root>/<task>/v0001/          model.keras, metrics.json, config.json, ... + record.json
    <root>/<task>/v0002/
    <root>/<task>/CHAMPION.json   pointer {"version": 2, ...}, replaced atomically
    <root>/<task>/decisions.jsonl one line per ``consider`` call (promoted or not)
    <root>/<task>/.lock           flock target that serialises ``consider``

A version folder is assembled in a hidden temporary folder and renamed into place, so it is never
half-written and an existing version is never overwritten. The pointer is written with
:func:`recognize_me.fileio.write_json` (temp file + ``os.replace``). If a process dies between the
version rename and the pointer update, the orphan version is listed by :meth:`ModelRegistry.versions`
but is not the champion: the pointer alone says which version is champion.

Pure core: no Prefect, no TensorFlow.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recognize_me.fileio import write_json
from recognize_me.runs import file_digest

__all__ = ["Candidate", "Decision", "ModelRegistry", "validate_task"]

_TASK_RE = re.compile(r"[a-z][a-z0-9_\-]{0,40}")
_VERSION_RE = re.compile(r"v(\d{4,})")
_TMP_PREFIX = ".tmp-"
POINTER = "CHAMPION.json"
DECISIONS = "decisions.jsonl"
RECORD = "record.json"
LOCK = ".lock"
MODEL_FILE = "model.keras"


def validate_task(task: str) -> str:
    """Return ``task`` if it is a safe namespace (``^[a-z][a-z0-9_\\-]{0,40}$``), else raise ValueError."""
    if not isinstance(task, str) or _TASK_RE.fullmatch(task) is None:
        raise ValueError(f"invalid registry task name {task!r}: must match ^[a-z][a-z0-9_\\-]{{0,40}}$")
    return task


@dataclass(frozen=True)
class Candidate:
    """A trained model offered to the registry."""

    task: str  # registry namespace, e.g. "celeba" or "recognize_me"
    model_dir: Path  # folder holding model.keras, metrics.json, config.json
    metric: str  # e.g. "mean_accuracy", "f1", "auc" (higher is better)
    value: float
    test_set: str  # fingerprint of the test data the metric was measured on
    lineage: dict[str, Any]  # data fingerprint, seed, config, metrics, run id, run folder...

    def __post_init__(self) -> None:
        validate_task(self.task)
        if not self.metric:
            raise ValueError("candidate metric name is empty")
        if isinstance(self.value, bool) or not isinstance(self.value, int | float) \
                or not math.isfinite(self.value):
            raise ValueError(f"candidate value must be a finite number, got {self.value!r}")
        if not self.test_set:
            raise ValueError("candidate test_set fingerprint is empty")


@dataclass(frozen=True)
class Decision:
    promoted: bool
    reason: str  # human sentence explaining the decision
    version: int | None  # the new version when promoted, else the champion's
    champion: dict[str, Any] | None  # the (new or kept) champion's record


class ModelRegistry:
    """Versioned champion store under ``root``; see the module docstring for the layout."""

    def __init__(self, root: Path, *, lock_timeout: float = 60.0) -> None:
        self.root = Path(root)
        self.lock_timeout = float(lock_timeout)

    # ----------------------------------------------------------------- reading (no lock needed:
    # the pointer is replaced atomically and version folders are immutable once renamed into place)

    def task_dir(self, task: str) -> Path:
        return self.root / validate_task(task)

    def version_dir(self, task: str, version: int) -> Path:
        return self.task_dir(task) / f"v{int(version):04d}"

    def champion(self, task: str) -> dict[str, Any] | None:
        """The record of the version the CHAMPION pointer names, or None when there is no champion yet.

        Raises RuntimeError if the pointer names a version whose record is missing: a lost champion
        must not be silently replaced by whatever comes next.
        """
        pointer = self._read_pointer(task)
        if pointer is None:
            return None
        version = int(pointer["version"])
        record_path = self.version_dir(task, version) / RECORD
        try:
            return _read_json(record_path)
        except FileNotFoundError as exc:
            raise RuntimeError(
                f"registry pointer {self.task_dir(task) / POINTER} names v{version:04d}, "
                f"but {record_path} is missing") from exc

    def champion_model_path(self, task: str) -> Path | None:
        record = self.champion(task)
        if record is None:
            return None
        return self.version_dir(task, int(record["version"])) / MODEL_FILE

    def versions(self, task: str) -> list[dict[str, Any]]:
        """Records of all stored versions, oldest first (folders without a record.json are skipped)."""
        tdir = self.task_dir(task)
        if not tdir.is_dir():
            return []
        records = []
        for entry in tdir.iterdir():
            if _VERSION_RE.fullmatch(entry.name) and (entry / RECORD).is_file():
                records.append(_read_json(entry / RECORD))
        return sorted(records, key=lambda r: int(r["version"]))

    def decisions(self, task: str) -> list[dict[str, Any]]:
        """Every logged decision for ``task``, oldest first."""
        path = self.task_dir(task) / DECISIONS
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    # ----------------------------------------------------------------- deciding

    def consider(self, candidate: Candidate, min_delta: float = 0.0, *,
                 allow_new_test_set: bool = False) -> Decision:
        """Promote ``candidate`` if there is no champion or it beats the champion by more than ``min_delta``.

        Higher is better for every metric. A champion measured on a different test set (or with a
        different metric) cannot be compared: the candidate is not promoted unless
        ``allow_new_test_set=True``. Only promoted candidates are stored as versions; every decision is
        appended to ``decisions.jsonl``. The whole read-compare-write runs under an exclusive lock on
        ``<root>/<task>/.lock`` (TimeoutError after ``lock_timeout`` seconds).
        """
        task = validate_task(candidate.task)
        if not math.isfinite(min_delta) or min_delta < 0:
            raise ValueError(f"min_delta must be a finite number >= 0, got {min_delta!r}")
        model_dir = Path(candidate.model_dir)
        if not (model_dir / MODEL_FILE).is_file():
            raise ValueError(f"{model_dir} holds no {MODEL_FILE}: not a finished model folder")
        tdir = self.task_dir(task)
        tdir.mkdir(parents=True, exist_ok=True)

        with self._locked(task):
            _remove_stale_temps(tdir)  # only consider() makes them, and we hold the lock
            champ = self.champion(task)
            promoted, reason = _judge(candidate, champ, min_delta, allow_new_test_set)
            if promoted:
                record = self._store_version(candidate, reason)
                version = int(record["version"])
                write_json(tdir / POINTER, {
                    "version": version, "metric": candidate.metric, "value": candidate.value,
                    "test_set": candidate.test_set, "updated_at": _now(), "reason": reason,
                })
                new_champ: dict[str, Any] | None = record
            else:
                assert champ is not None  # _judge always promotes when there is no champion
                version, new_champ = int(champ["version"]), champ
            self._log_decision(candidate, champ, promoted, version, reason)
        return Decision(promoted=promoted, reason=reason, version=version, champion=new_champ)

    # ----------------------------------------------------------------- internals

    def _read_pointer(self, task: str) -> dict[str, Any] | None:
        try:
            return _read_json(self.task_dir(task) / POINTER)
        except FileNotFoundError:
            return None

    @contextmanager
    def _locked(self, task: str) -> Iterator[None]:
        path = self.task_dir(task) / LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + self.lock_timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        raise
                    if time.monotonic() >= deadline:
                        raise TimeoutError(
                            f"could not lock {path} within {self.lock_timeout:g} s "
                            "(another run is deciding on this task)") from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _store_version(self, candidate: Candidate, reason: str) -> dict[str, Any]:
        """Copy the model folder into a temp folder, add record.json, rename to the next free vNNNN."""
        tdir = self.task_dir(candidate.task)
        tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=tdir))
        try:
            files = _copy_model_files(Path(candidate.model_dir), tmp)
            version = _next_version(tdir)
            while True:
                final = tdir / f"v{version:04d}"
                record = {
                    "version": version, "task": candidate.task, "metric": candidate.metric,
                    "value": candidate.value, "test_set": candidate.test_set, "lineage": candidate.lineage,
                    "created_at": _now(), "source_model_dir": str(candidate.model_dir), "files": files,
                    "promotion_reason": reason,
                }
                write_json(tmp / RECORD, record)
                _fsync_dir(tmp)
                # POSIX rename silently replaces an *empty* directory, so check first; the task lock
                # makes the check-then-rename safe against other registry writers.
                if final.exists() or final.is_symlink():
                    version += 1
                    continue
                try:
                    os.rename(tmp, final)
                except OSError as exc:
                    if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                        version += 1
                        continue
                    raise
                _fsync_dir(tdir)
                return record
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _log_decision(self, candidate: Candidate, champ: dict[str, Any] | None, promoted: bool,
                      version: int, reason: str) -> None:
        lineage = candidate.lineage or {}
        entry = {
            "timestamp": _now(), "task": candidate.task, "metric": candidate.metric,
            "candidate_value": candidate.value, "test_set": candidate.test_set,
            "champion_value": None if champ is None else champ.get("value"),
            "champion_version": None if champ is None else champ.get("version"),
            "champion_test_set": None if champ is None else champ.get("test_set"),
            "promoted": promoted, "version": version, "reason": reason,
            "run_id": lineage.get("run_id", lineage.get("run_name")),
            "source_model_dir": str(candidate.model_dir),
        }
        line = json.dumps(entry, sort_keys=True, default=str) + "\n"
        # One write() of one line in append mode, fsynced; we hold the lock, so lines never interleave.
        with open(self.task_dir(candidate.task) / DECISIONS, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


def _judge(candidate: Candidate, champ: dict[str, Any] | None, min_delta: float,
           allow_new_test_set: bool) -> tuple[bool, str]:
    if champ is None:
        return True, f"first model for {candidate.task}"
    metric, tag = candidate.metric, f"v{int(champ['version'])}"
    a, b = _fmt_pair(candidate.value, float(champ["value"]))
    if champ.get("test_set") != candidate.test_set or champ.get("metric") != metric:
        if champ.get("test_set") != candidate.test_set:
            diff = (f"on a different test set ({_short(champ.get('test_set'))} vs candidate "
                    f"{_short(candidate.test_set)})")
        else:
            diff = f"with a different metric ({champ.get('metric')} vs candidate {metric})"
        what = (f"champion {tag} was measured {diff}: comparing candidate {metric} {a} with champion "
                f"{champ.get('metric')} {b} is meaningless")
        if allow_new_test_set:
            return True, f"{what}; promoted because allow_new_test_set=True"
        return False, f"{what}: champion kept (pass allow_new_test_set=True to promote)"
    margin = f" + min_delta {min_delta:g}" if min_delta else ""
    if candidate.value > float(champ["value"]) + min_delta:
        return True, f"{metric} {a} > champion {b} ({tag}){margin}"
    return False, f"{metric} {a} <= champion {b} ({tag}){margin}: champion kept"


def _short(fingerprint: Any) -> str:
    text = str(fingerprint)
    return text if len(text) <= 16 else text[:12] + "…"


def _fmt_pair(a: float, b: float) -> tuple[str, str]:
    """Short forms of two values, precise enough that different values never print the same."""
    fa, fb = f"{a:.6g}", f"{b:.6g}"
    if fa == fb and a != b:
        return repr(a), repr(b)
    return fa, fb


def _copy_model_files(src: Path, dst: Path) -> dict[str, str]:
    """Copy the model folder's finished top-level files; skip sub-folders (backup/), hidden, temp and
    partial files, and a stray record.json. Returns {name: sha256 of the copy}."""
    copied: dict[str, str] = {}
    for path in sorted(src.iterdir()):
        name = path.name
        if (not path.is_file() or name.startswith(".") or ".partial" in name or name.endswith(".tmp")
                or name == RECORD):
            continue
        shutil.copy2(path, dst / name)
        with open(dst / name, "rb") as f:
            os.fsync(f.fileno())
        copied[name] = file_digest(dst / name)
    if MODEL_FILE not in copied:
        raise ValueError(f"{src} holds no {MODEL_FILE}")
    return copied


def _next_version(tdir: Path) -> int:
    numbers = [int(m.group(1)) for e in tdir.iterdir() if (m := _VERSION_RE.fullmatch(e.name))]
    return max(numbers, default=0) + 1


def _remove_stale_temps(tdir: Path) -> None:
    for entry in tdir.iterdir():
        if entry.name.startswith(_TMP_PREFIX) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


def _now() -> str:
    return datetime.now(UTC).isoformat()
