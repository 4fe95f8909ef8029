"""The strong evaluation: the ensemble per sample against its members alone, resuming after an interruption, the
table, and ``alva eval``. These tests run the ensemble's machinery on APGD-CE, APGD-T and Square (``CORE``);
the versions and their members are in ``test_strong_versions.py``."""

from __future__ import annotations

import json
import math

import pytest
import torch

from alva.cli.main import main
from alva.data import fixed_subset
from alva.evaluation.strong import MEMBERS, StrongEvaluation, strong_evaluation

CORE = ["apgd-ce", "apgd-t", "square"]
# Small budgets keep the tests fast; the ensemble logic is the same as with the standard ones.
SMALL = {"apgd-ce": {"steps": 15}, "apgd-t": {"steps": 10, "n_target_classes": 3}, "apgd-dlr": {"steps": 10},
         "square": {"n_queries": 150}}




@pytest.fixture(scope="module")
def batch(mnist_test) -> tuple[torch.Tensor, torch.Tensor]:
    """100 MNIST test images (10 per class, seed 0)."""
    return fixed_subset(*mnist_test, 100, seed=0)


@pytest.fixture(scope="module")
def reference(cnn_small, batch):
    """The ensemble at eps 0.08 (about half the points stand) with SMALL budgets, uninterrupted, one batch."""
    ev = StrongEvaluation(cnn_small, 0.08, attacks=CORE, options=SMALL, progress=False, sanity=False)
    return ev, ev.run(*batch)


def linf(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).reshape(len(a), -1).abs().amax(1)


def same_result(a, b) -> None:
    assert torch.equal(a.x_adv, b.x_adv)
    assert a.broken_by == b.broken_by
    assert torch.equal(a.queries, b.queries) and torch.equal(a.steps, b.steps)
    assert [(r["attack"], r["robust_acc"], r["attacked"], r["broken"]) for r in a.table] == \
           [(r["attack"], r["robust_acc"], r["attacked"], r["broken"]) for r in b.table]


def test_the_ensemble_is_never_weaker_than_any_member_alone(batch, reference):
    """At an eps where about half the points stand, every sample that a member breaks alone (run on the
    whole batch) is broken by the ensemble, where later members only see what earlier ones left."""
    x, y = batch
    ev, res = reference
    broken = ~res.robust
    assert 0.2 < res.robust_acc < 0.8
    alone = {name: ev.member(name)(x, y).success for name in ev.attacks}
    for name, success in alone.items():
        assert not (success & ~broken).any(), name
    assert broken.sum() >= max(s.sum() for s in alone.values())
    # later members add something here: the ensemble is stronger than its first member
    assert res.table[2]["broken"] > 0


def test_result_and_table_are_consistent(cnn_small, batch):
    x, y = batch
    res = strong_evaluation(cnn_small, x, y, 0.1, attacks=CORE, options=SMALL, progress=False, sanity=False)
    assert [r["attack"] for r in res.table] == ["clean", *CORE]
    accs = [r["robust_acc"] for r in res.table]
    assert accs == sorted(accs, reverse=True)  # cumulative: never rises
    for before, row in zip(res.table[:-1], res.table[1:], strict=True):
        assert row["attacked"] == round(before["robust_acc"] * len(x))
        assert row["robust_acc"] == pytest.approx((row["attacked"] - row["broken"]) / len(x))
        assert row["seconds"] >= 0
    with torch.no_grad():
        pred = cnn_small(res.x_adv).argmax(1)
    names = res.broken_by
    broken = torch.tensor([n is not None and n != "clean" for n in names])
    standing = torch.tensor([n is None for n in names])
    assert (pred[broken] != y[broken]).all()
    assert (pred[standing] == y[standing]).all()
    assert torch.equal(res.x_adv[standing], x[standing])  # robust points keep the clean image
    assert (linf(res.x_adv, x) <= 0.1 + 1e-5).all()
    assert res.robust_acc == pytest.approx(standing.double().mean().item())
    assert res.report.robust_acc == pytest.approx(res.robust_acc)
    for name in set(names) - {None}:
        assert name in ("clean", *MEMBERS)
    json.dumps(res.to_dict())  # the summary is plain JSON


