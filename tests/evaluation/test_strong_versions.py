"""The versions of the strong evaluation: ``standard`` is AutoAttack's standard version (its four members, order
and budgets, L1's changes), ``plus``, ``rand`` and ``quick``; members that cannot run are left out with a warning;
a state written by another version of the ensemble is refused cleanly."""

from __future__ import annotations

import json

import pytest
import torch

from alva.attacks import APGD, APGDTargeted, HopSkipJump, Square
from alva.attacks.square import paired_l2_start
from alva.cli.main import main
from alva.data import fixed_subset
from alva.evaluation.strong import FORMAT, MEMBERS, STANDARD, VERSIONS, StrongEvaluation, strong_evaluation
from alva.tracking import load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def batch(mnist_test) -> tuple[torch.Tensor, torch.Tensor]:
    """40 MNIST test images (4 per class, seed 0)."""
    return fixed_subset(*mnist_test, 40, seed=0)


# --- the versions as AutoAttack defines them ---------------------------------------------------------------

def test_standard_is_autoattacks_four_members_in_its_order_with_its_budgets():
    assert STANDARD == ("apgd-ce", "apgd-t", "fab-t", "square")
    standard = VERSIONS["standard"]
    assert standard.attacks == STANDARD
    for norm in ("linf", "l2"):
        options = standard.options_for(norm)
        assert options["apgd-ce"] == {"steps": 100, "restarts": 1}
        assert options["apgd-t"] == {"steps": 100, "restarts": 1, "n_target_classes": 9}
        assert options["fab-t"] == {"steps": 100, "restarts": 1, "n_target_classes": 9}
        # 5000 random-search steps after the clean query and the starting point's; p's schedule not rescaled
        assert options["square"] == {"n_queries": 5002, "p_init": 0.8, "rescale_schedule": False,
                                     "l2_start": "pairs"}


def test_autoattack_plus_and_rand_members_and_restarts():
    plus = VERSIONS["plus"]
    assert plus.attacks == ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
    options = plus.options_for("linf")
    assert options["apgd-ce"]["restarts"] == options["apgd-dlr"]["restarts"] == options["fab"]["restarts"] == 5
    assert options["apgd-t"] == {"steps": 100, "restarts": 1, "n_target_classes": 9}
    assert options["fab-t"]["restarts"] == 1 and options["fab-t"]["n_target_classes"] == 9
    rand = VERSIONS["rand"]
    assert rand.attacks == ("apgd-ce", "apgd-dlr")
    for name in rand.attacks:
        assert rand.options_for("linf")[name] == {"steps": 100, "restarts": 1, "eot_iter": 20}
    assert VERSIONS["quick"].attacks == ("apgd-ce", "apgd-t", "square")


def test_l1_standard_has_autoattacks_l1_budgets():
    options = VERSIONS["standard"].options_for("l1")
    assert options["apgd-ce"] == {"steps": 100, "restarts": 5}
    assert options["apgd-t"] == {"steps": 100, "restarts": 1, "n_target_classes": 5}
    assert options["fab-t"]["n_target_classes"] == 9 and options["square"]["n_queries"] == 5002


def test_members_are_built_with_the_versions_settings(cnn_small):
    ev = StrongEvaluation(cnn_small, 0.3, attacks=["apgd-ce", "apgd-t", "square"], progress=False)
    ce, targeted, square = (ev.member(name) for name in ev.attacks)
    assert type(ce) is APGD and ce.steps == 100 and ce.restarts == 1
    assert isinstance(targeted, APGDTargeted) and targeted.n_target_classes == 9
    assert isinstance(square, Square) and square.n_queries == 5002 and not square.rescale_schedule
    assert square.p_init == 0.8 and square.l2_start == "pairs"


