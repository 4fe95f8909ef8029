"""``alva train``: train a classifier (an architecture or the user's FILE.py:FUNCTION) on any data set, resumable,
with metrics and a model card."""

from __future__ import annotations

import argparse

from alva import distributed
from alva.cli.common import add_common, add_numbers, settings_from
from alva.cli.inputs import DATA_HELP, add_data_options, fraction, model_options
from alva.cli.run_folder import claim
from alva.models import ARCHITECTURES, zoo
from alva.training import OBJECTIVES, ClassifierRun, TrainSettings, train_classifier
from alva.training.classifier import DATASETS
from alva.training.settings import COLLAPSE_RETRIES, OPTIMIZERS, SCHEDULES


def register(commands) -> None:
    p = commands.add_parser("train", help="train a classifier on any data set",
                            description="Train a classifier on the train split of --data, testing on its test "
                                        "split after every epoch; writes model.safetensors + model.json (card), "
                                        "checkpoint.safetensors, metrics.jsonl and TensorBoard logs to --out. A "
                                        "FILE.py:FUNCTION model's card records that function: load the run folder "
                                        "with --trust-code.")
    add_data_options(p, splits=True)
    p.add_argument("--dataset", dest="data", default=argparse.SUPPRESS, help=f"the same as --data ({DATA_HELP})")
    p.add_argument("--model", default="cnn-small", metavar="SPEC",
                   help=f"an architecture ({', '.join(ARCHITECTURES)}) or FILE.py:FUNCTION / "
                        "package.module:FUNCTION, a function returning an nn.Module for the data's image shape "
                        "and classes (imports and runs that code)")
    p.add_argument("--mean", default=None, metavar="M1,M2,M3",
                   help="per-channel mean the inputs are standardised with (default: the architecture's; identity "
                        "for FILE.py:FUNCTION)")
    p.add_argument("--std", default=None, metavar="S1,S2,S3", help="per-channel standard deviation, with --mean")
    p.add_argument("--bounds", default=None, metavar="LO,HI",
                   help="FILE.py:FUNCTION only: range of the inputs (default 0,1)")
    p.add_argument("--model-kwargs", default=None, metavar="JSON",
                   help="FILE.py:FUNCTION only: keyword arguments of the function, as a JSON object")
    add_numbers(p, epochs=2, batch_size=128, lr=1e-3)
    p.add_argument("--optimizer", default="adam", choices=OPTIMIZERS)
    p.add_argument("--momentum", type=float, default=0.9, help="for sgd")
    add_numbers(p, weight_decay=0.0)
    p.add_argument("--schedule", default="constant", choices=SCHEDULES)
    add_numbers(p, seed=0)
    p.add_argument("--adv", "--objective", dest="objective", default=None,
                   choices=sorted(k for k in OBJECTIVES if k != "logistic-fgsm"),
                   help="training objective: standard (cross-entropy, mnist), fgsm-mix (Goodfellow et al.), pgd "
                        "(Madry et al.), fast (FGSM with random start, Wong et al.), n-fgsm (FGSM from a larger noise, "
                        "unprojected, de Jorge et al.), grad-align (FGSM plus gradient alignment, Andriushchenko and "
                        "Flammarion), trades (Zhang et al.); bce or "
                        "asl (multi-label binary cross-entropy or asymmetric loss, mnist-multilabel); default: the "
                        "data set's (standard, asl)")
    adv = p.add_argument_group("adversarial objectives (fgsm-mix, pgd, fast, n-fgsm, grad-align, trades)")
    adv.add_argument("--eps", type=fraction, default=None,
                     help="L-inf radius, e.g. 8/255 (default: 8/255 on RGB data; on 1-channel data such as MNIST "
                          "fgsm-mix 0.25, the others 0.3)")
    adv.add_argument("--alpha", type=fraction, default=None,
                     help="attack step (defaults: pgd/trades 2.5 eps / steps, fast 1.25 eps, n-fgsm/grad-align eps)")
    adv.add_argument("--attack-steps", type=int, default=None, help="pgd/trades attack steps (default 10)")
    adv.add_argument("--mix", type=float, default=None, help="fgsm-mix weight of the clean loss (default 0.5)")
    adv.add_argument("--beta", type=float, default=None, help="trades weight of the robust KL term (default 6)")
    adv.add_argument("--noise", type=float, default=None,
                     help="n-fgsm: radius of the uniform noise, in multiples of eps (default 2)")
    adv.add_argument("--align-weight", type=float, default=None,
                     help="grad-align: weight lambda of the gradient-alignment term (default 2)")
    adv.add_argument("--clip-start", action="store_const", const=True, default=None,
                     help="fast: clip the random start to the image bounds before its gradient (default: not "
                          "clipped, as in Wong et al.'s code; clipped, MNIST training at eps 0.3 collapses)")
    adv.add_argument("--ramp-epochs", type=int, default=None,
                     help="raise eps linearly from eps/N to eps over the first N epochs (default 0: no ramp)")
    adv.add_argument("--eval-steps", type=int, default=None,
                     help="PGD steps of the adversarial validation after each epoch (default 20)")
    adv.add_argument("--eval-size", type=int, default=None,
                     help="test images for the adversarial validation (default 1000; 0: off)")
    p.add_argument("--monitor", default="",
                   help="keep the weights of the epoch with the best value of this evaluation figure (of tied "
                        "epochs, the later), e.g. pgd20_acc (adversarial validation accuracy) or clean_acc")
    p.add_argument("--patience", type=int, default=0,
                   help="with --monitor: stop after this many epochs without improvement (default 0: never)")
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="evaluate, monitor and save an exponential moving average of the weights with this decay, "
                        "e.g. 0.999 (default 0: off); training goes on from the raw weights")
    p.add_argument("--collapse-lr-factor", type=float, default=0.0, metavar="FACTOR",
                   help="fast: when the guard sees catastrophic overfitting, roll the epoch back, multiply the "
                        "learning rate by FACTOR for the rest of the run and train the epoch again, at most "
                        f"{COLLAPSE_RETRIES} times per epoch (default 0: roll back and stop)")
    p.add_argument("--gamma-neg", type=float, default=None, help="asl: focusing exponent of negatives (default 4)")
    p.add_argument("--gamma-pos", type=float, default=None, help="asl: focusing exponent of positives (default 1)")
    p.add_argument("--clip", type=float, default=None, help="asl: probability margin of negatives (default 0.05)")
    p.add_argument("--train-size", type=int, default=None,
                   help="train on a fixed stratified subset of this size (default: all); mnist-multilabel: generate "
                        "this many training images (default 30000)")
    p.add_argument("--test-size", type=int, default=None,
                   help="evaluate on a fixed stratified test subset of this size (default: all); mnist-multilabel: "
                        "generate this many test images (default 5000)")
    add_common(p, run, out="run folder", resume="continue the run in --out from its last finished epoch")


