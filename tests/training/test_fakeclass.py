"""Fake-class training on a tiny budget: runs end to end, logs its eleven metrics, labels generated images with
their fake class, starts from the shipped weights, resumes exactly, and is quiet without progress."""

from __future__ import annotations

import json

import pytest
import torch

import alva.training.fakeclass.network as network
import alva.training.fakeclass.rounds as rounds
from alva.cli.main import main
from alva.evaluation.accuracy import predict_logits
from alva.models import load
from alva.tracking import read_metrics
from alva.tracking.checkpoint import load_checkpoint
from alva.training.fakeclass import (
    DESettings,
    FakeClassSettings,
    ReferenceSettings,
    RoundData,
    SparseSettings,
    expand_fake_classes,
    fakeclass_train,
)

K = 10
TINY = FakeClassSettings(
    rounds=2, per_class=2, test_per_class=1, threshold=0.0, attack=SparseSettings(steps=100),
    de=DESettings(per_class=1, pixels=30, popsize=8, generations=4),
    reference=ReferenceSettings(epochs=10, lr=3e-3, per_class=1),
    lr=1e-3, eval_train_size=300, eval_test_size=300, nn_pool_size=300, sample=10,
)
# what each metric gives: aggregate figures, and per class for those measured per class
PER_CLASS = ("m00_generation", "m01_ood", "m02_current_batch", "m03_past_train", "m04_test_current",
             "m05_test_past", "m06_other_network", "m08_final_sparse", "m09_real_train", "m10_real_test")
DETECTION = ("fake_prob", "loss", "detected", "any_fake", "target_prob", "fooled")


def _without_time(value):
    if isinstance(value, dict):
        return {k: _without_time(v) for k, v in value.items() if k != "time_s"}
    if isinstance(value, list):
        return [_without_time(v) for v in value]
    return value