def test_the_l2_square_starts_as_autoattacks_on_a_centred_grid_of_paired_bumps(cnn_small, batch):
    """AutoAttack's L2 start (the strong evaluation's): a centred grid of 5 x 5 tiles on a 28 x 28 image (rows and
    columns 1 to 25), of norm eps, each tile holding both signs; the attack from it stays in the ball."""
    x, y = batch
    generator = torch.Generator().manual_seed(0)
    grey = torch.full_like(x[:4], 0.5)  # far from the bounds: no clipping
    start = paired_l2_start(grey, 2.0, lambda k: torch.rand(4, k, generator=generator), (0.0, 1.0))
    delta = (start - grey)[:, 0]
    torch.testing.assert_close(delta.reshape(4, -1).norm(dim=1), torch.full((4,), 2.0))
    assert delta[:, 0].abs().sum() == 0 and delta[:, :, 0].abs().sum() == 0 and delta[:, 26:].abs().sum() == 0
    tiles = delta[:, 1:26, 1:26].reshape(4, 5, 5, 5, 5).permute(0, 1, 3, 2, 4).reshape(4, 25, 25)
    assert ((tiles > 0).any(2) & (tiles < 0).any(2)).all()
    ev = StrongEvaluation(cnn_small, 2.0, "l2", attacks=["square"], options={"square": {"n_queries": 60}},
                          progress=False)
    res = ev.member("square")(x, y)
    assert ((res.x_adv - x).reshape(len(x), -1).norm(dim=1) <= 3.0 + 1e-4).all() and res.success.any()


def test_standard_runs_exactly_autoattacks_members(cnn_small):
    from alva.attacks.fab import FABTargeted

    ev = StrongEvaluation(cnn_small, 0.3, progress=False)
    assert ev.attacks == list(STANDARD) and ev.notes() == []
    fab_t = ev.member("fab-t")
    assert isinstance(fab_t, FABTargeted) and fab_t.n_target_classes == 9 and fab_t.eps == 0.3


def test_standard_with_fab_t_stays_in_the_ball_and_each_row_is_consistent(cnn_small, batch):
    x, y = batch
    small = {"apgd-ce": {"steps": 5}, "apgd-t": {"steps": 5, "n_target_classes": 2},
             "fab-t": {"steps": 10, "n_target_classes": 2}, "square": {"n_queries": 100}}
    res = strong_evaluation(cnn_small, x, y, 0.08, options=small, progress=False, sanity=False)
    assert [r["attack"] for r in res.table] == ["clean", *STANDARD]
    assert ((res.x_adv - x).abs().reshape(len(x), -1).amax(1) <= 0.08 + 1e-5).all()
    with torch.no_grad():
        pred = cnn_small(res.x_adv).argmax(1)
    broken = torch.tensor([b in STANDARD for b in res.broken_by])
    assert (pred[broken] != y[broken]).all()


# --- members without a form for the threat model -------------------------------------------------------

def test_l1_evaluation_stays_in_the_l1_ball_and_says_what_it_left_out(cnn_small, batch):
    x, y = batch
    ev = StrongEvaluation(cnn_small, 10.0, "l1", options={"apgd-ce": {"steps": 10, "restarts": 1},
                                                          "apgd-t": {"steps": 5, "n_target_classes": 2},
                                                          "fab-t": {"steps": 10, "n_target_classes": 2},
                                                          "square": {"n_queries": 50}},
                          progress=False, sanity=False, warn=False)
    assert [a for a in STANDARD if a not in ev.left_out] == ev.attacks
    res = ev.run(x, y)
    assert ((res.x_adv - x).abs().reshape(len(x), -1).sum(1) <= 10.0 * (1 + 1e-4)).all()
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert res.robust_acc < res.clean_acc
    assert len(res.warnings) == len(ev.left_out)


def test_rand_averages_gradients_over_twenty_passes(cnn_small):
    ev = StrongEvaluation(cnn_small, 0.3, version="rand", progress=False)
    assert ev.attacks == ["apgd-ce", "apgd-dlr"]
    assert all(ev.member(name).eot_iter == 20 for name in ev.attacks)


def test_cli_takes_the_l1_norm_and_the_versions(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--norm", "l3", "--out", "unused"])
    assert "l1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--version", "fast", "--out", "unused"])
    err = capsys.readouterr().err
    assert all(v in err for v in ("plus", "quick", "rand", "standard"))


# --- a state from another version of the ensemble ----------------------------------------------------------

