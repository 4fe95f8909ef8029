"""``alva data``: describe a data set (``alva data info SPEC``) or write it as an image folder or ``.npz``
(``alva data export SPEC --out DIR``), in a form every command reads back with ``--data``."""

from __future__ import annotations

import argparse
import json

import alva.data
from alva.cli.common import add_once, paragraph
from alva.cli.inputs import DATA_HELP, image_size
from alva.data.export import FORMATS

EXPORT = paragraph("""
Write the --split of the data set SPEC as an image folder of PNGs, one subfolder per class (--format png), or as
one .npz file of arrays x (uint8) and y (--format npz). Reading the result back with --data gives bit-identical
images and labels (an image folder in class order).
""")


def register(commands) -> None:
    p = commands.add_parser("data", help="describe or export a data set",
                            description="Describe a data set or export it as an image folder or .npz file.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    info = actions.add_parser("info", help="print what a data set holds (shape, classes, size) as JSON",
                              description="Print the shape, classes and size of the --split of SPEC as JSON.")
    export = actions.add_parser("export", help="write a data set as PNG folders or .npz", description=EXPORT)
    for parser in (info, export):
        parser.add_argument("spec", metavar="SPEC", help=DATA_HELP)
        parser.add_argument("--split", default="test", help="the split to read (train or test)")
        parser.add_argument("--resize", type=image_size, default=None, metavar="HxW",
                            help="resize every image to HxW (bilinear)")
        add_once(parser, "--data-root", default=None,
                 help="folder with the MNIST IDX files (default: $ALVA_MNIST_ROOT, else data/mnist)")
        parser.add_argument("--debug", action="store_true", help="show the full traceback on error")
    export.add_argument("--out", required=True,
                        help="the new folder (png; must not exist or be empty) or FILE.npz (npz)")
    export.add_argument("--format", default="png", choices=list(FORMATS))
    info.set_defaults(handler=run_info)
    export.set_defaults(handler=run_export)


def run_info(args: argparse.Namespace) -> int:
    data = alva.data.load(args.spec, args.split, resize=args.resize, root=args.data_root)
    print(json.dumps(data.describe(), indent=2))
    return 0


def run_export(args: argparse.Namespace) -> int:
    try:
        out = alva.data.export(args.spec, args.split, args.out, format=args.format, resize=args.resize,
                               root=args.data_root)
    except FileExistsError as err:
        raise ValueError(str(err)) from None
    print(f"wrote the {args.split} split of {args.spec} to {out} ({args.format})")
    return 0


__all__ = ["register", "run_export", "run_info"]
