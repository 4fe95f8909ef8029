"""``alva train``'s objective flags reach fast FGSM, N-FGSM and GradAlign, and a flag of another objective is
refused."""

from __future__ import annotations

import pytest

from alva.cli.main import build_parser
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
