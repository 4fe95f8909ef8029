"""``alva train``'s objective flags reach fast FGSM, N-FGSM and GradAlign, and a flag of another objective is
refused."""

from __future__ import annotations

import pytest

from alva.cli.main import build_parser, main
from alva.cli.train_cmd import objective_settings


def _args(*flags: str):
    return build_parser().parse_args(["train", *flags, "--out", "unused"])


def test_n_fgsm_and_grad_align_flags_become_objective_settings():
    args = _args("--adv", "n-fgsm", "--eps", "0.3", "--noise", "3", "--ramp-epochs", "2")
    assert objective_settings(args, "n-fgsm") == {"eps": 0.3, "noise": 3.0, "ramp_epochs": 2}
    args = _args("--adv", "grad-align", "--align-weight", "0.5", "--alpha", "0.2")
    assert objective_settings(args, "grad-align") == {"align_weight": 0.5, "alpha": 0.2}
    assert objective_settings(_args("--adv", "fast", "--clip-start"), "fast") == {"clip_start": True}
    assert objective_settings(_args("--adv", "fast"), "fast") == {}


@pytest.mark.parametrize("flags, objective", [(("--noise", "3"), "fast"), (("--align-weight", "1"), "n-fgsm"),
                                              (("--noise", "3"), "grad-align"), (("--clip-start",), "pgd")])
def test_a_flag_of_another_objective_is_refused(flags, objective):
    with pytest.raises(ValueError, match=flags[0]):
        objective_settings(_args("--adv", objective, *flags), objective)


@pytest.mark.parametrize("flags, message", [
    (("--adv", "pgd"), "--collapse-lr-factor acts on"), (("--adv", "n-fgsm"), "--collapse-lr-factor acts on"),
    ((), "--collapse-lr-factor acts on"), (("--adv", "fast", "--collapse-lr-factor", "1"), "--collapse-lr-factor must"),
    (("--adv", "fast", "--collapse-lr-factor", "nan"), "--collapse-lr-factor must"),
])
def test_a_collapse_lr_factor_it_cannot_use_is_refused_and_nothing_written(flags, message, tmp_path, capsys):
    out = tmp_path / "run"
    flags = flags if "--collapse-lr-factor" in flags else (*flags, "--collapse-lr-factor", "0.5")
    assert main(["train", *flags, "--out", str(out), "--threads", "1"]) == 2
    assert message in capsys.readouterr().err and not out.exists()