def test_the_ensemble_breaks_cnn_small_at_eps_0_3(cnn_small, batch):
    x, y = batch
    res = strong_evaluation(cnn_small, x, y, 0.3, version="quick", progress=False, sanity=False)
    assert res.robust_acc == 0.0 and res.clean_acc > 0.95
    assert res.table[1]["broken"] == res.table[1]["attacked"]  # APGD-CE alone does it


@pytest.mark.parametrize("stop_at", [("attack", "apgd-ce"), ("batch", "apgd-t"), ("batch", "square")])
def test_a_resumed_evaluation_gives_the_same_result(cnn_small, batch, tmp_path, stop_at, reference):
    """Stopped after an attack or within one (batches of 25), then resumed: the same result as the
    uninterrupted run (which ran in one batch: the batches do not matter either)."""
    x, y = batch
    kwargs = dict(attacks=CORE, options=SMALL, progress=False, sanity=False, batch_size=25)
    reference = reference[1]

    class Stop(Exception):
        pass

    seen = []

    def stop(event, info):
        seen.append(event)
        if (event, info["attack"]) == stop_at and (event == "attack" or info["done"] >= 25):
            raise Stop

    with pytest.raises(Stop):
        strong_evaluation(cnn_small, x, y, 0.08, state_dir=tmp_path, callback=stop, **kwargs)
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["done"] == CORE[:CORE.index(stop_at[1]) + (stop_at[0] == "attack")]
    assert (state["current"] is None) == (stop_at[0] == "attack")
    resumed = strong_evaluation(cnn_small, x, y, 0.08, state_dir=tmp_path, resume=True, **kwargs)
    same_result(resumed, reference)
    # resuming a finished state runs nothing and gives the same result again
    again = strong_evaluation(cnn_small, x, y, 0.08, state_dir=tmp_path, resume=True, batch_size=7,
                              callback=lambda e, i: pytest.fail("nothing should run"),
                              **{k: v for k, v in kwargs.items() if k != "batch_size"})
    same_result(again, reference)


def test_running_a_prefix_of_the_attacks_then_the_rest(cnn_small, batch, tmp_path, reference):
    x, y = batch
    kwargs = dict(options=SMALL, progress=False, sanity=False)
    first = strong_evaluation(cnn_small, x, y, 0.08, attacks=["apgd-ce"], state_dir=tmp_path, **kwargs)
    assert [r["attack"] for r in first.table] == ["clean", "apgd-ce"]
    full = strong_evaluation(cnn_small, x, y, 0.08, attacks=CORE, state_dir=tmp_path, resume=True, **kwargs)
    same_result(full, reference[1])


def test_resume_refuses_other_settings_and_an_existing_state_needs_resume(cnn_small, batch, tmp_path):
    x, y = batch
    x, y = x[:20], y[:20]
    kwargs = dict(options=SMALL, progress=False, sanity=False)
    strong_evaluation(cnn_small, x, y, 0.3, attacks=["apgd-ce"], state_dir=tmp_path, **kwargs)
    with pytest.raises(ValueError, match="resume"):
        strong_evaluation(cnn_small, x, y, 0.3, attacks=CORE, state_dir=tmp_path, **kwargs)
    with pytest.raises(ValueError, match="eps"):
        strong_evaluation(cnn_small, x, y, 0.2, state_dir=tmp_path, resume=True, **kwargs)
    with pytest.raises(ValueError, match="data_sha256"):
        strong_evaluation(cnn_small, x.flip(0), y.flip(0), 0.3, state_dir=tmp_path, resume=True, **kwargs)
    with pytest.raises(ValueError, match="not the start"):
        strong_evaluation(cnn_small, x, y, 0.3, attacks=["square"], state_dir=tmp_path, resume=True, **kwargs)


@pytest.mark.parametrize("bad, message", [
    (dict(attacks=["pgd"]), "attacks must be"), (dict(attacks=["square", "square"]), "attacks must be"),
    (dict(version="fast"), "unknown version"), (dict(options={"cw": {}}), "unknown attacks"),
    (dict(options={"square": {"n_queries": 0}}), "n_queries"),
])
def test_bad_settings_give_clear_errors(cnn_small, bad, message):
    with pytest.raises(ValueError, match=message):
        StrongEvaluation(cnn_small, 0.3, **bad)


