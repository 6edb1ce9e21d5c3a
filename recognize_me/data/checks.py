"""Data checks with Great Expectations 1.x (GX Core), run before any training.

The suites live as JSON in the repository's ``expectations/`` folder, one per checked frame. Before a
suite is built, every ``{"$PARAMETER": name}`` in it is replaced by the run's value (declared row
count, bounds, expected image size...); an expectation whose parameter is ``None`` is left out. The
attribute suite's ``per_attribute_column`` list is a template expanded once per selected attribute
present in the frame (a missing one is reported by the schema expectation). Great Expectations is
imported only when a check runs.

Severity: GX marks a suite failed on any failed expectation, warnings included; a :class:`CheckReport`
is successful when no *critical* expectation failed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recognize_me.data.check_report import (
    CRITICAL,
    CheckReport,
    DataCheckError,
    FailedExpectation,
    raise_on_critical,
)

__all__ = [
    "CheckReport", "DataCheckError", "FailedExpectation", "check_celeba", "check_photos",
    "load_suite", "raise_on_critical",
]

SUITES_DIR = Path(__file__).resolve().parents[2] / "expectations"
MAX_EXAMPLES = 5
_PARAM = "$PARAMETER"
_SITE = "recognize_me"
# SUMMARY: counts plus the first 20 offending values and row labels. unexpected_index_column_names is
# deliberately not set: GX 1.24 then builds the id list row by row over *all* offending rows (.at per
# row: ~10 s per 200k bad rows); the row labels come cheaply and are mapped to ids here.
_RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 20}


def check_celeba(attributes: pd.DataFrame, partition: pd.DataFrame | None, manifest: pd.DataFrame,
                 *, declared_rows: int | None, attribute_names: Sequence[str],
                 expected_size: tuple[int, int] = (178, 218),  # (width, height)
                 max_absent_fraction: float = 0.95, max_undecodable_fraction: float = 0.001,
                 docs_dir: Path | None = None, suites_dir: Path | None = None) -> CheckReport:
    """Check the parsed CelebA attribute table, partition table and image manifest.

    ``partition`` may be ``None`` (no partition file): its suite is then skipped.
    """
    started = time.perf_counter()
    _require(manifest, ["image_id", "exists", "decodable", "width", "height", "mode"], "manifest")
    present = [a for a in attribute_names if a in attributes.columns]
    params: dict[str, Any] = {
        "declared_rows": declared_rows, "expected_columns": ["image_id", *attribute_names],
        "min_present_fraction": 1.0 - max_absent_fraction,
        "min_decodable_fraction": 1.0 - max_undecodable_fraction,
        "expected_width": expected_size[0], "expected_height": expected_size[1],
    }
    runs = [(load_suite("celeba_attributes", params, suites_dir, attributes=present), attributes)]
    stats: dict[str, int | float] = {"attribute_rows": len(attributes)}
    if declared_rows is not None:
        stats["declared_rows"] = declared_rows
    if partition is not None:
        _require(partition, ["image_id", "partition"], "partition")
        frame = _partition_frame(partition, attributes.get("image_id", pd.Series(dtype=str)))
        runs.append((load_suite("celeba_partition", params, suites_dir), frame))
        stats["partition_rows"] = len(partition)
        stats["unpartitioned"] = int((~frame["in_partition"]).sum())
    runs.append((load_suite("image_manifest", params, suites_dir), manifest))
    exists = manifest["exists"].astype(bool)
    readable = exists & manifest["decodable"].astype(bool)
    stats |= {
        "manifest_rows": len(manifest), "absent": int((~exists).sum()), "existing": int(exists.sum()),
        "undecodable": int((exists & ~readable).sum()),
        "wrong_size": int((readable & ((manifest["width"] != expected_size[0])
                                       | (manifest["height"] != expected_size[1]))).sum()),
    }
    return _run(runs, stats, docs_dir, started)


def check_photos(photos: pd.DataFrame, *, min_me: int, docs_dir: Path | None = None,
                 suites_dir: Path | None = None) -> CheckReport:
    """Check the user's photo manifest (path, label, sha256, split, decodable, width, height; optional
    face, n_faces, choice: one row per face of a multi-face photo, see ``photo_set.prepare_photos``).

    ``min_me`` counts "me" photos: a multi-face "me" photo whose face is not chosen yet (rows with
    choice "candidate") counts once."""
    started = time.perf_counter()
    _require(photos, ["path", "label", "sha256", "split", "decodable"], "photos")
    frame = photos.copy()
    face = frame["face"] if "face" in frame.columns else pd.Series(0, index=frame.index)
    frame["photo_face"] = frame["path"].astype(str) + "#" + face.astype(str)
    choice = frame["choice"] if "choice" in frame.columns else pd.Series("", index=frame.index)
    candidate = choice == "candidate"
    frame["is_me"] = ((frame["label"] == "me") & ~(candidate & frame["path"].duplicated())).astype("int64")
    # Distinct splits per content hash; rows without a hash get NaN (reported by the not-null check).
    frame["splits_per_sha256"] = frame.groupby("sha256")["split"].transform("nunique")
    stats: dict[str, int | float] = {
        "photos": len(frame), "me": int(frame["is_me"].sum()),
        "other": int((frame["label"] == "other").sum()),
        "undecodable": int((~frame["decodable"].astype(bool)).sum()),
        "sha256_in_several_splits": int(frame.loc[frame["splits_per_sha256"] > 1, "sha256"].nunique()),
    }
    if "n_faces" in frame.columns:
        stats["multi_face_photos"] = int(frame.loc[frame["n_faces"] > 1, "path"].nunique())
        stats["me_photos_face_not_chosen"] = int(frame.loc[candidate, "path"].nunique())
    suite = load_suite("photos", {"min_me": min_me}, suites_dir)
    return _run([(suite, frame)], stats, docs_dir, started)


# --- suites -------------------------------------------------------------------------------------

def load_suite(name: str, params: Mapping[str, Any], suites_dir: Path | None = None,
               attributes: Sequence[str] = ()) -> dict:
    """The suite ``<suites_dir>/<name>.json`` as a dict ready for ``gx.ExpectationSuite(**d)``."""
    path = Path(suites_dir or SUITES_DIR) / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"expectation suite {path} not found: pass suites_dir= pointing at the repository's "
            "'expectations' folder (it is not shipped inside the installed package)")
    data = json.loads(path.read_text(encoding="utf-8"))
    templates = data.pop("per_attribute_column", [])
    expectations = [e for e in data["expectations"] if _all_given(e, params)]
    expectations = [_fill(e, params) for e in expectations]
    for attribute in attributes:
        expectations += [_fill(t, {**params, "attribute": attribute}) for t in templates]
    data["expectations"] = expectations
    return data


def _params_in(obj: Any) -> Iterator[str]:
    if isinstance(obj, dict):
        if set(obj) == {_PARAM}:
            yield obj[_PARAM]
        else:
            for v in obj.values():
                yield from _params_in(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _params_in(v)


def _all_given(obj: Any, params: Mapping[str, Any]) -> bool:
    return all(params.get(p) is not None for p in _params_in(obj))


def _fill(obj: Any, params: Mapping[str, Any]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_PARAM}:
            if obj[_PARAM] not in params:
                raise KeyError(f"suite parameter {obj[_PARAM]!r} has no value (known: {sorted(params)})")
            return params[obj[_PARAM]]
        return {k: _fill(v, params) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_fill(v, params) for v in obj]
    return obj


# --- derived frames -----------------------------------------------------------------------------

def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} frame lacks column(s) {missing}; it has {list(frame.columns)}")


def _partition_frame(partition: pd.DataFrame, attribute_ids: pd.Series) -> pd.DataFrame:
    """Partition rows (``in_partition`` True) plus one row per attribute id the partition lacks."""
    ids = pd.Index(attribute_ids.dropna().unique())
    frame = partition[["image_id", "partition"]].copy()
    frame["in_partition"] = True
    frame["in_attributes"] = frame["image_id"].isin(ids)
    missing = ids[~ids.isin(partition["image_id"])]
    if len(missing):
        extra = pd.DataFrame({"image_id": missing.astype(str), "partition": pd.Series([None] * len(missing),
                              dtype=object), "in_partition": False, "in_attributes": True})
        frame = pd.concat([frame.astype({"partition": object}), extra], ignore_index=True)
    return frame


# --- running GX -----------------------------------------------------------------------------

def _run(runs: list[tuple[dict, pd.DataFrame]], stats: dict[str, int | float], docs_dir: Path | None,
         started: float) -> CheckReport:
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    sites = {}
    if docs_dir is not None:
        docs_dir = Path(docs_dir).resolve()
        sites[_SITE] = {"class_name": "SiteBuilder", "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                        "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                                          "base_directory": str(docs_dir)}}
    config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
                               data_docs_sites=sites, analytics_enabled=False,
                               progress_bars=ProgressBarsConfig(globally=False))
    ctx = gx.get_context(mode="ephemeral", project_config=config)
    source = ctx.data_sources.add_pandas("recognize_me")
    actions = [gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=[_SITE])] if sites else []
    failures: list[FailedExpectation] = []
    total = 0
    for suite_dict, frame in runs:
        name = suite_dict["name"]
        suite = ctx.suites.add(gx.ExpectationSuite(**suite_dict))
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
        validation = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
        checkpoint = ctx.checkpoints.add(gx.Checkpoint(name=name, validation_definitions=[validation],
                                                       actions=actions, result_format=_RESULT_FORMAT))
        frame = frame.reset_index(drop=True)  # row labels 0..n-1: the example lookup relies on them
        result = checkpoint.run(batch_parameters={"dataframe": frame})
        index_column = suite_dict.get("meta", {}).get("index_column")
        for suite_result in result.run_results.values():
            total += len(suite_result.results)
            failures += [_failure(name, r, frame, index_column) for r in suite_result.results if not r.success]
    critical = sum(f.severity == CRITICAL for f in failures)
    stats |= {"expectations": total, "failed_critical": critical, "failed_warning": len(failures) - critical,
              "seconds": round(time.perf_counter() - started, 3)}
    index = docs_dir / "index.html" if docs_dir is not None else None
    return CheckReport(success=critical == 0, failures=failures, stats=stats,
                       data_docs_index=index if index is not None and index.is_file() else None)


def _failure(suite: str, r: Any, frame: pd.DataFrame, index_column: str | None) -> FailedExpectation:
    cfg = r.expectation_config
    kwargs = dict(cfg.kwargs)
    column = kwargs.get("column") or (", ".join(kwargs["column_list"]) if "column_list" in kwargs else None)
    result = r.result or {}
    error = _exception_message(r.exception_info)
    if error:
        observed, examples = f"error: {error}", []
    elif "unexpected_count" in result:
        observed, examples = _map_observed(result, kwargs), _examples(result, frame, column, index_column)
    else:
        observed, examples = _aggregate_observed(result, kwargs)
    return FailedExpectation(suite=suite, expectation=cfg.type, column=column,
                             severity=str(getattr(cfg.severity, "value", cfg.severity)),
                             description=str((cfg.meta or {}).get("description", "")),
                             observed=observed, examples=examples[:MAX_EXAMPLES])


def _exception_message(info: Any) -> str | None:
    infos = [info] if isinstance(info, dict) and "raised_exception" in info else (
        list(info.values()) if isinstance(info, dict) else [])
    for i in infos:
        if isinstance(i, dict) and i.get("raised_exception"):
            return str(i.get("exception_message") or "exception").splitlines()[0][:300]
    return None


def _map_observed(result: Mapping[str, Any], kwargs: Mapping[str, Any]) -> str:
    count, rows, percent = result["unexpected_count"], result.get("element_count"), result.get("unexpected_percent")
    text = f"{count} of {rows} rows" + (f" ({percent:.3g}%)" if percent is not None else "")
    if kwargs.get("mostly") is not None and kwargs["mostly"] < 1:
        text += f", allowed {100 * (1 - kwargs['mostly']):.3g}%"
    return text


def _examples(result: Mapping[str, Any], frame: pd.DataFrame, column: str | None,
              index_column: str | None) -> list[str]:
    """Offending rows as "<image id>: <value>" (just the id for flags and nulls), else the values."""
    rows = [i for i in result.get("partial_unexpected_index_list") or [] if isinstance(i, int)]
    if not rows or index_column not in frame.columns:
        return list(dict.fromkeys(str(v) for v in result.get("partial_unexpected_list") or []))
    values = []
    for i in rows:
        ident = frame.at[i, index_column]
        ident = f"row {i}" if _missing(ident) else str(ident)
        value = frame.at[i, column] if column in frame.columns and column != index_column else None
        flag = isinstance(value, bool | np.bool_)
        values.append(ident if flag or _missing(value) else f"{ident}: {value}")
    return list(dict.fromkeys(values))  # unique, in order


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # array-like values
        return False


def _num(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _aggregate_observed(result: Mapping[str, Any], kwargs: Mapping[str, Any]) -> tuple[str, list[str]]:
    mismatched = (result.get("details") or {}).get("mismatched")
    if mismatched:
        missing, unexpected = mismatched.get("missing", []), mismatched.get("unexpected", [])
        text = "; ".join(part for part in (f"missing {missing}" if missing else "",
                                           f"unexpected {unexpected}" if unexpected else "") if part)
        return text, [f"missing {c}" for c in missing] + [f"unexpected {c}" for c in unexpected]
    observed = f"observed {_num(result.get('observed_value'))}"
    if "value" in kwargs:
        return f"{observed}, expected {_num(kwargs['value'])}", []
    low, high = _num(kwargs.get("min_value")), _num(kwargs.get("max_value"))
    bound = (f"between {low} and {high}" if low is not None and high is not None
             else f">= {low}" if low is not None else f"<= {high}" if high is not None else "")
    return (f"{observed}, expected {bound}" if bound else observed), []
