"""Parse + check the 202,599-row CelebA files against a bare ``pandas.read_csv``: wall time and peak RSS.

Each variant runs in a fresh subprocess (peak RSS = ``ru_maxrss`` at its end, imports included):
  pandas   ``pd.read_csv(list_attr_celeba.txt, sep=r"\\s+", skiprows=1)``
  parse    ``read_attribute_file`` + ``read_partition_file``
  project  parse, then ``inventory_images`` (timed separately), then ``check_celeba`` with the manifest and
           Data Docs written to a temporary folder, as the flow does (Great Expectations import timed apart).
  project-nodocs  the same without Data Docs (``docs_dir=None``)

    python -m benchmarks.ingestion [--repeats 3] [--wait-idle 20:15]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Bench, common_args, emit, median, require_celeba, run_child, wait_for_idle

GIB_MIB = 1024


def child(variant: str) -> None:
    attr = require_celeba("list_attr_celeba.txt")
    part = require_celeba("list_eval_partition.txt")
    out: dict[str, object] = {"variant": variant}
    t0 = time.perf_counter()
    import pandas as pd

    out["import_s"] = time.perf_counter() - t0
    if variant == "pandas":
        t = time.perf_counter()
        frame = pd.read_csv(attr, sep=r"\s+", skiprows=1)
        out["parse_s"] = time.perf_counter() - t
        out["rows"] = len(frame)
        return emit(out)

    from recognize_me.data.celeba_files import read_attribute_file, read_partition_file

    t = time.perf_counter()
    table = read_attribute_file(attr)
    partition = read_partition_file(part)
    out["parse_s"] = time.perf_counter() - t
    out["rows"] = len(table.frame)
    if variant in ("project", "project-nodocs"):
        from recognize_me.data.attributes import CELEBA_ATTRIBUTES
        from recognize_me.data.inventory import inventory_images

        t = time.perf_counter()
        manifest = inventory_images(attr.parent / "img_align_celeba", table.frame["image_id"])
        out["inventory_s"] = time.perf_counter() - t
        out["decoded_images"] = int(manifest["exists"].sum())
        t = time.perf_counter()
        import great_expectations  # noqa: F401

        from recognize_me.data.checks import check_celeba

        out["gx_import_s"] = time.perf_counter() - t
        with tempfile.TemporaryDirectory() as docs:
            t = time.perf_counter()
            report = check_celeba(table.frame, partition, manifest, declared_rows=table.declared_rows,
                                  attribute_names=tuple(CELEBA_ATTRIBUTES),
                                  docs_dir=Path(docs) if variant == "project" else None)
            out["check_s"] = time.perf_counter() - t
        out["check_success"] = bool(report.success)
    emit(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh subprocesses per variant; medians count")
    parser.add_argument("--child", choices=["pandas", "parse", "project", "project-nodocs"], help=argparse.SUPPRESS)
    common_args(parser)
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    require_celeba("list_attr_celeba.txt")
    if args.wait_idle:
        wait_for_idle(deadline_utc=args.wait_idle)
    bench = Bench("ingestion", {"repeats": args.repeats, "attribute_file": str(require_celeba("list_attr_celeba.txt"))})
    summary: dict[str, dict[str, float]] = {}
    for variant in ("pandas", "parse", "project", "project-nodocs"):
        runs = [run_child("benchmarks.ingestion", "--child", variant) for _ in range(args.repeats)]
        keys = [k for k, v in runs[0].items() if isinstance(v, float)]
        med = {k: median([r[k] for r in runs]) for k in keys}
        med["maxrss_mib"] = max(r["maxrss_mib"] for r in runs)
        summary[variant] = med
        work = med["parse_s"] + med.get("check_s", 0.0)
        bench.row(variant=variant, rows=runs[0]["rows"], parse_s=med["parse_s"], inventory_s=med.get("inventory_s"),
                  gx_import_s=med.get("gx_import_s"), check_s=med.get("check_s"), parse_check_s=work,
                  process_wall_s=med["wall_s"], peak_rss_mib=med["maxrss_mib"],
                  check_success=runs[0].get("check_success"), repeats=args.repeats,
                  load_1min=max(r["load_1min"] for r in runs))
        print(f"  {variant}: parse {med['parse_s']:.2f} s, peak RSS {med['maxrss_mib']:.0f} MiB", flush=True)

    base = summary["pandas"]["parse_s"]
    p = summary["project"]
    for name, secs in [("parse / pandas", summary["parse"]["parse_s"]),
                       ("parse+check / pandas", p["parse_s"] + p["check_s"]),
                       ("parse+GX import+check / pandas", p["parse_s"] + p["gx_import_s"] + p["check_s"]),
                       ("parse+inventory+GX import+check / pandas",
                        p["parse_s"] + p["inventory_s"] + p["gx_import_s"] + p["check_s"])]:
        bench.ratio(f"wall {name}", secs / base, "<= 5", secs / base <= 5)
    q = summary["project-nodocs"]
    bench.ratio("wall parse+check without Data Docs / pandas", (q["parse_s"] + q["check_s"]) / base, "<= 5",
                (q["parse_s"] + q["check_s"]) / base <= 5)
    for variant, med in summary.items():
        bench.ratio(f"peak RSS {variant} (GiB)", med["maxrss_mib"] / GIB_MIB, "<= 1 GiB",
                    med["maxrss_mib"] <= GIB_MIB)
    bench.notes.append("check_s includes writing GX Data Docs (as the flow does); the inventory fully decodes "
                       "every present image with PIL in threads")
    bench.finish(["variant", "rows", "parse_s", "inventory_s", "gx_import_s", "check_s", "parse_check_s",
                  "process_wall_s", "peak_rss_mib", "check_success", "load_1min"])


if __name__ == "__main__":
    sys.exit(main())
