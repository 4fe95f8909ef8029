"""``alva fakeclass``: fake-class adversarial training against sparse confident images, with its eleven metrics."""

from __future__ import annotations

import argparse
from typing import Any

from alva.cli.common import add_common, add_numbers, settings_from
from alva.cli.inputs import add_data_options, add_model_options, load_splits
from alva.cli.model_inputs import MNIST_SHAPE
from alva.cli.run_folder import claim
from alva.cli.sparse_cmd import max_pixels, pixel_count
from alva.report.fakeclass import metric_value
from alva.training.fakeclass import DESettings, FakeClassSettings, ReferenceSettings, SparseSettings, fakeclass_train

DEFAULTS = FakeClassSettings()


def register(commands) -> None:
    p = commands.add_parser(
        "fakeclass", help="fake-class adversarial training against sparse confident images",
        description="A classifier with K real and K fake classes: each round, generate sparse images that the "
                    "network gives class k with probability >= --confidence (at most --max-pixels non-zero "
                    "pixels), label them fake class K+k, retrain on real and all generated images; stop when "
                    "the generation success rate falls below --threshold (the network is deemed robust) or "
                    "after --rounds. Logs eleven metrics (see alva.training.fakeclass) to OUT/metrics.jsonl, "
                    "TensorBoard (OUT/tb) and OUT/rounds.json; plots OUT/metrics.png and OUT/round_NNN.png. "
                    "The real classes, image shape and both halves of the training images come from --data. "
                    "With the defaults (MNIST) it takes one to two minutes on two CPU cores.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_model_options(p, name="--classifier")
    add_data_options(p, splits=True)
    p.add_argument("--from-scratch", action="store_true",
                   help="a fresh network of that architecture, trained on the real half for --pretrain-epochs")
    add_numbers(p, pretrain_epochs=DEFAULTS.pretrain_epochs)
    p.add_argument("--rounds", type=int, default=DEFAULTS.rounds, help="most training rounds")
    p.add_argument("--per-class", type=int, default=DEFAULTS.per_class,
                   help="images generated per target class per round, to train on")
    p.add_argument("--test-per-class", type=int, default=DEFAULTS.test_per_class,
                   help="held-out images generated per target class per round (metrics 4 and 5)")
    p.add_argument("--threshold", type=float, default=DEFAULTS.threshold,
                   help="stop when the generation success rate is below this")
    a = DEFAULTS.attack
    gen = p.add_argument_group("generation (SparseConfident)")
    gen.add_argument("--steps", type=int, default=a.steps, help="full step budget per image")
    gen.add_argument("--lam", type=float, default=a.lam, help="weight of the L1 penalty")
    gen.add_argument("--attack-lr", type=float, default=a.lr, help="step size of the generation")
    add_numbers(gen, confidence=a.confidence)
    gen.add_argument("--max-pixels", type=pixel_count, default=None,
                     help="a count (300) or a fraction of the image's pixels (0.05); default: 300 of 784 pixels, "
                          "the same share of other sizes")
    gen.add_argument("--mask-fraction", type=float, default=a.mask_fraction,
                     help="random share of pixels held at 0 (makes the images of a class differ)")
    d = DEFAULTS.de
    de = p.add_argument_group("differential evolution (metric 7)")
    de.add_argument("--de-per-class", type=int, default=d.per_class, help="0: no DE images")
    add_numbers(de, de_pixels=d.pixels, de_popsize=d.popsize, de_generations=d.generations)
    ref = p.add_argument_group("reference network (metric 6), trained on the other half of MNIST train")
    add_numbers(ref, reference_epochs=DEFAULTS.reference.epochs)
    ref.add_argument("--reference-outputs", type=int, default=None, help="K or 2K (default: K, the data's classes)")
    ref.add_argument("--reference-size", type=int, default=None,
                     help="images of the other half it trains on (default: all 30000)")
    ref.add_argument("--reference-per-class", type=int, default=DEFAULTS.reference.per_class,
                     help="sparse images per class generated on it")
    p.add_argument("--epochs", type=int, default=DEFAULTS.epochs, help="training epochs per round")
    add_numbers(p, lr=DEFAULTS.lr, batch_size=DEFAULTS.batch_size)
    p.add_argument("--train-size", type=int, default=None,
                   help="real training images from the first half of MNIST train (default: all 30000)")
    p.add_argument("--min-fake-share", type=float, default=DEFAULTS.min_fake_share,
                   help="generated images repeated to make up at least this share of the training data")
    p.add_argument("--sample", type=int, default=DEFAULTS.sample,
                   help="most past generated images evaluated per epoch (metrics 3 and 5)")
    p.add_argument("--eval-train-size", type=int, default=DEFAULTS.eval_train_size, help="real images of metric 9")
    p.add_argument("--eval-test-size", type=int, default=None, help="real test images of metric 10 (default: all)")
    p.add_argument("--nn-pool-size", type=int, default=DEFAULTS.nn_pool_size,
                   help="training images searched for the nearest neighbour (metric 1)")
    add_numbers(p, seed=DEFAULTS.seed)
    add_common(p, run, out="run folder",
               resume="continue the run in --out after its last finished round")


def settings_from_args(args: argparse.Namespace, num_classes: int = DEFAULTS.num_classes,
                       shape: tuple[int, ...] = MNIST_SHAPE) -> FakeClassSettings:
    """The settings the options give, for data of ``num_classes`` classes and images of ``shape``."""
    return settings_from(
        FakeClassSettings, args, num_classes=num_classes,
        attack=SparseSettings(steps=args.steps, lam=args.lam, lr=args.attack_lr, confidence=args.confidence,
                              max_pixels=max_pixels(args.max_pixels, shape), mask_fraction=args.mask_fraction),
        de=settings_from(DESettings, args, "de_"),
        reference=settings_from(ReferenceSettings, args, "reference_", outputs=args.reference_outputs or num_classes))


COLUMNS = (
    ("round", None), ("(0) succ", "m00_generation.success_rate"), ("(0) p", "m00_generation.target_prob"),
    ("(0) L0", "m00_generation.l0"), ("(1) NN-L2", "m01_ood.nn_dist"), ("(2) det", "m02_current_batch.detected"),
    ("(3) det", "m03_past_train.detected"), ("(4) det", "m04_test_current.detected"),
    ("(5) det", "m05_test_past.detected"), ("(6) det", "m06_other_network.detected"),
    ("(7) det", "m07_other_process.current_net.detected"), ("(8) succ", "m08_final_sparse.success_rate"),
    ("(9) acc", "m09_real_train.acc"), ("(10) acc", "m10_real_test.acc"),
)


def table(state: dict[str, Any]) -> str:
    """One line per round: generation (0), OOD proxy (1), detected as fake (2)-(7), final (8), accuracy (9) (10);
    detection and accuracy after the round's training."""
    rows = [[name for name, _ in COLUMNS]]
    for record in state["rounds"]:
        rows.append([str(record["round"]) + ("*" if record.get("final") else "")]
                    + ["-" if (v := metric_value(record["metrics"], path)) is None else f"{v:.3f}"
                       for _, path in COLUMNS[1:]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def run(args: argparse.Namespace) -> int:
    test, train, classifier = load_splits(args, name="--classifier")
    settings = settings_from_args(args, test.num_classes, test.shape)
    out = claim(args, {"--classifier": classifier, "training data": train, "test data": test})
    state = fakeclass_train(classifier, settings, out, resume=args.resume,
                            progress=not args.no_progress, device=args.device, train=train.tensors(),
                            test=test.tensors(), log=print)
    print(table(state))
    final = state["final"]
    print("* final network (no training). "
          + (f"generation failed after {final['rounds_until_failure']} training rounds: deemed robust"
             if final["robust"] else f"generation still succeeds after {final['trained_rounds']} rounds "
                                     f"(success rate {final['m08_success_rate']:.3f} >= threshold)"))
    print(f"wrote {args.out}/rounds.json, metrics.jsonl, metrics.png, round_NNN.png, model.safetensors")
    return 0
