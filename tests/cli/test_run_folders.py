"""Run folders are owned: a lock per folder, --resume or --overwrite for a folder holding a run, a resume that
refuses any change and lists every difference, and files checked when read (damaged ones named, with what to do).

A "partial run" here is a run stopped right after it claimed its folder (a KeyboardInterrupt raised from the claim,
as Ctrl-C would): the folder then holds the record that a resume is checked against.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import alva.cli.run_folder as run_folder
from alva.cli.main import main
from alva.models import load, load_generator
from alva.models.zoo import ZOO_DIR, read_weights
from alva.tracking import LOCK_FILE, DamagedFileError, tensors_sha256
from alva.tracking.lock import acquire
from tests.cli.run_folder_helpers import EVAL, GENERATE, TRAIN, leftovers, snapshot

COMMANDS = {
    "train": (TRAIN, ["--seed", "3", "--model", "mlp", "--train-size", "50"], "alva.cli.train_cmd"),
    "eval": (EVAL, ["--eps", "0.2", "--n", "10", "--seed", "1"], "alva.cli.eval_cmd"),
    "alva generate": (GENERATE, ["--classifier", "mnist/mlp", "--eps", "0.4", "--oracle", "mnist/cnn-small"],
                      "alva.cli.alva_cmd"),
    "converge": (["converge", "--n", "20", "--n-eval", "20", "--train-size", "100", "--no-progress"],
                 ["--eps", "0.4", "--classifier", "mnist/mlp", "--train-size", "90"], "alva.cli.alva_cmd"),
    "sparse": (["sparse", "--n-per-class", "1", "--steps", "5", "--no-progress"],
               ["--confidence", "0.5", "--model", "mnist/mlp"], "alva.cli.sparse_cmd"),
    "fakeclass": (["fakeclass", "--rounds", "1", "--no-progress"], ["--seed", "4", "--classifier", "mnist/mlp"],
                  "alva.cli.fakeclass_cmd"),
    "gan train": (["gan", "train", "--epochs", "1", "--train-size", "64", "--no-progress"],
                  ["--seed", "2", "--train-size", "32"], "alva.cli.gan_cmd"),
    "advgan train": (["advgan", "train", "--epochs", "1", "--train-size", "64", "--no-progress"],
                     ["--eps", "0.2", "--model", "mnist/mlp"], "alva.cli.genattack_cmd"),
    "atgan critic": (["atgan", "critic", "--epochs", "1", "--steps", "2", "--no-progress"],
                     ["--lr", "0.001", "--classifier", "mnist/mlp"], "alva.cli.genattack_cmd"),
    "atgan finetune": (["atgan", "finetune", "--epochs", "1", "--steps", "2", "--no-progress"],
                       ["--seed", "5", "--generator", "mnist/wgan-gp", "--classifier", "mnist/mlp"],
                       "alva.cli.genattack_cmd"),
}


def _stop_after_claim(monkeypatch, module: str):
    """Make the command stop (as Ctrl-C would) right after it claimed its folder."""
    real = run_folder.claim

    def claim_then_stop(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(f"{module}.claim", claim_then_stop)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_resume_refuses_every_change_and_lists_each(name, tmp_path, monkeypatch, capsys):
    argv, changes, module = COMMANDS[name]
    out = tmp_path / "run"
    _stop_after_claim(monkeypatch, module)
    assert main([*argv, "--out", str(out)]) == 130  # a partial run: the folder holds its record
    assert main([*argv, "--out", str(out), "--resume"]) == 130  # the same run resumes (and stops again)
    before = snapshot(out)
    capsys.readouterr()
    assert main([*argv, *changes, "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    changed_options = [c for c in changes if c.startswith("--")]
    for option in changed_options:
        assert f"{option}:" in err, (option, err)
    if name != "train" and ("--model" in changes or "--classifier" in changes):  # train builds its model
        assert "weights: SHA-256" in err  # the weights are compared too, not only the name
    assert err.count("\n") == 1 and "Traceback" not in err
    assert snapshot(out) == before  # nothing written or changed


def test_a_finished_run_needs_resume_or_overwrite_and_overwrite_says_what_it_removes(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    before = snapshot(out)
    assert main([*TRAIN, "--seed", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds a finished or partial run" in err and "--resume" in err and "--overwrite" in err
    assert snapshot(out) == before
    assert main([*TRAIN, "--out", str(out), "--resume", "--overwrite"]) == 2
    assert "exclude each other" in capsys.readouterr().err
    assert main([*TRAIN, "--seed", "1", "--out", str(out), "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert "--overwrite removed" in err and "model.safetensors" in err and "checkpoint.safetensors" in err
    assert load(out).card["seed"] == 1
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_a_command_without_resume_needs_overwrite_for_a_used_folder(tmp_path, capsys):
    out = tmp_path / "attack"
    argv = ["attack", "--model", "mnist/softmax", "--attack", "fgsm", "--n", "10", "--no-curve", "--no-progress",
            "--out", str(out)]
    assert main(argv) == 0
    before = snapshot(out)
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert snapshot(out) == before
    assert main([*argv, "--overwrite"]) == 0


def test_out_that_is_a_file_is_refused_before_anything_is_written(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("x")
    assert main([*TRAIN, "--out", str(target)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main([*TRAIN, "--out", str(target / "run")]) == 2
    assert sorted(os.listdir(tmp_path)) == ["taken"] and target.read_text() == "x"


def test_a_held_lock_stops_a_second_run_naming_the_lock_and_its_process(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    lock = acquire(out, "train")  # as another run would hold it
    try:
        before = snapshot(out)
        assert main([*TRAIN, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert str(out / LOCK_FILE) in err and f"process {os.getpid()}" in err
        assert snapshot(out) == before
    finally:
        lock.release()
    assert main([*TRAIN, "--out", str(out)]) == 0
    assert not (out / LOCK_FILE).exists()  # let go when the command ended


def test_a_stale_lock_of_a_dead_process_is_reported_and_taken_over(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (out / LOCK_FILE).write_text(json.dumps({"pid": pid, "command": "train", "since": "earlier"}))
    assert main([*TRAIN, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"process {pid}" in err and "no longer running: taken over" in err


def test_orphan_temporary_files_are_removed_on_the_next_run_but_not_those_of_a_run_inside(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    (out / ".model.safetensors.0123456789abcdef.tmp").write_bytes(b"half a file")
    (out / "samples").mkdir(exist_ok=True)
    (out / "samples" / ".epoch_001.png.fedcba9876543210.tmp").write_bytes(b"half")
    inner = out / "attack"
    inner.mkdir()
    (inner / LOCK_FILE).write_text("{}")
    (inner / ".summary.json.00112233445566ff.tmp").write_bytes(b"{")  # another run's: not ours to remove
    assert main([*TRAIN, "--out", str(out), "--resume"]) == 0
    assert "removed 2 temporary file(s)" in capsys.readouterr().err
    assert leftovers(out) == [str(inner / ".summary.json.00112233445566ff.tmp")]


def test_a_deleted_checkpoint_is_not_a_silent_restart(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    (out / "checkpoint.safetensors").unlink()
    before = snapshot(out, times=False)
    assert main([*TRAIN, "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint.safetensors is missing" in err and "3 finished epoch(s)" in err and "--overwrite" in err
    assert snapshot(out, times=False) == before


def _truncate(path, size=300):
    path.write_bytes(path.read_bytes()[:size])


@pytest.mark.parametrize("name, argv, damaged, redo", [
    ("train", TRAIN, "checkpoint.safetensors", "train again from the first epoch"),
    ("eval", EVAL, "state.safetensors", "evaluate again"),
    ("alva generate", GENERATE, "chunks/chunk-00002.safetensors", "generate that chunk again"),
])
def test_a_truncated_file_is_an_error_naming_it_and_what_to_do(name, argv, damaged, redo, tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*argv, "--out", str(out)]) == 0
    if name == "alva generate":
        (out / "dataset.safetensors").unlink()
    _truncate(out / damaged)
    capsys.readouterr()
    assert main([*argv, "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(out / damaged) in err and "is damaged" in err and f"delete it to {redo}" in err


def test_a_flipped_byte_in_a_checkpoint_is_caught(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    path = out / "checkpoint.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40  # a weight's byte: the file still parses
    path.write_bytes(bytes(data))
    assert main([*TRAIN, "--out", str(out), "--resume"]) == 2
    assert "do not match the SHA-256" in capsys.readouterr().err


def test_corrupted_weights_are_refused_unless_the_check_is_turned_off(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--epochs", "1", "--out", str(out)]) == 0
    path = out / "model.safetensors"
    data = bytearray(path.read_bytes())
    for i in range(len(data) - 200, len(data) - 8):
        data[i] ^= 0x55
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedFileError, match="is damaged: its weights have SHA-256"):
        load(out)
    assert load(out, verify=False) is not None
    attack = ["attack", "--model", str(out), "--attack", "fgsm", "--n", "10", "--no-curve", "--no-progress"]
    assert main([*attack, "--out", str(tmp_path / "a")]) == 2
    assert "--skip-weights-check" in capsys.readouterr().err and not (tmp_path / "a").exists()
    assert main([*attack, "--skip-weights-check", "--out", str(tmp_path / "b")]) == 0


def test_every_shipped_card_holds_the_sha256_of_its_weights():
    cards = sorted(ZOO_DIR.rglob("*.json"))
    assert len(cards) >= 10
    for card in cards:
        info = json.loads(card.read_text())
        assert info["weights_sha256"] == tensors_sha256(read_weights(card.with_suffix(".safetensors"))), card
    assert load_generator("mnist/acwgan-gp").card["weights_sha256"] == json.loads(
        (ZOO_DIR / "mnist" / "acwgan-gp.json").read_text())["weights_sha256"]


def test_a_saved_model_card_gets_the_sha256_and_load_checks_it(tmp_path):
    from alva.models import create, save
    from alva.models.zoo import architecture_card

    model = create("softmax", num_classes=10, in_shape=(1, 28, 28))
    path = save(model, architecture_card(model), tmp_path / "m")
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["weights_sha256"] == tensors_sha256(dict(model.state_dict()))
    loaded = load(path)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values(),
                                                  strict=True))


def test_the_demo_goes_on_without_resume_but_refuses_other_settings(tmp_path):
    import argparse

    def demo(**changes):
        settings = {"command": "demo", "out": str(tmp_path / "demo"), "epochs": 2, "n": 1000, "seed": 0,
                    "train_size": None, "quick": False, **changes}
        return argparse.Namespace(**settings)

    try:
        run_folder.claim(demo(), implicit_resume=True)
        (tmp_path / "demo" / "summary.md").write_text("a finished part")
        run_folder.release()
        run_folder.claim(demo(), implicit_resume=True)  # the same settings: goes on
        run_folder.release()
        with pytest.raises(run_folder.RunFolderError, match="2 difference") as refused:
            run_folder.claim(demo(quick=True, seed=1), implicit_resume=True)
        assert "--quick: False -> True" in str(refused.value) and "--seed: 0 -> 1" in str(refused.value)
    finally:
        run_folder.release()
    assert (tmp_path / "demo" / "summary.md").read_text() == "a finished part"


def test_overwrite_refuses_the_current_folder(tmp_path, monkeypatch, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    assert main([*TRAIN, "--out", ".", "--overwrite"]) == 2
    assert "holds the current folder" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]
