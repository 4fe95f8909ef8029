"""The HTML report: one section per run folder, key figures in tables, every image embedded as a PNG data URI.

The run folders are tiny copies, made here, of what the commands write (runs/ is not in git).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import struct
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from alva.cli.main import main
from alva.report.html import PNG_SIGNATURE, build_report, fmt, write_report


def png(width: int = 4, height: int = 3, shade: int = 128) -> bytes:
    """A small valid grey PNG, without matplotlib (fast)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes([shade]) * width for _ in range(height))
    return (PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


CLOCK = itertools.count(1_700_000_000)


def write(path: Path, obj) -> Path:
    """Write ``path`` one second after the file written before it, as a run that takes its time would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(obj, bytes):
        path.write_bytes(obj)
    elif isinstance(obj, str):
        path.write_text(obj)
    else:
        path.write_text(json.dumps(obj))
    now = next(CLOCK)
    os.utime(path, (now, now))
    return path


def attack_report(name: str, robust: float, n: int = 100) -> dict:
    return {"attack": name, "n": n, "clean_acc": 0.984, "robust_acc": robust, "adv_error": 1 - robust,
            "success_rate": 0.998, "confidence_misclassified": 0.837,
            "norms": {"linf": 0.3, "l2": 6.38, "l0": 492.8}, "mean_steps": 1.0, "mean_queries": 3.0,
            "per_class": {str(c): {"n": 10, "clean_acc": 1.0, "robust_acc": robust, "adv_error": 1 - robust,
                                   "success_rate": 1.0} for c in range(10)}}


CURVE = [{"eps": e, "robust_acc": 1 - e * 3, "adv_error": e * 3, "confidence_misclassified": 0.8}
         for e in (0.0, 0.1, 0.2, 0.3)]
CARD = {"architecture": "cnn-small", "num_classes": 10, "in_shape": [1, 28, 28], "mean": [0.1307], "std": [0.3081],
        "command": "alva demo --epochs 2 --seed 0", "seed": 0, "epochs": 2, "clean_test_accuracy": 0.9814}


def training_log(path: Path, epochs: int = 3, **extra) -> None:
    lines = [json.dumps({"step": e, "epoch": e, "lr": 0.001, "train": {"loss": 1.0 / e, "acc": 0.9 + e / 100},
                         "eval": {"clean_acc": 0.95 + e / 100, **extra}, "time_s": 2.0}) for e in range(1, epochs + 1)]
    write(path, "\n".join(lines) + "\n")


def make_demo(root: Path, *, kinds: bool = False) -> Path:
    """What ``alva demo`` writes, in the order it writes it: the train, fgsm, pgd and softmax-fgsm parts, then
    summary.json and eps_curve.png. With ``kinds`` each JSON file says what it holds, as alva writes them now;
    without, as older versions wrote them."""
    def kind(name: str) -> dict:
        return {"kind": name} if kinds else {}

    train = root / "train"
    write(train / "config.json", {**kind("train-config"), "model": "cnn-small",
                                  "settings": {"epochs": 2, "lr": 0.001, "batch_size": 128, "seed": 0,
                                               "weight_decay": 0.0, "optimizer": "adam", "schedule": "none"}})
    training_log(train / "metrics.jsonl")
    write(train / "model.json", CARD)
    write(train / "model.safetensors", b"not read")
    write(train / "tb" / "events.out", b"x")
    write(train / "result.json", {**kind("demo-part"), "model": str(train), "clean_test_acc": 0.9814, "seconds": 6.2})
    reports = {"fgsm": attack_report("fgsm", 0.002), "pgd": attack_report("pgd", 0.0)}
    for name in ("fgsm", "pgd"):
        write(root / name / "grid.png", png(10, 3))
        write(root / name / "result.json", {**kind("attack-summary"), "report": reports[name], "eps_curve": CURVE,
                                            "seconds": 9.6})
    write(root / "softmax-fgsm" / "grid.png", png(10, 3))
    write(root / "softmax-fgsm" / "result.json", {**kind("attack-summary"),
                                                  "report": attack_report("fgsm-softmax", 0.0, 10000), "seconds": 1})
    write(root / "summary.json", {**kind("demo-summary"), "clean_test_acc": 0.9814, "attacks": reports,
                                  "eps_curves": {"fgsm": CURVE, "pgd": CURVE},
                                  "softmax_fgsm_eps_0.25": attack_report("fgsm-softmax", 0.0, 10000),
                                  "torch": "2.13.0+cpu", **({"command": "alva demo"} if kinds else {})})
    write(root / "summary.md", "# alva demo\n")
    write(root / "eps_curve.png", png(8, 6))
    return root


class Page(HTMLParser):
    """The section ids, image sources and text of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "section":
            self.sections.append(attrs.get("id"))
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if "href" in attrs:
            self.links.append(attrs["href"])

    def handle_data(self, data):
        self.text.append(data)

    @property
    def all_text(self) -> str:
        return " ".join(self.text)


def check_page(text: str) -> Page:
    """Asserts true of every report: sections with ids, every image an embedded PNG, nothing fetched."""
    page = Page(text)
    assert page.sections and all(page.sections) and len(set(page.sections)) == len(page.sections)
    for src in page.images:
        assert src.startswith("data:image/png;base64,"), src[:40]
        assert base64.b64decode(src.split(",", 1)[1], validate=True).startswith(PNG_SIGNATURE)
    assert "script" not in page.tags and "link" not in page.tags
    assert all(link.startswith("#") for link in page.links)  # the table of contents only
    return page


def test_demo_report_has_a_section_per_part_and_embeds_every_image(tmp_path):
    root = make_demo(tmp_path / "demo")
    path = write_report(root)
    assert path == root / "report.html"
    text = path.read_text()
    page = check_page(text)
    assert page.sections == ["summary", "train", "fgsm", "pgd", "softmax-fgsm"]  # in the order the run made them
    # eps_curve.png, three grids and the training plot made from metrics.jsonl
    assert len(page.images) == 5
    words = page.all_text
    assert "alva demo --epochs 2 --seed 0" in words  # the recipe on the trained model's card
    assert "robust accuracy against eps" in words and "clean images (true label y, prediction" in words
    assert "0.9840" in words and "0.0020" in words and "FGSM eps 0.25 on mnist/softmax" in words
    assert "training curves" in words and "clean test accuracy" in words
    assert not list(root.glob(".*.tmp"))


def test_depth_zero_reports_the_folder_only(tmp_path):
    root = make_demo(tmp_path / "demo")
    _, sections = build_report(root, depth=0)
    assert [s.id for s in sections] == ["summary"]


def make_attack(root: Path) -> None:
    settings = {"command": "attack", "model": "runs/robust/maxout", "attack": "fgsm", "eps": 0.25, "norm": "linf",
                "no_curve": False, "n": 100, "out": str(root), "device": "cpu", "no_progress": True}
    write(root / "summary.json", {"model": "runs/robust/maxout", "settings": settings,
                                  "report": attack_report("fgsm", 0.148), "eps_curve": CURVE})
    write(root / "grid.png", png())
    write(root / "eps_curve.png", png())


def make_strong_eval(root: Path) -> None:
    for name, acc in (("cnn-small-linf-0.3", 0.0), ("cnn-small-l2-1.5", 0.2)):
        write(root / name / "result.json", {
            "model": "mnist/cnn-small", "arguments": {"command": "eval", "eps": 0.3, "norm": "linf"},
            "settings": {"eps": 0.3, "norm": "linf", "version": "standard", "attacks": ["apgd-ce", "square"]},
            "n": 100, "clean_acc": 0.99, "robust_acc": acc, "warnings": ["a sanity warning"],
            "table": [{"attack": "clean", "robust_acc": 0.99, "attacked": 100, "broken": 1, "seconds": 0.1},
                      {"attack": "apgd-ce", "robust_acc": acc, "attacked": 99, "broken": 99, "seconds": 0.3}],
            "report": attack_report("strong", acc)})
        write(root / name / "state.json", {"format": "alva-strong-eval/1"})


def make_sparse(root: Path) -> None:
    per_class = {str(c): {"n": 10, "success_rate": 1.0, "target_prob": 0.93, "l0": 260.0, "l1": 18.0}
                 for c in range(10)}
    write(root / "result.json", {"model": "mnist/cnn-small",
                                 "settings": {"command": "sparse", "method": "l1", "confidence": 0.9,
                                              "max_pixels": 300},
                                 "summary": {"overall": {"n": 100, "success_rate": 1.0, "l0": 268.8},
                                             "per_class": per_class}})
    write(root / "grid.png", png())


def make_converge(root: Path) -> None:
    rounds = [{"round": r, **({"added": 300} if r else {}),
               "metrics": {"alva_success": 0.4 - r / 10, "clean_test_acc": 0.989, "pgd_robust_acc": 0.29 + r / 20}}
              for r in range(3)]
    write(root / "rounds.json", rounds)
    write(root / "model.json", {"architecture": "cnn-small", "converged_rounds": 2})


def make_fakeclass(root: Path) -> None:
    rounds = [{"round": r, "metrics": {"m00_generation": {"n": 40, "success_rate": 0.9, "l0": 130.0,
                                                          "per_class": {"0": {"n": 4}}},
                                       "m02_current_batch": {"n": 40, "detected": 0.5 + r / 20},
                                       "m10_real_test": {"n": 100, "acc": 0.98, "fake_rate": 0.01}},
               "time_s": 100.0} for r in range(10)]
    write(root / "rounds.json", {"settings": {"rounds": 10, "threshold": 0.05}, "status": "robust",
                                 "rounds": rounds, "final": {"robust": True, "rounds_until_failure": 9}})
    write(root / "metrics.jsonl", "".join(json.dumps({"step": i, "round": i // 2, "phase": "train"}) + "\n"
                                          for i in range(20)))
    write(root / "model.json", {"architecture": "cnn-small", "num_classes": 20, "fakeclass_rounds": 10})
    write(root / "metrics.png", png())
    for r in range(10):
        write(root / f"round_{r:03d}.png", png(shade=r * 20))
    write(root / "reference" / "model.json", {"architecture": "cnn-small", "num_classes": 10})


def make_robust(root: Path) -> None:
    write(root / "model.json", {**CARD, "command": "alva train --adv pgd --eps 0.3", "pgd20_test_accuracy": 0.868})
    training_log(root / "metrics.jsonl", epochs=4, pgd20_acc=0.8)
    with (root / "metrics.jsonl").open("a") as f:
        f.write('{"step": 5, "epo')  # a line cut by a stop


def make_gan(root: Path) -> None:
    write(root / "generator.json", {"kind": "generator", "architecture": "ac-dcgan-mnist", "epochs": 10,
                                    "command": "alva gan train --conditional --epochs 10",
                                    "frechet_distance_oracle_features": 30.19, "label_agreement": 0.9755})
    write(root / "metrics.jsonl", "".join(json.dumps({"step": e, "epoch": e, "train": {
        "wasserstein": 6.0 / e, "critic_loss": -5.0 / e, "generator_loss": 0.5, "aux_acc_real": 0.9},
        "monitor": {"label_agreement": 0.98}}) + "\n" for e in range(1, 4)))
    for e in range(1, 4):
        write(root / "samples" / f"epoch_{e:03d}.png", png())


def make_profile(root: Path) -> None:
    model = {"n": 100, "eps": 0.3, "clean_acc": 0.976, "fgsm_acc": 0.919, "strong_acc": 0.843,
             "strong_table": [{"attack": "clean"}], "accuracy_vs_eps": CURVE, "rubbish": {"rubbish_rate": 0.23}}
    write(root / "profile.json", {"runs/robust/cnn-small-pgd": model, "mnist/cnn-small": {**model, "fgsm_acc": 0.03}})
    write(root / "profile.md", "| model |\n")
    write(root / "accuracy_vs_eps.png", png())


KINDS = [  # builder, section ids, kinds, images, words on the page
    (make_attack, ["summary"], ["attack"], 2, ["FGSM attack on runs/robust/maxout (linf eps 0.2500)",
                                               "alva attack --model runs/robust/maxout", "per true class"]),
    (make_strong_eval, ["cnn-small-linf-0-3", "cnn-small-l2-1-5"], ["strong evaluation"] * 2, 0,
     ["robust accuracy after each attack", "apgd-ce", "Warning: a sanity warning"]),
    (make_sparse, ["summary"], ["sparse images"], 1, ["per target class", "target prob", "generated images"]),
    (make_converge, ["summary"], ["convergence training"], 1, ["rates per round", "pgd robust acc", "added"]),
    (make_fakeclass, ["summary", "reference"], ["fake-class training", "trained model"], 7,
     ["6 of the 10 round images shown", "m02 current batch.detected", "rounds until failure", "robust"]),
    (make_robust, ["summary"], ["trained model"], 1, ["alva train --adv pgd --eps 0.3", "eval.pgd20 acc",
                                                      "metrics per epoch"]),
    (make_gan, ["summary", "samples"], ["trained generator", "images"], 4,
     ["alva gan train --conditional", "frechet distance oracle features", "train.wasserstein"]),
    (make_profile, ["summary"], ["robustness profile"], 1, ["key figures per model", "accuracy against eps",
                                                            "rubbish.rubbish rate"]),
]


@pytest.mark.parametrize(("make", "ids", "kinds", "images", "words"), KINDS, ids=[k[0].__name__ for k in KINDS])
def test_each_kind_of_run_folder(tmp_path, make, ids, kinds, images, words):
    root = tmp_path / "run"
    make(root)
    text, sections = build_report(root)
    page = check_page(text)
    assert page.sections == ids
    assert [s.kind for s in sections] == kinds
    assert len(page.images) == images
    for word in words:
        assert word in page.all_text, word
    assert all(s.tables or s.images for s in sections)


def test_text_from_run_files_is_escaped(tmp_path):
    root = tmp_path / "run"
    evil = '<script>alert("x")</script> & <img src=http://example.org/x.png>'
    write(root / "model.json", {"architecture": evil, "command": f"alva train --out {evil}"})
    write(root / f"{'a&b'}.png", png())
    text, _ = build_report(root, title="<b>run</b>")
    page = check_page(text)
    assert "<script>" not in text and "&lt;script&gt;" in text and "&lt;b&gt;run&lt;/b&gt;" in text
    assert evil in page.all_text  # shown as text, as it was written
    assert "a&amp;b.png" in text


def test_a_file_that_is_not_a_png_is_left_out(tmp_path):
    root = tmp_path / "run"
    write(root / "grid.png", b"not a png")
    write(root / "ok.png", png())
    _, sections = build_report(root)
    assert [i.name for i in sections[0].images] == ["ok.png"]


def test_format_of_figures():
    assert fmt(0.98400001) == "0.9840" and fmt(1.0) == "1.0000" and fmt(1690.6) == "1691" and fmt(12.0) == "12"
    assert fmt(None) == "–" and fmt(True) == "yes" and fmt([1, 28, 28]) == "1, 28, 28" and fmt(7) == "7"


def test_cli_report(tmp_path, capsys):
    root = make_demo(tmp_path / "demo")
    assert main(["report", str(root)]) == 0
    assert "summary, train, fgsm, pgd, softmax-fgsm" in capsys.readouterr().out
    check_page((root / "report.html").read_text())
    out = tmp_path / "elsewhere" / "page.html"
    assert main(["report", str(root / "fgsm"), "--out", str(out), "--depth", "0"]) == 0
    assert Page(out.read_text()).sections == ["summary"]
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no run folder" in capsys.readouterr().err


def test_demo_with_kinds_shows_the_command_typed_and_folds_long_settings(tmp_path):
    root = make_demo(tmp_path / "demo", kinds=True)
    text, sections = build_report(root)
    page = check_page(text)
    assert page.sections == ["summary", "train", "fgsm", "pgd", "softmax-fgsm"]
    header = text[text.index("<header>"):text.index("</header>")]
    assert "<code>alva demo</code>" in header  # what the user typed, not the options it expanded to
    assert [s.kind for s in sections] == ["demo", "trained model", "attack", "attack", "attack"]
    folded = [t.caption for s in sections for t in s.tables if t.folded]
    assert "training settings (config.json)" in folded and "FGSM: per true class" in folded
    assert text.count("<details") == len(folded) and "training settings (config.json) (" in page.all_text


def test_the_kind_a_file_states_decides_how_it_is_shown(tmp_path):
    profile = {"mnist/cnn-small": {"n": 100, "clean_acc": 0.99, "fgsm_acc": 0.03, "accuracy_vs_eps": CURVE}}
    write(tmp_path / "a" / "summary.json", {"kind": "robustness-profile", **profile})  # no "profile.json" name
    # keys of an attack summary, but the file says it is something else: shown as plain figures
    write(tmp_path / "b" / "result.json", {"kind": "detector-summary", "report": {"attack": "x", "n": 3},
                                           "threshold": 0.5})
    _, a = build_report(tmp_path / "a")
    assert a[0].kind == "robustness profile" and a[0].tables[0].caption == "key figures per model"
    text, b = build_report(tmp_path / "b")
    assert b[0].kind == "results" and "threshold" in Page(text).all_text
    assert not any(t.caption.endswith("key figures") for t in b[0].tables)


def test_a_training_log_of_one_point_is_a_table_not_a_plot(tmp_path):
    training_log(tmp_path / "run" / "metrics.jsonl", epochs=1)
    _, sections = build_report(tmp_path / "run")
    assert not sections[0].images
    assert [t.caption for t in sections[0].tables] == ["metrics per epoch"]
    assert sections[0].tables[0].rows[0][0] == 1


def test_an_untargeted_perturbation_generator_is_not_shown_with_zero_classes(tmp_path):
    write(tmp_path / "run" / "generator.json", {"kind": "perturbation-generator", "architecture": "advgan-conv",
                                                "num_classes": 0, "eps": 0.3, "target_model": "mnist/cnn-small"})
    text, sections = build_report(tmp_path / "run")
    assert sections[0].kind == "trained perturbation generator"
    assert "0 (untargeted: no target-class input)" in Page(text).all_text
    assert "0 classes" not in text and "attacks mnist/cnn-small" in text


def test_a_card_of_the_users_own_code_names_its_factory(tmp_path):
    root = tmp_path / "mine"
    write(root / "model.json", {"factory": "/home/me/my_models.py:build", "num_classes": 4, "epochs": 12})
    text, _ = build_report(root)
    assert "built by /home/me/my_models.py:build" in text and "architecture ?" not in text
