"""Bad inputs and settings raise alva.attacks.AttackInputError (a ValueError) with a message that says what
is wrong; unknown norms and losses raise ValueError."""

from __future__ import annotations

import pytest
import torch

from alva.attacks import ATTACKS, FGSM, PGD, Attack, AttackInputError


@pytest.fixture(scope="module")
def good(attack_batch) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = attack_batch
    return x[:8], y[:8]


@pytest.fixture(scope="module")
def pgd(cnn_small) -> PGD:
    return PGD(cnn_small, eps=0.1, steps=2, seed=0)


def test_attack_input_error_is_a_value_error():
    assert issubclass(AttackInputError, ValueError)
    assert ATTACKS["pgd"] is PGD and ATTACKS["fgsm"] is FGSM


def test_the_good_batch_is_accepted(pgd, good):
    """The baseline every bad case below differs from in one respect."""
    x, y = good
    res = pgd(x, y)
    assert len(res) == len(x)
    res = pgd(x, y, (y + 1) % 10)
    assert res.target is not None


# --- the batch --------------------------------------------------------------------------------------------

def bad_batches(x: torch.Tensor, y: torch.Tensor):
    nan = x.clone()
    nan[0, 0, 3, 3] = float("nan")
    inf = x.clone()
    inf[1, 0, 0, 0] = float("inf")
    return {
        "x 1-D": (x.flatten()[:8], y, "batch"),
        "x 0-D": (torch.tensor(0.5), y, "batch"),
        "x int": ((x * 255).to(torch.uint8), y, "floating-point"),
        "x int64": (x.long(), y, "floating-point"),
        "x bool": (x > 0.5, y, "floating-point"),
        "x empty": (x[:0], y[:0], "empty"),
        "x above 1": (x + 0.5, y, "outside the bounds"),
        "x below 0": (x - 0.5, y, "outside the bounds"),
        "x normalised": ((x - 0.1307) / 0.3081, y, "outside the bounds"),
        "x NaN": (nan, y, "NaN"),
        "x inf": (inf, y, "infinite"),
        "x not a tensor": (x.numpy(), y, "tensors"),
        "y not a tensor": (x, y.tolist(), "tensors"),
        "y float": (x, y.float(), "integer labels"),
        "y bool": (x, y > 4, "integer labels"),
        "y 2-D": (x, y[:, None], "1-D"),
        "y too short": (x, y[:5], "batch sizes differ"),
        "y too long": (x, torch.cat([y, y]), "batch sizes differ"),
        "y negative": (x, torch.where(torch.arange(len(y)) == 2, -1, y), ">= 0"),
        "y 10": (x, torch.where(torch.arange(len(y)) == 3, 10, y), r"\[0, 9\]"),
        "y 1000": (x, torch.full_like(y, 1000), r"\[0, 9\]"),
    }


CASES = list(bad_batches(torch.zeros(8, 1, 28, 28), torch.zeros(8, dtype=torch.long)))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("cls", [PGD, FGSM])
def test_bad_batch_raises(cnn_small, good, case, cls):
    x, y, message = bad_batches(*good)[case]
    attack = cls(cnn_small, eps=0.1) if cls is FGSM else cls(cnn_small, eps=0.1, steps=2)
    with pytest.raises(AttackInputError, match=message):
        attack(x, y)


def test_messages_give_the_offending_values(pgd, good):
    x, y = good
    with pytest.raises(AttackInputError) as info:
        pgd(x.flatten(), y)
    assert "(6272,)" in str(info.value)
    with pytest.raises(AttackInputError) as info:
        pgd(x + 0.5, y)
    assert "[0.0, 1.0]" in str(info.value) and "Normalized" in str(info.value)
    with pytest.raises(AttackInputError) as info:
        pgd(x, y[:5])
    assert "8" in str(info.value) and "5" in str(info.value)
    with pytest.raises(AttackInputError) as info:
        pgd(x, torch.where(torch.arange(8) == 0, 11, y))
    assert "10 outputs" in str(info.value) and "11" in str(info.value)


def test_pixels_on_the_bounds_are_fine(pgd, good):
    x, y = good
    edge = x.clone()
    edge[:, :, :2] = 1.0
    edge[:, :, -2:] = 0.0
    res = pgd(edge, y)
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1


def test_other_integer_label_dtypes_are_accepted(pgd, good):
    x, y = good
    for dtype in (torch.int32, torch.uint8, torch.int16):
        res = pgd(x, y.to(dtype))
        assert torch.equal(res.success, res.adv_logits.argmax(1) != y)