def test_other_members_and_orders_run(cnn_small, batch):
    x, y = batch[0][:20], batch[1][:20]
    res = strong_evaluation(cnn_small, x, y, 0.3, attacks=["square", "apgd-dlr"], options=SMALL, progress=False,
                            sanity=False)
    assert [r["attack"] for r in res.table] == ["clean", "square", "apgd-dlr"]
    assert res.robust_acc <= 0.05
    assert set(res.broken_by) <= {"clean", "square", "apgd-dlr"}


def test_l2_evaluation_stays_in_the_ball(cnn_small, batch):
    x, y = batch[0][:40], batch[1][:40]
    res = strong_evaluation(cnn_small, x, y, 1.5, norm="l2", attacks=CORE, options=SMALL, progress=False,
                            sanity=False)
    dist = (res.x_adv - x).reshape(len(x), -1).norm(dim=1)
    assert (dist <= 1.5 + 1e-4).all()
    assert res.robust_acc < res.clean_acc - 0.3
    assert not math.isnan(res.report.norms["l2"])


def test_cli_eval_writes_result_prints_the_table_and_resumes(tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["eval", "--model", "mnist/cnn-small", "--eps", "0.3", "--n", "20", "--version", "quick",
            "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "result.json").read_text())
    assert result["robust_acc"] <= 0.05 and result["clean_acc"] >= 0.9 and result["n"] == 20
    assert [r["attack"] for r in result["table"]] == ["clean", "apgd-ce", "apgd-t", "square"]
    assert "apgd-ce" in printed and "robust acc" in printed and "WARNING" not in printed
    assert result["warnings"] == []
    assert main(argv) == 2  # a state is there: refuse without --resume
    assert "--resume" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 0
    assert json.loads((out / "result.json").read_text())["table"] == result["table"]
    with pytest.raises(SystemExit):
        main(["eval", "--eps", "0.3", "--attacks", "apgd-ce,cw", "--out", str(out)])
    assert "cw" in capsys.readouterr().err


def test_a_streamed_set_gives_the_per_sample_results_and_table_of_the_tensors(cnn_small, batch, reference):
    from torch.utils.data import DataLoader, TensorDataset

    ev, expected = reference
    streamed = ev.run(DataLoader(TensorDataset(*batch), batch_size=30), keep=40)
    assert streamed.broken_by == expected.broken_by
    assert torch.equal(streamed.queries, expected.queries) and torch.equal(streamed.steps, expected.steps)
    assert torch.equal(streamed.adv_logits, expected.adv_logits) and torch.equal(streamed.y, expected.y)
    assert torch.equal(streamed.x_adv, expected.x_adv[:40])  # only the first images are kept
    drop = lambda table: [{k: v for k, v in row.items() if k != "seconds"} for row in table]  # noqa: E731
    assert drop(streamed.table) == drop(expected.table)
    assert streamed.report.to_dict() == expected.report.to_dict()
    assert streamed.settings == expected.settings  # the same data fingerprint, read batch by batch
    with pytest.raises(ValueError, match="state folder"):
        ev.run(DataLoader(TensorDataset(*batch), batch_size=30), state_dir="unused")


def test_a_run_from_python_writes_the_result_that_the_report_renders(cnn_small, batch, tmp_path):
    from alva.report.html import build_report
    from alva.tracking import json_kind

    x, y = batch
    result = strong_evaluation(cnn_small, x[:20], y[:20], eps=0.3, version="quick", sanity=False, progress=False,
                               out=tmp_path / "eval")
    saved = json.loads((tmp_path / "eval" / "result.json").read_text())
    assert json_kind(saved) == "strong-eval"
    assert saved["robust_acc"] == result.robust_acc and saved["broken_by"] == result.broken_by
    assert not (tmp_path / "eval" / "state.safetensors").exists()
    page, sections = build_report(tmp_path / "eval")
    assert [s.kind for s in sections] == ["strong evaluation"]
    assert sections[0].tables[0].caption == "robust accuracy after each attack"
    assert [row[0] for row in sections[0].tables[0].rows] == ["clean", "apgd-ce", "apgd-t", "square"]
    assert "robust accuracy after each attack" in page
