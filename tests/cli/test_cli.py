"""The alva command, run in-process as a user would type it."""

from __future__ import annotations

import json
import re

import pytest

from alva.cli.main import main
from alva.models import load
from alva.tracking import read_metrics


def test_attack_writes_summary_grid_and_curve(tmp_path, capsys):
    out = tmp_path / "pgd"
    code = main(["attack", "--model", "mnist/cnn-small", "--attack", "pgd", "--eps", "0.3", "--steps", "10",
                 "--n", "100", "--curve", "0,0.3", "--no-progress", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["report"]["robust_acc"] < 0.1 < summary["report"]["clean_acc"]
    assert [p["eps"] for p in summary["eps_curve"]] == [0.0, 0.3]
    assert (out / "grid.png").stat().st_size > 1000 and (out / "eps_curve.png").stat().st_size > 1000
    assert "robust acc" in capsys.readouterr().out


def test_train_resume_continues_and_refuses_changed_settings(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--model", "softmax", "--epochs", "1", "--train-size", "500", "--no-progress",
            "--out", str(out)]
    assert main(args) == 0
    assert load(out).card["epochs"] == 1
    assert main([*args, "--resume"]) == 0  # nothing left to do: the run is complete
    assert len(read_metrics(out / "metrics.jsonl")) == 1
    assert main([*args, "--lr", "0.5", "--resume"]) == 2  # changed settings: clear error


@pytest.mark.parametrize("argv, message", [
    (["attack", "--model", "mnist/nope", "--out", "OUT"], "no model"),
    (["attack", "--norm", "l2", "--steps", "0", "--n", "10", "--out", "OUT"], "steps"),
    (["train", "--epochs", "0", "--out", "OUT"], "epochs must be >= 1"),
])
def test_bad_input_gives_a_clear_error_and_exit_code_2(tmp_path, capsys, argv, message):
    argv = [str(tmp_path / "o") if a == "OUT" else a for a in argv]
    assert main([*argv, "--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_unknown_option_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["attack", "--attack", "nope", "--out", "x"])
    assert "invalid choice" in capsys.readouterr().err


def test_zoo_lists_the_shipped_models(capsys):
    assert main(["zoo"]) == 0
    listing = capsys.readouterr().out
    assert "mnist/softmax" in listing and "mnist/cnn-small" in listing
    assert main(["zoo", "mnist/softmax"]) == 0
    assert json.loads(capsys.readouterr().out)["architecture"] == "softmax"


def test_demo_runs_and_a_rerun_skips_finished_parts(tmp_path, capsys):
    from alva.demo import PARTS

    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--epochs", "2", "--train-size", "2000", "--n", "50", "--quick",
            "--no-progress"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clean_test_acc"] > 0.7
    assert summary["attacks"]["pgd"]["robust_acc"] <= summary["attacks"]["fgsm"]["robust_acc"]
    assert summary["softmax_fgsm_eps_0.25"]["adv_error"] >= 0.995
    assert [r["part"] for r in summary["capabilities"]] == list(PARTS)
    # the command line as typed (defaults left out), and what each file holds
    assert summary["command"] == f"alva demo --out {out} --n 50 --train-size 2000 --quick --no-progress"
    assert summary["kind"] == "demo-summary"
    assert summary["threads"] == 1  # the thread count it ran with: ALVA_THREADS, as the tests set it
    assert json.loads((out / "sparse" / "result.json").read_text())["kind"] == "sparse-result"
    pictures = {"train": [], "converge": ["rounds.png"], "label-flip": ["flips.png"],
                "fgsm": ["grid.png", "eps_curve.png"], "pgd": ["grid.png", "eps_curve.png"]}
    for part in PARTS:
        assert (out / part / "result.json").exists(), part
        for picture in pictures.get(part, ["grid.png"]):
            assert (out / part / picture).stat().st_size > 1000, (part, picture)
    assert (out / "eps_curve.png").stat().st_size > 1000
    strong = json.loads((out / "strong-eval" / "result.json").read_text())
    assert strong["model"] == "mnist/cnn-small-pgd" and strong["robust_acc"] > 0.5
    rows = {r["attack"]: r for r in json.loads((out / "label-flip" / "result.json").read_text())["rows"]}
    assert rows["single-label"]["collateral"] < rows["naive PGD"]["collateral"]
    report = (out / "report.html").read_text()
    sections = dict(re.findall(r'<section[^>]*id="([^"]+)"(.*?)</section>', report, flags=re.S))
    for part in PARTS:
        assert part in sections, part
        assert "<img" in sections[part], part
    assert "every capability in one run" in report
    header = report[report.index("<header>"):report.index("</header>")]
    assert f"<code>alva demo --out {out} --n 50 --train-size 2000" in header
    assert list(sections)[:3] == ["summary", "train", "fgsm"]  # in the order the run made them
    capsys.readouterr()
    (out / "pgd" / "result.json").unlink()  # as if the demo had been stopped during the PGD part
    assert main(argv) == 0
    log = capsys.readouterr().out
    assert "[train] already done" in log and "[fgsm] already done" in log and "[pgd] running" in log
    assert "[adv-train] already done" in log and "[strong-eval] already done" in log


def test_attack_label_compares_naive_and_single_label(tmp_path):
    out = tmp_path / "flips"
    assert main(["attack-label", "--eps", "0.2", "--steps", "20", "--n", "40", "--no-progress",
                 "--out", str(out)]) == 0
    rows = {r["attack"]: r for r in json.loads((out / "summary.json").read_text())["rows"]}
    assert rows["single-label"]["collateral"] < rows["naive PGD"]["collateral"]
    assert (out / "flips.png").stat().st_size > 1000


def test_alva_generate_and_converge_on_the_shipped_generator(tmp_path):
    data = tmp_path / "data"
    assert main(["alva", "generate", "--n", "60", "--chunk-size", "30", "--eps", "0.5", "--keep", "all",
                 "--no-progress", "--out", str(data)]) == 0
    summary = json.loads((data / "summary.json").read_text())
    assert summary["generated"] == summary["kept"] == 60 and 0 < summary["success"]
    assert (data / "grid.png").exists()
    rounds = tmp_path / "converge"
    assert main(["converge", "--rounds", "1", "--n", "200", "--n-eval", "100", "--train-size", "1000",
                 "--no-progress", "--out", str(rounds)]) == 0
    history = json.loads((rounds / "rounds.json").read_text())
    assert [h["round"] for h in history] == [0, 1] and "metrics" in history[-1]
    assert (rounds / "rounds.png").exists()


@pytest.mark.parametrize("command", [["train"], ["gan", "train"], ["alva", "generate"], ["eval"], ["sparse"]])
def test_help_names_the_defaults(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main([*command, "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "default: " in text and "default: %(default)s" not in text
    assert text.count("default") >= 5
