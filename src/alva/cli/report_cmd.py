"""``alva report RUN_DIR``: one self-contained HTML page of what a run folder holds (tables, plots, images)."""

from __future__ import annotations

import argparse

from alva.cli.common import paragraph

DESCRIPTION = paragraph("""
Write one self-contained HTML page (images embedded, no network, no JavaScript) of a run folder of any alva command:
what was done, the key figures in tables, the image grids and plots. Sub-folders (the parts of runs/demo, a folder of
runs) get sections too, in the order the run made them; each JSON file is shown by what its "kind" says it holds.
""")


def register(commands) -> None:
    p = commands.add_parser("report", help="write a self-contained HTML report of a run folder",
                            description=DESCRIPTION)
    p.add_argument("run_dir", metavar="RUN_DIR", help="the folder a command wrote (its --out)")
    p.add_argument("--out", default=None, help="the HTML file (default: RUN_DIR/report.html)")
    p.add_argument("--depth", type=int, default=2,
                   help="levels of sub-folders that get sections too (default 2; 0: RUN_DIR only)")
    p.add_argument("--title", default=None, help="the page title (default: the folder's name)")
    p.add_argument("--debug", action="store_true", help="show the full traceback on error")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from alva.report.html import build_report
    from alva.tracking.files import atomic_write_bytes

    if args.depth < 0:
        raise ValueError(f"--depth must be >= 0, got {args.depth}")
    page, sections = build_report(args.run_dir, depth=args.depth, title=args.title)
    out = args.out if args.out is not None else f"{args.run_dir.rstrip('/')}/report.html"
    atomic_write_bytes(out, page.encode("utf-8"))
    images = sum(len(s.images) for s in sections)
    print(f"wrote {out}: {len(sections)} section(s) ({', '.join(s.id for s in sections)}), {images} image(s), "
          f"{len(page) / 1e6:.1f} MB")
    return 0
