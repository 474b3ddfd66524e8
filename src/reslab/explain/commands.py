"""`reslab explain WEIGHTS IMAGES...`: parse the flags, build an ExplainConfig, call `explain_images`."""

from __future__ import annotations

import argparse
import sys

from reslab.cli_types import positive_int

_METHODS = ("cam", "gradcam", "gradcam++")  # reslab.explain.cam.METHODS, without importing torch for --help
_SCALES = ("prob", "shared", "per-map")  # reslab.explain.cam.SCALES


def add_commands(sub: argparse._SubParsersAction, bench_sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="heat maps of what a net looks at (CAM, Grad-CAM, Grad-CAM++)",
                       description="For each image: the top-k classes and a heat-map overlay per class "
                                   "(PNG), plus grid.png and explain.json in --out. Images are read and "
                                   "preprocessed as `reslab predict` does.")
    p.add_argument("weights", help="run or weights directory, or model.safetensors")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--method", choices=_METHODS, default="cam",
                   help="cam: exact for GAP+FC nets (every ResNet); gradcam, gradcam++: any net and layer")
    p.add_argument("--layer", help="module name the maps are taken from (default: the last stage)")
    p.add_argument("--scale", choices=_SCALES, default="prob",
                   help="prob (default): each map times its class's probability, so an improbable class stays "
                        "cold; shared: one image's maps on one scale (cam only); per-map: each map by its own "
                        "max (any class looks hot)")
    p.add_argument("--topk", type=positive_int, default=3, help="classes explained per image (default 3)")
    p.add_argument("--out", help="folder for the PNGs (default explain/<method>-<time>)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace reslab's earlier explain output in --out (never files reslab did not write)")
    p.add_argument("--skip-bad", action="store_true", help="report unreadable files at the end instead of stopping")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    p.add_argument("--label", default="", help="words added to the grid's title, e.g. what the net was trained on")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=_cmd_explain)


def _cmd_explain(args: argparse.Namespace) -> int:
    from reslab.explain.files import ExplainConfig, explain_images

    cfg = ExplainConfig(weights=args.weights, inputs=tuple(args.inputs), method=args.method, layer=args.layer,
                        topk=args.topk, out=args.out, overwrite=args.overwrite, skip_bad=args.skip_bad,
                        batch_size=args.batch_size,
                        device=args.device, label=args.label, scale=args.scale)
    result = explain_images(cfg)
    bad = [r for r in result.results if "error" in r]
    if args.json:
        from reslab.console import json_text

        print(json_text({"folder": str(result.folder), "results": result.results}))
    else:
        for r in result.results:
            if "topk" in r:
                print(r["file"] + ": " + ", ".join(f"{t['class']} {t['prob']:.3f}" for t in r["topk"]))
        print(f"overlays: {result.folder}" + (f"; grid: {result.grid}" if result.grid else ""))
    if bad:
        print(f"reslab explain: skipped {len(bad)} unreadable file(s):", file=sys.stderr)
        for r in bad:
            print(f"  {r['error']}", file=sys.stderr)
    return 0
