"""``--threads`` and ``ALVA_THREADS``: one option of every command, before or after the command's name, that sets
torch's thread count before the command runs; the thread count is no setting a resumed run must keep."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest
import torch

from alva import threads
from alva.cli.main import build_parser, main
from tests.cli.run_folder_helpers import EVAL


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def parsers_under(parser: argparse.ArgumentParser, name: str = "alva") -> list[tuple[str, argparse.ArgumentParser]]:
    """``parser`` and every command and action under it, with its name."""
    found = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                found += parsers_under(sub, f"{name} {command}")
    return found


def test_every_command_takes_threads():
    every = parsers_under(build_parser())
    assert len(every) > 20
    for name, parser in every:
        options = [a for a in parser._actions if "--threads" in a.option_strings]
        assert len(options) == 1 and options[0].type is int, name


@pytest.mark.parametrize("argv, threads_set", [
    (["--threads", "3", "zoo"], 3),  # before the command's name
    (["zoo", "--threads", "2"], 2),  # after it
    (["--threads", "3", "zoo", "--threads", "2"], 2),  # both: the last one given
])
def test_the_option_sets_torch_threads_before_the_command_runs(argv, threads_set, monkeypatch, capsys):
    monkeypatch.setenv("ALVA_THREADS", "5")  # the option wins over the environment
    seen = []
    # the command's handler is bound when main builds the parser: this one notes what it finds
    monkeypatch.setattr("alva.cli.zoo_cmd.run", lambda args: seen.append((args.threads, torch.get_num_threads())))
    assert main(argv) == 0
    assert seen == [(threads_set, threads_set)]  # the count the command's settings record, and torch's


def test_alva_threads_sets_torch_threads_without_the_option(monkeypatch, capsys):
    monkeypatch.setenv("ALVA_THREADS", "3")
    assert main(["zoo", "mnist/softmax"]) == 0
    assert torch.get_num_threads() == 3


def test_without_a_setting_the_free_cores_are_taken(monkeypatch, capsys):
    monkeypatch.delenv("ALVA_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 6)
    monkeypatch.setattr(threads, "other_load", lambda processes=1: (2.0, 6))  # two busy jobs
    assert main(["zoo", "mnist/softmax"]) == 0
    assert torch.get_num_threads() == 4


@pytest.mark.parametrize("env, argv, count", [({"ALVA_THREADS": "3"}, [], 3),
                                               ({"ALVA_THREADS": "3"}, ["--threads", "2"], 2),
                                               ({"OMP_NUM_THREADS": "2"}, [], 2)])
def test_a_new_process_takes_the_count(env, argv, count):
    code = ("import sys, torch; from alva.cli.main import main; "
            "code = main(sys.argv[1:]); print('threads', torch.get_num_threads()); sys.exit(code)")
    clean = {k: v for k, v in os.environ.items() if k not in ("ALVA_THREADS", "OMP_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", code, *argv, "zoo", "mnist/softmax"], env={**clean, **env},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == f"threads {count}"


def test_a_bad_alva_threads_is_one_line_and_exit_2_in_a_new_process(tmp_path):
    done = subprocess.run([sys.executable, "-m", "alva.cli.main", "zoo"], cwd=tmp_path, timeout=300,
                          env={**os.environ, "ALVA_THREADS": "abc"}, capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "alva zoo: error: ALVA_THREADS must be a whole number >= 1, got 'abc'\n"


def test_a_run_resumes_with_another_thread_count_and_records_the_count_used(tmp_path, capsys):
    out = tmp_path / "eval"
    assert main([*EVAL, "--out", str(out)]) == 0  # EVAL gives --threads 1
    assert main([*EVAL, "--threads", "2", "--out", str(out), "--resume"]) == 0
    assert "threads" not in json.loads((out / ".alva-run.json").read_text())["settings"]
    assert json.loads((out / "result.json").read_text())["arguments"]["threads"] == 2