# --- targets ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make_target", [
    pytest.param(lambda y: y[:5], id="too short"),
    pytest.param(lambda y: torch.cat([y, y]), id="too long"),
    pytest.param(lambda y: y[:, None], id="2-D"),
    pytest.param(lambda y: y.tolist(), id="a list"),
    pytest.param(lambda y: torch.tensor(3), id="0-D"),
])
def test_target_of_the_wrong_shape_raises(pgd, good, make_target):
    x, y = good
    with pytest.raises(AttackInputError, match="target must be a tensor of shape"):
        pgd(x, y, make_target(y))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bool])
def test_target_of_a_non_integer_dtype_raises(pgd, good, dtype):
    x, y = good
    with pytest.raises(AttackInputError, match="integer labels"):
        pgd(x, y, ((y + 1) % 10).to(dtype))


@pytest.mark.parametrize("value", [10, -1, 99])
def test_target_out_of_range_raises(pgd, good, value):
    x, y = good
    target = torch.where(torch.arange(len(y)) == 1, value, (y + 1) % 10)
    with pytest.raises(AttackInputError, match=r"target labels must be in \[0, 9\]"):
        pgd(x, y, target)


@pytest.mark.parametrize("rule", ["most-likely", "Random", "", "llc"])
def test_unknown_target_rule_raises(cnn_small, rule):
    with pytest.raises(AttackInputError, match="unknown target rule"):
        PGD(cnn_small, target=rule)


# --- settings ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,message", [
    (dict(eps=-0.1), "eps must be >= 0"),
    (dict(eps=-1e-9), "eps must be >= 0"),
    (dict(eps=float("nan")), "eps must be >= 0"),
    # A non-finite eps or alpha used to be accepted and gave NaN images reported as successful attacks.
    (dict(eps=float("inf")), "eps must be >= 0 and finite"),
    (dict(alpha=float("inf")), "alpha must be > 0 and finite"),
    (dict(alpha=float("nan")), "alpha must be > 0"),
    (dict(steps=0), "steps must be an integer >= 1"),
    (dict(steps=-3), "steps must be an integer >= 1"),
    (dict(steps=2.5), "steps must be an integer >= 1"),
    (dict(steps=0.5), "steps must be an integer >= 1"),
    (dict(restarts=0), "restarts must be an integer >= 1"),
    (dict(restarts=1.5), "restarts must be an integer >= 1"),
    (dict(steps=float("inf")), "steps must be an integer >= 1"),
    (dict(steps=float("nan")), "steps must be an integer >= 1"),
    (dict(steps=None), "steps must be an integer >= 1"),
    (dict(steps=True), "steps must be an integer >= 1"),
    (dict(restarts=float("inf")), "restarts must be an integer >= 1"),
    (dict(alpha=0.0), "alpha must be > 0"),
    (dict(alpha=-0.01), "alpha must be > 0"),
    (dict(bounds=(1.0, 0.0)), "low < high"),
    (dict(bounds=(0.5, 0.5)), "low < high"),
])
def test_bad_settings_raise(cnn_small, kwargs, message):
    with pytest.raises(AttackInputError, match=message):
        PGD(cnn_small, **kwargs)


def test_integral_float_steps_are_accepted(cnn_small):
    assert PGD(cnn_small, steps=3.0).steps == 3


@pytest.mark.parametrize("eps", [-0.3, float("inf"), float("nan")])
@pytest.mark.parametrize("cls", [PGD, FGSM])
def test_fgsm_and_pgd_reject_bad_eps(cnn_small, cls, eps):
    with pytest.raises(AttackInputError, match="eps must be >= 0"):
        cls(cnn_small, eps=eps)


@pytest.mark.parametrize("norm", ["l3", "linf2", "euclidean", ""])
def test_unknown_norm_raises_value_error(cnn_small, norm):
    with pytest.raises(ValueError, match="unknown norm"):
        PGD(cnn_small, norm=norm)
    with pytest.raises(ValueError, match="unknown norm"):
        FGSM(cnn_small, norm=norm)


@pytest.mark.parametrize("loss", ["hinge", "mse", "", "dlr"])
def test_unknown_loss_raises_value_error(cnn_small, loss):
    with pytest.raises(ValueError, match="unknown loss"):
        PGD(cnn_small, loss=loss)


def test_model_must_be_a_module():
    with pytest.raises(AttackInputError, match="torch.nn.Module"):
        PGD(lambda x: x, eps=0.1)


def test_the_base_attack_has_no_run(cnn_small, good):
    with pytest.raises(NotImplementedError):
        Attack(cnn_small)(*good)