# flag -> (keyword of the objective, the objectives that take it)
_BALL = {"fgsm-mix", "pgd", "fast", "n-fgsm", "grad-align", "trades"}
OBJECTIVE_FLAGS = {
    "gamma_neg": ("gamma_neg", {"asl"}), "gamma_pos": ("gamma_pos", {"asl"}), "clip": ("clip", {"asl"}),
    "eps": ("eps", _BALL), "alpha": ("alpha", _BALL - {"fgsm-mix"}),
    "attack_steps": ("steps", {"pgd", "trades"}), "mix": ("mix", {"fgsm-mix"}), "beta": ("beta", {"trades"}),
    "noise": ("noise", {"n-fgsm"}), "align_weight": ("align_weight", {"grad-align"}),
    "clip_start": ("clip_start", {"fast"}),
    "ramp_epochs": ("ramp_epochs", _BALL), "eval_steps": ("eval_steps", _BALL), "eval_size": ("eval_size", _BALL),
}


def objective_settings(args: argparse.Namespace, objective: str) -> dict:
    """The keyword settings of ``objective`` from the flags given; a clear error for a flag it does not take."""
    chosen = {}
    for flag, (keyword, takers) in OBJECTIVE_FLAGS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if objective not in takers:
            raise ValueError(f"--{flag.replace('_', '-')} is a setting of --adv {'/'.join(sorted(takers))}, "
                             f"not of {objective}")
        chosen[keyword] = value
    return chosen


def run(args: argparse.Namespace) -> int:
    args.device = distributed.init_from_env(args.device)
    settings = settings_from(TrainSettings, args)
    objective = args.objective or DATASETS.get(args.data)  # None: by the data's labels
    if settings.collapse_lr_factor and not hasattr(OBJECTIVES.get(objective or "standard"), "check"):
        guarded = sorted(name for name, kind in OBJECTIVES.items() if hasattr(kind, "check"))
        raise ValueError(f"--collapse-lr-factor acts on the collapse guard of --adv {'/'.join(guarded)}; "
                         f"{objective or 'this objective'} has none")
    chosen = objective_settings(args, objective or "standard")
    job = ClassifierRun(model=args.model, out=args.out, settings=settings, objective=objective,
                        objective_settings=chosen, train_size=args.train_size, test_size=args.test_size,
                        device=args.device, data_root=args.data_root, dataset=args.data,
                        train_split=args.train_split, test_split=args.test_split, resize=args.resize,
                        model_options=model_options(args))
    train_classifier(job, resume=args.resume, progress=not args.no_progress,
                     claim=lambda inputs: claim(args, inputs))
    if not distributed.is_main():
        return 0
    info = zoo.card(args.out)
    if info["task"] == "multilabel":
        print(f"test mAP {info['clean_test_map']:.4f}, exact match {info['clean_test_accuracy']:.4f}, "
              f"macro F1 {info['clean_test_macro_f1']:.4f}; weights and card in {args.out}/model.safetensors")
    else:
        print(f"clean test accuracy {info['clean_test_accuracy']:.4f}; weights and card in "
              f"{args.out}/model.safetensors")
    return 0
