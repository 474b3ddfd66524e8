"""CLI sub-commands: `reslab predict`, `reslab convert`, `reslab export`, `reslab bench infer`."""

from __future__ import annotations

import argparse
import json
import sys

from reslab import cli_types
from reslab.deploy.paths import CHOICES as PATH_CHOICES
from reslab.deploy.paths import FORMATS
from reslab.errors import ReslabError


def add_commands(sub: argparse._SubParsersAction, bench_sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify image files or folders with reslab weights")
    p.add_argument("weights", help="run or weights directory, or model.safetensors")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--topk", type=cli_types.positive_int, default=5)
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--skip-bad", action="store_true", help="report unreadable files at the end instead of stopping")
    p.add_argument("--batch-size", type=cli_types.positive_int, default=32)
    p.add_argument("--path", choices=PATH_CHOICES, default="auto", help="inference path (default: auto)")
    p.add_argument("--classes", metavar="FILE", help="class names to print instead of model.json's: one per line, "
                                                     "or a JSON list")
    p.add_argument("--calib", metavar="DIR", help="calibration images for --path int8 (required there; --path auto "
                   "considers int8 for jobs of 2,000+ ResNet-50 images of work only with them)")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("convert", help="torchvision/timm/.pth checkpoint -> reslab weights")
    p.add_argument("checkpoint", help=".safetensors, .pth, .pt or .bin state dict, or pretrained weights by name: "
                                      "torchvision:resnet50[.IMAGENET1K_V2], timm:resnet18.a1_in1k")
    p.add_argument("--model", help="registered model name, e.g. resnet50 (named weights: theirs)")
    p.add_argument("--out", required=True, help="directory for model.safetensors + model.json")
    p.add_argument("--num-classes", type=cli_types.positive_int)
    p.add_argument("--finetune", action="store_true", help="keep a fresh classifier when the head's shape differs")
    p.add_argument("--classes", metavar="FILE", help="class names: one per line, or a JSON list (default: "
                                                     "ImageNet's for a 1000-class classifier, else 0..N-1)")
    p.add_argument("--overwrite", action="store_true", help="replace model.safetensors / model.json in --out")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("export", help="write ONNX / TorchScript / ExportedProgram and check parity with eager")
    p.add_argument("weights")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--int8", action="store_true", help="static int8 quantisation (onnx only; needs --calib)")
    p.add_argument("--out", help="output file (default: beside the weights)")
    p.add_argument("--calib", help="directory of calibration images (int8) also used for the parity check")
    p.add_argument("--overwrite", action="store_true", help="replace the output file when it exists")
    p.set_defaults(func=_cmd_export)

    p = bench_sub.add_parser("infer", help="CPU inference paths vs torchvision eager and onnxruntime")
    p.add_argument("--model", default="resnet50")
    p.add_argument("--batch-size", type=cli_types.positive_int, default=16)
    p.add_argument("--repeats", type=cli_types.positive_int, default=10, help="timed rounds (latency: 3x as many)")
    p.add_argument("--image-size", type=cli_types.image_size,
                   help="SIZE (square inputs; default: the model's design resolution)")
    p.add_argument("--threads", type=cli_types.positive_int, help="default: physical cores")
    p.add_argument("--paths", help="comma-separated reslab paths (default: all)")
    p.add_argument("--no-malloc-tuning", action="store_true", help="leave glibc's malloc thresholds alone")
    p.add_argument("--no-openvino", action="store_true",
                   help="leave out the OpenVINO rows (default precision and f32; they need reslab[openvino])")
    p.add_argument("--out", help="where to save the report (default: bench-infer-MODEL.json)")
    p.add_argument("--overwrite", action="store_true", help="replace the report file when it exists")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of the table")
    p.set_defaults(func=_cmd_bench_infer)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def _cmd_predict(args: argparse.Namespace) -> int:
    from reslab.console import plural
    from reslab.data.classnames import check_class_count, read_class_names
    from reslab.deploy.predict import build_predict_engine, expand_inputs, predict
    from reslab.hardware import tune_malloc
    from reslab.weights import load_weights

    tune_malloc()
    model, meta = load_weights(args.weights)
    if args.classes:
        meta["classes"] = check_class_count(read_class_names(args.classes), len(meta["classes"]), args.weights)
    files = expand_inputs(args.inputs)
    calib = expand_inputs([args.calib]) if args.calib else None
    engine = build_predict_engine(model, meta, files, args.path, batch_size=args.batch_size, calib=calib)
    _stderr(f"reslab predict: inference path {engine.name} (--path {args.path}, {plural(len(files), 'image')})")
    results = predict((model, meta), files, topk=args.topk, skip_bad=args.skip_bad, batch_size=args.batch_size,
                      engine=engine)
    good = [r for r in results if "error" not in r]
    bad = [r for r in results if "error" in r]
    if args.json:
        # allow_nan=False: a bare NaN is not JSON (predict raises on non-finite outputs first)
        print(json.dumps({"weights": str(args.weights), "path": engine.name, "results": results}, indent=2,
                         allow_nan=False))
    else:
        _print_tables(good)
    if bad:
        _stderr(f"reslab predict: skipped {len(bad)} unreadable file(s):")
        for r in bad:
            _stderr(f"  {r['error']}")
    return 0


def _print_tables(results: list[dict]) -> None:
    """One table for all files: the top-1 class and its probability, then the runners-up."""
    from rich.table import Table

    from reslab.console import console

    if not results:
        return
    table = Table()
    for name in ("file", "class", "prob", "next"):
        table.add_column(name, justify="right" if name == "prob" else "left", overflow="fold")
    for r in results:
        top, *rest = r["topk"]
        table.add_row(r["file"], top["class"], f"{top['prob']:.4f}",
                      ", ".join(f"{t['class']} {t['prob']:.4f}" for t in rest))
    console().print(table, markup=False, highlight=False)


def _cmd_convert(args: argparse.Namespace) -> int:
    from reslab.data.classnames import read_class_names
    from reslab.weights import convert

    classes = read_class_names(args.classes) if args.classes else None
    out = convert(args.checkpoint, model=args.model, out_dir=args.out, num_classes=args.num_classes,
                  finetune=args.finetune, classes=classes, overwrite=args.overwrite)
    print(f"wrote {out / 'model.safetensors'} and {out / 'model.json'}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from reslab.deploy.export import export

    result = export(args.weights, format=args.format, int8=args.int8, out=args.out, calib_images=args.calib,
                    overwrite=args.overwrite)
    print(result.summary())
    return 0


def _cmd_bench_infer(args: argparse.Namespace) -> int:
    from reslab.deploy.bench import BENCH_PATHS, bench_infer, print_report, report_path, save_report
    from reslab.outputs import check_file_out

    check_file_out(report_path(args.out, args.model), overwrite=args.overwrite)  # fails now, not after the benchmark
    paths = tuple(p.strip() for p in args.paths.split(",")) if args.paths else BENCH_PATHS
    side = None
    if args.image_size is not None:
        side, width = args.image_size
        if side != width:
            raise ReslabError(f"bench infer times square inputs. Received: --image-size {side}x{width}; "
                              f"pass one side, e.g. --image-size {side}")
    report = bench_infer(args.model, batch_size=args.batch_size, repeats=args.repeats, image_size=side,
                         threads=args.threads, paths=paths, malloc=not args.no_malloc_tuning,
                         openvino=not args.no_openvino,
                         log=lambda s: _stderr(f"reslab bench infer: {s}"))
    report["args"] = {k: v for k, v in vars(args).items() if k != "func"}
    if args.json:
        from reslab.console import json_text

        print(json_text(report))
    else:
        print_report(report)
    out = save_report(report, args.out, overwrite=args.overwrite)
    _stderr(f"reslab bench infer: saved {out}")
    return 0