def test_a_state_from_the_earlier_member_list_is_refused_cleanly(cnn_small, batch, tmp_path):
    x, y = batch
    kwargs = dict(attacks=["apgd-ce", "square"], options={"apgd-ce": {"steps": 5}, "square": {"n_queries": 20}},
                  progress=False, sanity=False)
    strong_evaluation(cnn_small, x, y, 0.1, state_dir=tmp_path, **{**kwargs, "attacks": ["apgd-ce"]})
    state = load_checkpoint(tmp_path / "state.safetensors")
    assert state["format"] == FORMAT and state["members"] == list(MEMBERS)
    assert json.loads((tmp_path / "state.json").read_text())["members"] == list(MEMBERS)
    # the state as the ensemble of APGD-CE, APGD-T, APGD-DLR and Square wrote it
    old = {k: v for k, v in state.items() if k != "members"} | {"format": "alva-strong-eval/1"}
    save_checkpoint(tmp_path / "state.safetensors", old)
    before = (tmp_path / "state.safetensors").read_bytes()
    with pytest.raises(ValueError, match="another version of the strong evaluation .*alva-strong-eval/1"):
        strong_evaluation(cnn_small, x, y, 0.1, state_dir=tmp_path, resume=True, **kwargs)
    assert (tmp_path / "state.safetensors").read_bytes() == before  # nothing overwritten
    # a state of this format with another member list is refused the same way
    save_checkpoint(tmp_path / "state.safetensors", {**state, "members": ["apgd-ce", "apgd-t", "apgd-dlr", "square"]})
    with pytest.raises(ValueError, match="another version"):
        strong_evaluation(cnn_small, x, y, 0.1, state_dir=tmp_path, resume=True, **kwargs)
    # a checkpoint that is no strong-evaluation state at all
    save_checkpoint(tmp_path / "state.safetensors", {"format": "alva-train/1", "epoch": 3})
    with pytest.raises(ValueError, match="not a strong-evaluation state"):
        strong_evaluation(cnn_small, x, y, 0.1, state_dir=tmp_path, resume=True, **kwargs)


def test_the_cli_refuses_an_old_state_with_a_message(tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["eval", "--model", "mnist/cnn-small", "--eps", "0.3", "--n", "10", "--version", "quick", "--attacks",
            "apgd-ce", "--no-sanity", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    state = load_checkpoint(out / "state.safetensors")
    save_checkpoint(out / "state.safetensors", {k: v for k, v in state.items() if k != "members"}
                    | {"format": "alva-strong-eval/1"})
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 2
    assert "another version of the strong evaluation" in capsys.readouterr().err


# --- with decision: HopSkipJump after Square ---------------------------------------------------------------

def test_with_decision_adds_hopskipjump_after_square_and_it_breaks_only_points_still_standing(cnn_small, batch):
    x, y = batch
    # Weak gradient and score members leave points for HopSkipJump (APGD-CE, even with one step, leaves only the
    # points HopSkipJump cannot break within its budget either).
    options = {"apgd-t": {"steps": 1, "n_target_classes": 1}, "square": {"n_queries": 10}, "hsj": {"max_queries": 600}}
    members = ("apgd-t", "square")
    plain = StrongEvaluation(cnn_small, 3.0, "l2", version="quick", attacks=members, options=options, progress=False,
                             sanity=False)
    ev = StrongEvaluation(cnn_small, 3.0, "l2", version="quick", attacks=members, extras=("decision",),
                          options=options, progress=False, sanity=False)
    assert ev.attacks == ["apgd-t", "square", "hsj"]
    assert isinstance(ev.member("hsj"), HopSkipJump) and ev.member("hsj").max_queries == 600
    before, after = plain.run(x, y), ev.run(x, y)
    rows = {row["attack"]: row for row in after.table}
    standing = sum(name is None for name in before.broken_by)
    assert rows["hsj"]["attacked"] == standing and rows["hsj"]["broken"] > 0
    assert rows["hsj"]["robust_acc"] == after.robust_acc < before.robust_acc
    for old, new in zip(before.broken_by, after.broken_by, strict=True):
        assert new == old or (old is None and new == "hsj")  # only points that stood are touched
    broke = torch.tensor([name == "hsj" for name in after.broken_by])
    with torch.no_grad():
        assert (cnn_small(after.x_adv[broke]).argmax(1) != y[broke]).all()
    assert ((after.x_adv[broke] - x[broke]).reshape(int(broke.sum()), -1).norm(dim=1) <= 3.0 + 1e-4).all()
    assert (after.queries[broke] <= before.queries[broke] + 600).all()


def test_with_decision_is_left_out_under_l1_and_reachable_from_the_cli(capsys, tmp_path):
    ev = StrongEvaluation(torch.nn.Identity(), 10.0, "l1", extras=("decision",), progress=False, sanity=False)
    assert "hsj" not in ev.attacks and "hsj" in ev.left_out
    out = tmp_path / "eval"
    assert main(["eval", "--model", "mnist/cnn-small", "--eps", "2.0", "--norm", "l2", "--n", "10", "--version",
                 "quick", "--with", "decision", "--no-sanity", "--no-progress", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert "hsj" in [row["attack"] for row in result["table"]]
