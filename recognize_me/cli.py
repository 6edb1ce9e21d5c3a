"""The ``recognize-me`` command line: ``recognize-me --help`` lists its commands (see ``build_parser``).

Config flags are generated from ``PipelineConfig``'s fields (``--image-size 64 64``, ``--models a b``,
``--no-augment-flip``); ``--config FILE.json`` loads a saved config and flags override it. Values are
parsed and checked by the typed config, so a mistyped value is rejected with the field's name.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from recognize_me.catalog import MODELS
from recognize_me.config import PipelineConfig
from recognize_me.console import filtered_stderr, import_tensorflow_quietly, quiet_environment
from recognize_me.data.attributes import CELEBA_ATTRIBUTES
from recognize_me.demo.data import DEMO_IMAGES

DEMO_DIR = Path("demo-data")


def _is_multi(annotation: Any) -> bool:
    """Fields whose type admits a list or tuple take several values on the command line."""
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        return True
    return any(_is_multi(a) for a in typing.get_args(annotation) if a is not type(None))


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="a JSON config file (flags override it)")
    group = parser.add_argument_group("pipeline config (see PipelineConfig)")
    for name, field in PipelineConfig.model_fields.items():
        if name == "fault_injection":
            continue
        flag = "--" + name.replace("_", "-")
        help_text = field.description or ""
        if field.annotation is bool:
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif _is_multi(field.annotation):
            group.add_argument(flag, dest=name, nargs="+", default=None, help=help_text)
        else:
            group.add_argument(flag, dest=name, default=None, help=help_text)


def config_from_args(args: argparse.Namespace, **defaults: Any) -> PipelineConfig:
    values: dict[str, Any] = dict(defaults)
    if getattr(args, "config", None):
        values |= json.loads(Path(args.config).read_text())
    for name in PipelineConfig.model_fields:
        v = getattr(args, name, None)
        if v is not None:
            # one word after --attributes is a preset name, unless it is a single attribute name
            values[name] = v[0] if name == "attributes" and len(v) == 1 and v[0] not in CELEBA_ATTRIBUTES else v
    return PipelineConfig.model_validate(values)


def cmd_demo_data(args: argparse.Namespace) -> int:
    from recognize_me.demo.data import generate_demo_data

    paths = generate_demo_data(Path(args.out), n_images=args.images, seed=args.seed)
    print(f"demo data written to {paths.root}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from recognize_me.data.inventory import summarize_manifest
    from recognize_me.data.validation import validate

    config = config_from_args(args)
    docs = Path(args.docs_dir) if args.docs_dir else None
    result = validate(config, docs_dir=docs, progress=True)
    s = summarize_manifest(result.manifest)
    print(f"{s['listed']} listed images: {s['available']} available, {s['absent']} absent "
          f"(e.g. {', '.join(s['absent_examples'][:3]) or '-'}), {s['undecodable']} undecodable"
          + (f" (e.g. {'; '.join(s['undecodable_examples'][:3])})" if s["undecodable"] else ""))
    print(result.report.to_markdown())
    if result.report.data_docs_index:
        print(f"Data Docs: {result.report.data_docs_index}")
    return 0 if result.report.success else 1


def cmd_train(args: argparse.Namespace, **defaults: Any) -> int:
    from flows.train_all import train_all

    config = config_from_args(args, **defaults)
    report = train_all(config=config)
    summary = json.loads((Path(report).parent / "leaderboard.json").read_text())
    best = summary[0]
    print(f"best model: {best['model']}, mean test accuracy {best['mean_accuracy']:.4f}")
    print(f"report: {report}")
    return 0


def demo_defaults(data: Path) -> dict[str, Any]:
    """The ``demo`` command's config, the same as the ``train-all/demo`` deployment's in prefect.yaml."""
    return {"celeba_dir": str(data), "me_dir": str(data / "me"), "others_dir": str(data / "others"),
            "models": list(MODELS.names()), "epochs": 5, "image_size": [48, 48]}


def cmd_demo(args: argparse.Namespace) -> int:
    data = Path(args.data)
    if not (data / "list_attr_celeba.txt").exists():
        from recognize_me.demo.data import generate_demo_data

        generate_demo_data(data, n_images=args.images, seed=0)
    return cmd_train(args, **demo_defaults(data))


def cmd_predict(args: argparse.Namespace) -> int:
    from recognize_me.me.predict import expand_paths, load_champions, load_run_models, summary_rows

    import_tensorflow_quietly()
    chosen = load_run_models(Path(args.run)) if args.run else load_champions(Path(args.registry))
    predictor = chosen.with_threshold(args.threshold)
    results = predictor.predict(expand_paths([Path(p) for p in args.images]))
    if args.json:
        print(json.dumps(results, indent=2, default=str))
        return 0
    print(f"models: is-me = {predictor.me_strategy} (threshold {predictor.threshold:.3f}), "
          f"attributes = {predictor.attribute_model_name}")
    for row in summary_rows(results):
        faces = f", {row['faces']} faces" if row["faces"] > 1 else ""
        verdict = row["error"] or f"{'ME' if row['is_me'] else 'not me'} (p={row['p_me']:.3f}{faces})"
        print(f"{row['image']}: {verdict}" + (f" | {row['attributes']}" if row["attributes"] else ""))
    return 0


def cmd_find(args: argparse.Namespace) -> int:
    from flows.find import find_me
    from recognize_me.me.contact_sheet import MATCHES_CSV

    sheet = Path(find_me(photos_dir=Path(args.photos_dir), run_dir=Path(args.run) if args.run else None,
                         registry=Path(args.registry), out_dir=Path(args.out) if args.out else None,
                         workers=args.workers, chunk_size=args.chunk_size, console_progress=True,
                         threshold=args.threshold))
    print(f"matches: {sheet.parent / MATCHES_CSV}")
    print(f"contact sheet: {sheet}")
    return 0


def probability(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1 (``predict.check_probability``)."""
    from recognize_me.me.predict import check_probability

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    try:
        return check_probability(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_threshold_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threshold", type=probability, default=None,
                        help="'is this me?' threshold between 0 and 1 instead of the one chosen on validation "
                             "(lower finds more of the near misses, and more strangers)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recognize-me", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo-data", help="write synthetic faces in the official CelebA layout")
    p.add_argument("--out", required=True)
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo_data)
    p = sub.add_parser("validate", help="ingest and check the data only; exit 1 on a critical failure")
    p.add_argument("--celeba", dest="celeba_dir", help="alias of --celeba-dir")
    p.add_argument("--docs-dir", help="write Great Expectations Data Docs here")
    add_config_flags(p)
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("train", help="run the train-all flow")
    p.add_argument("--celeba", dest="celeba_dir", help="alias of --celeba-dir")
    add_config_flags(p)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("demo", help="generate demo data (once) and run train-all on it with every catalogued model")
    p.add_argument("--data", default=str(DEMO_DIR))
    p.add_argument("--images", type=int, default=DEMO_IMAGES)
    add_config_flags(p)
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("predict", help="is this me? and the CelebA attributes, for images or folders")
    p.add_argument("images", nargs="+")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--registry", default="artifacts/registry", help="use this registry's champions (default)")
    p.add_argument("--run", help="use the best models of this run folder instead of the champions")
    add_threshold_flag(p)
    p.set_defaults(func=cmd_predict)
    p = sub.add_parser("find", help="find yourself in a photo library: every face of every photo, incremental")
    p.add_argument("photos_dir", help="folder of photos (recursive; JPEG, PNG, WebP, AVIF, HEIC)")
    p.add_argument("--run", help="use the best models of this run folder instead of the champions")
    p.add_argument("--registry", default="artifacts/registry", help="use this registry's champions (default)")
    p.add_argument("--out", help="output folder (default artifacts/find/<folder>-<hash>)")
    p.add_argument("--workers", type=int, default=2, help="processes detecting and judging faces")
    p.add_argument("--chunk-size", type=int, default=16, help="photos per task")
    add_threshold_flag(p)
    p.set_defaults(func=cmd_find)
    p = sub.add_parser("serve", help="local Prefect server (if none) + the prefect.yaml deployments")
    p.add_argument("--only", nargs="+", help="serve only these deployment names")
    p.set_defaults(func=cmd_serve)
    return parser


def cmd_serve(args: argparse.Namespace) -> int:
    from deployments.serve import main as serve_main

    return serve_main(["--only", *args.only] if args.only else [])


def main(argv: list[str] | None = None) -> int:
    quiet_environment()  # before Prefect or TensorFlow is imported; a user's own setting wins
    args = build_parser().parse_args(argv)
    try:
        with filtered_stderr():
            return args.func(args)
    except ValidationError as err:
        print(f"invalid configuration:\n{err}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
