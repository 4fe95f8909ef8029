"""``alva zoo``: list the shipped models and show their cards."""

from __future__ import annotations

import argparse
import json

from alva.models import zoo


def register(commands) -> None:
    p = commands.add_parser("zoo", help="list the shipped models, or show one card")
    p.add_argument("name", nargs="?",
                   help="a model to show: a zoo name such as mnist/cnn-small, a weights file or a run folder")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.name:
        print(json.dumps(zoo.card(args.name), indent=2))
        return 0
    for name in zoo.available():
        info = zoo.card(name)
        if info.get("kind") == "generator":
            figures = f"Frechet (oracle features) {info.get('frechet_distance_oracle_features', float('nan')):.2f}"
            if "label_agreement" in info:
                figures += f", label agreement {info['label_agreement']:.4f}"
            print(f"{name:28s} {info['architecture']:14s} {figures}   {info.get('command', '')}")
            continue
        figures = f"clean test acc {info['clean_test_accuracy']:.4f}"
        if info["task"] == "multilabel":
            figures = f"exact match {info['clean_test_accuracy']:.4f}, mAP {info['clean_test_map']:.4f}"
        print(f"{name:28s} {info['architecture']:10s} {figures}   {info.get('command', '')}")
    return 0