class Spy:
    """Wraps ``fit`` (of the round driver and of the reference network): records the labels it trains on; raises
    KeyboardInterrupt on call ``stop_at``."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.calls, self.stop_at, self.fit = [], stop_at, rounds.fit

    def patch(self, mp: pytest.MonkeyPatch) -> None:
        mp.setattr(rounds, "fit", self)
        mp.setattr(network, "fit", self)

    def __call__(self, model, data, settings, **kwargs):
        self.calls.append(data[1].clone())
        if len(self.calls) == self.stop_at:
            raise KeyboardInterrupt
        return self.fit(model, data, settings, **kwargs)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, train_subset, test_subset):
    out = tmp_path_factory.mktemp("fakeclass")
    spy = Spy()
    with pytest.MonkeyPatch.context() as mp:
        spy.patch(mp)
        state = fakeclass_train("mnist/cnn-small", TINY, out, train=train_subset, test=test_subset, progress=False,
                                log=lambda _: None)
    return out, state, spy


def test_tiny_run_logs_all_eleven_metrics(tiny_run):
    out, state, _ = tiny_run
    assert state["status"] == "round limit" and [r["round"] for r in state["rounds"]] == [0, 1, 2]
    assert state["rounds"][-1]["final"] and state["final"]["trained_rounds"] == 2
    assert json.loads((out / "rounds.json").read_text()) == state
    keys = [f"m{i:02d}" for i in range(11)]
    for where, records in (("rounds.json", [r["metrics"] for r in state["rounds"]]),
                           ("metrics.jsonl", read_metrics(out / "metrics.jsonl"))):
        found = {k: [r[name] for r in records for name in r if name.startswith(k + "_")] for k in keys}
        assert all(found[k] for k in keys), f"{where} lacks {[k for k in keys if not found[k]]}"
        for k, values in found.items():
            for v in values:
                # metric 7: DE's generation (generation records) and/or detection on two image sets (epochs)
                parts = [v[p] for p in ("generation", "current_net", "reference_net") if p in v] if k == "m07" else [v]
                assert parts and all("n" in p for p in parts), (where, k)
                if any(k == name[:3] for name in PER_CLASS) or k == "m07":
                    assert all("per_class" in p for p in parts), (where, k)
    trained = state["rounds"][0]["metrics"]
    assert trained["m00_generation"]["success_rate"] > 0 and trained["m00_generation"]["l0"] <= 300
    assert set(trained["m00_generation"]["per_class"]) == {str(c) for c in range(K)}
    for key in ("m02_current_batch", "m03_past_train", "m04_test_current", "m06_other_network"):
        assert trained[key]["n"] > 0 and set(DETECTION) <= set(trained[key]), key
        assert set(DETECTION) <= set(next(iter(trained[key]["per_class"].values())))
    assert trained["m05_test_past"]["n"] == 0  # round 0 has no past networks; round 1 has
    assert state["rounds"][1]["metrics"]["m05_test_past"]["n"] > 0
    assert set(trained["m07_other_process"]) == {"generation", "current_net", "reference_net"}
    assert {"nn_dist", "nn_dist_real_test", "reference_agree"} <= set(trained["m01_ood"])
    assert "robust" in state["rounds"][-1]["metrics"]["m08_final_sparse"]
    assert 0.9 < trained["m10_real_test"]["acc"] <= 1 and "fake_rate" in trained["m09_real_train"]
    # metrics.jsonl: one generation record and one record per epoch for each round, then the final one
    phases = [(r["step"], r["phase"]) for r in read_metrics(out / "metrics.jsonl")]
    assert phases == [(0, "generation"), (1, "train"), (2, "generation"), (3, "train"), (4, "generation"),
                      (5, "final")]
    for name in ("metrics.png", "round_000.png", "round_002.png", "model.safetensors"):
        assert (out / name).stat().st_size > 1000, name
    assert list((out / "tb").iterdir())


def test_generated_images_are_labelled_with_their_fake_class(tiny_run):
    out, state, spy = tiny_run
    assert len(spy.calls) == 3  # the reference network, then rounds 0 and 1
    data = [RoundData.load(out / "data" / f"round_{r:03d}.safetensors") for r in range(2)]
    for r, labels in enumerate(spy.calls[1:]):
        real, generated = labels[:1000], labels[1000:]
        assert real.max() < K and generated.min() >= K
        targets = torch.cat([d.t_train for d in data[: r + 1]])
        repeats = state["rounds"][r]["training_data"]["repeats"]
        assert torch.equal(generated, (targets + K).repeat(repeats))
    # kept images are those the network of the round gave their target class with probability >= 0.9
    start = load("mnist/cnn-small")
    network = expand_fake_classes(start, K)
    network.load_state_dict(load_checkpoint(out / "weights" / "round_000.safetensors")["model"])
    probs = predict_logits(network, data[0].x_train).softmax(1)
    assert (probs.gather(1, data[0].t_train[:, None]) >= 0.9).all()


def test_start_network_keeps_the_shipped_real_class_weights(tiny_run, test_subset):
    out, _, _ = tiny_run
    shipped = load("mnist/cnn-small")
    expanded = expand_fake_classes(shipped, K)
    x = test_subset[0][:500]
    small, big = predict_logits(shipped, x), predict_logits(expanded, x)
    assert big.shape == (500, 2 * K) and torch.allclose(big[:, :K], small, atol=1e-5)  # other matmul blocking
    assert torch.equal(big.argmax(1), small.argmax(1))
    assert torch.allclose(big.softmax(1)[:, :K], small.softmax(1), atol=1e-4)
    # the run's round-0 network is exactly that, and the caller's model was not changed
    saved = load_checkpoint(out / "weights" / "round_000.safetensors")["model"]
    assert all(torch.equal(saved[k], v) for k, v in expanded.state_dict().items())
    assert shipped.net[-1].out_features == K


def test_resume_after_an_interruption_equals_an_uninterrupted_run(tmp_path, tiny_run, train_subset, test_subset,
                                                                  capsys):
    reference_out, reference_state, _ = tiny_run
    out = tmp_path / "run"
    (out / "reference").mkdir(parents=True)  # reuse the cached reference network (its training is not under test)
    for name in ("model.safetensors", "model.json"):
        (out / "reference" / name).write_bytes((reference_out / "reference" / name).read_bytes())
    with pytest.MonkeyPatch.context() as mp:
        Spy(stop_at=2).patch(mp)  # stopped while training round 1
        with pytest.raises(KeyboardInterrupt):
            fakeclass_train("mnist/cnn-small", TINY, out, train=train_subset, test=test_subset, progress=False,
                            log=lambda _: None)
    assert [r["round"] for r in json.loads((out / "rounds.json").read_text())["rounds"]] == [0]
    state = fakeclass_train("mnist/cnn-small", TINY, out, train=train_subset, test=test_subset, progress=False,
                            log=lambda _: None)
    assert _without_time(state) == _without_time(reference_state)
    assert read_metrics(out / "metrics.jsonl") == read_metrics(reference_out / "metrics.jsonl")
    a = load_checkpoint(out / "weights" / "round_002.safetensors")["model"]
    b = load_checkpoint(reference_out / "weights" / "round_002.safetensors")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a finished run is left as it is, and without progress nothing is printed; changed settings are refused
    capsys.readouterr()
    assert _without_time(fakeclass_train("mnist/cnn-small", TINY, out, train=train_subset, test=test_subset,
                                         progress=False)) == _without_time(state)
    assert capsys.readouterr().out == ""
    changed = FakeClassSettings(**{**TINY.__dict__, "per_class": 3})
    with pytest.raises(ValueError, match="settings differ"):
        fakeclass_train("mnist/cnn-small", changed, out, train=train_subset, test=test_subset, progress=False,
                        log=lambda _: None)
    # a larger round limit goes on: the last generation becomes a trained round
    more = FakeClassSettings(**{**TINY.__dict__, "rounds": 3})
    state = fakeclass_train("mnist/cnn-small", more, out, train=train_subset, test=test_subset, progress=False,
                            log=lambda _: None)
    assert [(r["round"], bool(r.get("final"))) for r in state["rounds"]] == [(0, False), (1, False), (2, False),
                                                                            (3, True)]
    assert _without_time(state["rounds"][:2]) == _without_time(reference_state["rounds"][:2])
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == list(range(8))


def test_cli_runs_and_prints_the_table(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["fakeclass", "--rounds", "1", "--per-class", "1", "--test-per-class", "1", "--steps", "30",
                 "--epochs", "1", "--train-size", "500", "--reference-size", "500", "--reference-epochs", "1",
                 "--reference-per-class", "1", "--de-per-class", "1", "--de-popsize", "8", "--de-generations", "2",
                 "--eval-train-size", "200", "--eval-test-size", "200", "--nn-pool-size", "200",
                 "--no-progress", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "(0) succ" in printed and "(10) acc" in printed and "1*" in printed
    assert json.loads((out / "rounds.json").read_text())["settings"]["train_size"] == 500
