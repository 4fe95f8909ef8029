"""``alva eval``: the strong evaluation (by default AutoAttack's standard version: APGD-CE, APGD-T, FAB-T, Square)
of a classifier on a fixed subset of a data set."""

from __future__ import annotations

import argparse
import sys

import torch

from alva import distributed
from alva.cli import inputs
from alva.cli.common import add_common, paragraph
from alva.cli.run_folder import claim
from alva.evaluation.strong import MEMBERS, NORMS, VERSIONS, StrongEvaluation
from alva.evaluation.strong_members import EXTRAS
from alva.evaluation.strong_result import write_result

DESCRIPTION = paragraph("""
Run AutoAttack's standard version (APGD-CE, APGD-T, FAB-T and Square, in that order, with AutoAttack's budgets;
each attack only on the points still classified correctly), or another version, on a fixed stratified subset of
--data (default: the MNIST test split), with sanity checks. Writes result.json and a resumable state
(state.safetensors) to --out and prints the per-attack table.
""")


def _attack_list(text: str) -> list[str]:
    names = [a.strip() for a in text.split(",") if a.strip()]
    unknown = [a for a in names if a not in MEMBERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names from {','.join(MEMBERS)}, got {text!r}")
    return names


def register(commands) -> None:
    p = commands.add_parser("eval", help="strong robustness evaluation (AutoAttack-style ensemble)",
                            description=DESCRIPTION)
    inputs.add_data_options(p)
    inputs.add_model_options(p)
    p.add_argument("--eps", type=inputs.fraction, default=None,
                   help=f"radius of the threat model, e.g. 8/255 ({inputs.EPS_HELP})")
    p.add_argument("--norm", default="linf", choices=list(NORMS))
    p.add_argument("--attacks", type=_attack_list, default=None,
                   help=f"comma-separated attacks in order, from {','.join(MEMBERS)} (default: the version's)")
    p.add_argument("--version", default="standard", choices=sorted(VERSIONS),
                   help="standard (AutoAttack's: APGD-CE, APGD-T, FAB-T, Square; 100 steps, 9 targets, 5000 "
                        "queries), plus (AutoAttack+), rand (EOT over 20 passes, for randomised models) or quick")
    p.add_argument("--with", dest="extras", action="append", choices=sorted(EXTRAS), default=[],
                   help="add members: decision adds HopSkipJump (labels only) after Square, for models whose scores "
                        "cannot be trusted")
    p.add_argument("--n", type=int, default=1000, help="number of test images (fixed stratified subset)")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--seed", type=int, default=0, help="seeds the attacks and the choice of images")
    p.add_argument("--resume", action="store_true", help="go on from the state in --out")
    p.add_argument("--no-sanity", action="store_true", help="skip the sanity checks")
    p.add_argument("--out", required=True, help="output folder")
    add_common(p, run_folder=True)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    args.device = distributed.init_from_env(args.device)  # under torchrun: each process attacks its share
    data = inputs.load_data(args)
    if data.task != "multiclass":
        raise ValueError(f"alva eval needs class labels; {args.data!r} has multi-hot labels")
    model = inputs.load_model(args, data)
    args.eps = inputs.default_eps(data) if args.eps is None else args.eps
    x, y = inputs.samples(data, args.n, args.seed)  # tensors, or a streamed set read batch by batch
    # The resumable state needs the images in memory and one process.
    stateful = isinstance(x, torch.Tensor) and not distributed.is_initialized()
    if args.resume and not stateful:
        raise ValueError("--resume needs the images in memory and one process (not torchrun, not a streamed set)")
    main = distributed.is_main()
    evaluation = StrongEvaluation(model, args.eps, args.norm, version=args.version, attacks=args.attacks,
                                  extras=args.extras,
                                  seed=args.seed, batch_size=args.batch_size, device=args.device,
                                  progress=not args.no_progress and main, sanity=not args.no_sanity, warn=False,
                                  log=lambda line: print(line, file=sys.stderr))
    out = claim(args, {"--model": model, "data": x if y is None else (x, y)})
    try:
        result = evaluation.run(x, y, state_dir=out if stateful else None, resume=args.resume)
    except KeyboardInterrupt:
        print(f"\nalva eval: the state in {out} is saved after every batch; add --resume to the same command to go "
              "on", file=sys.stderr)
        raise
    write_result(result, out, model=args.model, arguments={k: v for k, v in vars(args).items() if k != "handler"})
    if not main:
        return 0
    print(f"strong evaluation of {args.model}: {args.norm} eps={args.eps:.4g}, {result.n} test images, "
          f"version {args.version}")
    print(result.format_table())
    for message in result.warnings:
        print(f"WARNING: {message}")
    print(f"robust accuracy {result.robust_acc:.4f} (clean {result.clean_acc:.4f}); wrote {out}/result.json")
    return 0


__all__ = ["register", "run"]
