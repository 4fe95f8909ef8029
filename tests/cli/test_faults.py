"""Runs killed at random moments and resumed give bit-identical results and leave no temporary file; two runs into
one folder: one runs, the other exits 2 naming the lock.

Two kinds of kill:

- in-process (20 per command): the command runs in this process and a :class:`SimulatedKill` (a
  ``BaseException``, which no ``except Exception`` stops) is raised at a random event: a training step (during an
  epoch), a batch of the strong evaluation, the end of an ALVA chunk's attack before its write, or the
  ``os.replace`` of an atomic write, where the temporary file a real kill leaves behind is left in place (as a copy
  cut in half, since the write's own clean-up removes the original). The kill points are drawn from all the
  events of an unbroken run, with a fixed seed.
- real (2 per command): ``alva`` in a subprocess gets SIGKILL once its run is under way; the lock file it leaves
  is reported as stale by the resumed run, which takes it over.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

import alva.training.augment as augment
from alva.cli.main import main
from alva.evaluation.strong import StrongEvaluation
from alva.tracking import LOCK_FILE
from alva.training.supervised import Supervised
from tests.cli.run_folder_helpers import (
    EVAL,
    GENERATE,
    TEMPORARY,
    TRAIN,
    SimulatedKill,
    eval_result,
    generate_result,
    leftovers,
    train_result,
)

KILLS = 20
RESULTS = {"train": (TRAIN, train_result), "eval": (EVAL, eval_result), "alva generate": (GENERATE, generate_result)}
ROOT = Path(__file__).resolve().parents[2]


class Killer:
    """Counts the events of a run and raises :class:`SimulatedKill` at event number ``at`` (never for None)."""

    def __init__(self, at: int | None = None) -> None:
        self.at, self.count, self.where = at, 0, ""

    def tick(self, where: str) -> None:
        self.count += 1
        if self.count == self.at:
            self.where = where
            raise SimulatedKill(where)


@contextmanager
def killable(monkeypatch, killer: Killer):
    """Route the events of train, eval and generate through ``killer`` for the duration of the block."""
    real_replace, real_step = os.replace, Supervised.training_step
    real_verified, real_chunk = StrongEvaluation._verified, augment.attack_chunk

    def replace(src, dst, *args, **kwargs):
        if TEMPORARY.fullmatch(Path(src).name):
            try:
                killer.tick("atomic write")
            except SimulatedKill:
                # what a kill before the rename leaves: the temporary file (here cut in half)
                data = Path(src).read_bytes()
                Path(src).with_name(f".{Path(dst).name}.{random.getrandbits(64):016x}.tmp").write_bytes(
                    data[:len(data) // 2])
                raise
        return real_replace(src, dst, *args, **kwargs)

    def step(self, *args, **kwargs):
        killer.tick("training step")
        return real_step(self, *args, **kwargs)

    def verified(self, *args, **kwargs):
        killer.tick("evaluation batch")
        return real_verified(self, *args, **kwargs)

    def chunk(*args, **kwargs):
        result = real_chunk(*args, **kwargs)
        killer.tick("ALVA chunk")
        return result

    with monkeypatch.context() as m:
        m.setattr(os, "replace", replace)
        m.setattr(Supervised, "training_step", step)
        m.setattr(StrongEvaluation, "_verified", verified)
        m.setattr(augment, "attack_chunk", chunk)
        yield


@pytest.mark.parametrize("name", list(RESULTS))
def test_killed_at_random_moments_and_resumed_gives_the_same_result(name, tmp_path, monkeypatch):
    argv, result = RESULTS[name]
    reference, counter = tmp_path / "reference", Killer()
    with killable(monkeypatch, counter):
        assert main([*argv, "--out", str(reference)]) == 0
    expected = result(reference)
    events = counter.count
    assert events >= KILLS, f"{name}: only {events} events to kill at"
    places = set()
    for trial, at in enumerate(sorted(random.Random(17).sample(range(1, events + 1), KILLS))):
        out = tmp_path / f"run-{trial}"
        killer = Killer(at)
        with killable(monkeypatch, killer), pytest.raises(SimulatedKill):
            main([*argv, "--out", str(out)])
        places.add(killer.where)
        assert main([*argv, "--out", str(out), "--resume"]) == 0, (name, at, killer.where)
        assert result(out) == expected, (name, at, killer.where)
        assert leftovers(out) == [], (name, at, killer.where)
        assert not (out / LOCK_FILE).exists()
        shutil.rmtree(out)
    assert "atomic write" in places and len(places) == 2, places  # killed in writes and in the work itself


def _alva(*argv: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "alva.cli.main", *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 300.0) -> bool:
    """Wait until ``path`` exists (True) or the process has ended (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.01)
    raise TimeoutError(f"{path} did not appear")


# the file that shows the run under way (then there is work left to kill), and how long to wait after it
MARKERS = {"train": ("metrics.jsonl", ["--epochs", "8"]), "eval": ("state.safetensors", ["--n", "40"]),
           "alva generate": ("chunks/chunk-00000.safetensors", ["--n", "120"])}


@pytest.mark.parametrize("name", list(RESULTS))
def test_sigkill_then_resume_reports_the_stale_lock_and_gives_the_same_result(name, tmp_path, capsys):
    argv, result = RESULTS[name]
    marker, bigger = MARKERS[name]
    argv = [*argv, *bigger]
    assert main([*argv, "--out", str(tmp_path / "reference")]) == 0
    expected = result(tmp_path / "reference")
    draw = random.Random(5)
    for trial in range(2):
        out = tmp_path / f"killed-{trial}"
        process = _alva(*argv, "--out", str(out))
        started = _wait_for(out / marker, process)
        assert started, process.communicate()
        time.sleep(draw.uniform(0.0, 0.05))
        process.send_signal(signal.SIGKILL)
        process.communicate()
        assert process.returncode == -signal.SIGKILL, "the run ended before the kill: make it longer"
        assert (out / LOCK_FILE).exists()
        capsys.readouterr()
        assert main([*argv, "--out", str(out), "--resume"]) == 0
        assert "no longer running: taken over" in capsys.readouterr().err
        assert result(out) == expected
        assert leftovers(out) == []


def test_two_runs_into_one_folder_one_runs_the_other_exits_2_naming_the_lock(tmp_path):
    out = tmp_path / "run"
    argv = [*TRAIN, "--model", "cnn-small", "--train-size", "2000", "--epochs", "6", "--out", str(out)]
    runs = [_alva(*argv), _alva(*argv)]  # started together
    ended = [(p, *p.communicate(timeout=600)) for p in runs]
    assert sorted(p.returncode for p in runs) == [0, 2], [err for _, _, err in ended]
    (winner, _, _), (_, _, loser_err) = sorted(ended, key=lambda e: e[0].returncode)
    assert str(out / LOCK_FILE) in loser_err and f"process {winner.pid}" in loser_err
    assert loser_err.count("\n") == 1
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4, 5, 6]  # one run's log, not two interleaved
    assert not (out / LOCK_FILE).exists()
