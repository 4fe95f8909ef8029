"""Robustness figures: definitions on a hand-made result, and consistency on a real attack."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from alva.attacks import FGSM, PGD, AttackResult
from alva.data import ImageData, fixed_subset
from alva.evaluation import accuracy, attack_figures, eps_curve, evaluate_attack, summarize
from alva.models import load


def _logits_for(preds: list[int], confidence: float = 4.0) -> torch.Tensor:
    logits = torch.zeros(len(preds), 10)
    logits[torch.arange(len(preds)), torch.tensor(preds)] = confidence
    return logits


def test_summarize_follows_the_definitions():
    y = torch.tensor([0, 1, 2, 3])
    clean = _logits_for([0, 1, 2, 0])  # 3 of 4 correct: sample 3 is already wrong
    adv = _logits_for([0, 5, 7, 0])  # the attack fools samples 1 and 2; sample 3 stays wrong
    x = torch.zeros(4, 1, 2, 2)
    x_adv = x.clone()
    x_adv[1, 0, 0, 0] = 0.3
    x_adv[2, 0, 1, 1] = 0.1
    success = adv.argmax(1) != y
    result = AttackResult(x_adv, success, torch.full((4,), 3), torch.full((4,), 5), adv, clean)
    report = summarize("toy", x, y, result)
    assert report.clean_acc == pytest.approx(0.75)
    assert report.robust_acc == pytest.approx(0.25)
    assert report.adv_error == pytest.approx(0.75)
    assert report.success_rate == pytest.approx(2 / 3)  # among the 3 clean-correct samples
    top = torch.softmax(torch.tensor([4.0] + [0.0] * 9), 0)[0].item()
    assert report.confidence_misclassified == pytest.approx(top)
    assert report.norms["linf"] == pytest.approx((0.3 + 0.1) / 4)
    assert report.norms["l0"] == pytest.approx(0.5)
    assert report.mean_steps == 3 and report.mean_queries == 5
    assert report.per_class[3] == {"n": 1, "clean_acc": 0.0, "robust_acc": 0.0, "adv_error": 1.0,
                                   "success_rate": 0.0}


@pytest.fixture(scope="module")
def cnn():
    return load("mnist/cnn-small")


def test_pgd_report_on_the_shipped_cnn(cnn, test_subset):
    x, y = fixed_subset(*test_subset, 200, seed=1)
    report, batch = evaluate_attack(PGD(cnn, eps=0.3, steps=20, seed=0), x, y, batch_size=64, progress=False)
    assert report.n == 200
    assert report.clean_acc == pytest.approx(accuracy(cnn, x, y))
    assert report.robust_acc <= 0.05 < report.clean_acc
    assert report.norms["linf"] <= 0.3 + 1e-6
    assert sum(c["n"] for c in report.per_class.values()) == 200
    assert batch.x_adv.shape == x.shape and torch.equal(batch.y, y)
    # The batch's predictions are the model's predictions at the adversarial images.
    assert torch.equal(batch.adv_pred, cnn(batch.x_adv).argmax(1))


def test_eps_curve_starts_at_clean_accuracy_and_falls(cnn, test_subset):
    x, y = fixed_subset(*test_subset, 200, seed=2)
    curve = eps_curve(lambda eps: FGSM(cnn, eps=eps), [0.0, 0.1, 0.2, 0.3], x, y, progress=False)
    accs = [p["robust_acc"] for p in curve]
    assert accs[0] == pytest.approx(accuracy(cnn, x, y))
    assert accs[-1] < accs[0] - 0.5
    assert all(b <= a + 0.02 for a, b in zip(accs, accs[1:], strict=False))


def test_l0_counts_pixels_not_channel_values():
    x = torch.zeros(2, 3, 4, 4)
    x_adv = x.clone()
    x_adv[0, :, 0, 0] = 0.5  # one pixel, all three channels
    x_adv[0, 1, 2, 3] = 0.2  # a second pixel, one channel
    x_adv[1, 2, 1, 1] = 1e-7  # below the threshold: unchanged
    y = torch.tensor([0, 1])
    logits = _logits_for([0, 1])
    result = AttackResult(x_adv, torch.zeros(2, dtype=torch.bool), torch.zeros(2), torch.ones(2), logits, logits)
    report = summarize("toy", x, y, result)
    assert report.norms["l0"] == pytest.approx((2 + 0) / 2)


def _streamed(x: torch.Tensor, y: torch.Tensor) -> ImageData:
    return ImageData("test", "test", tuple(x.shape[1:]), tuple(str(i) for i in range(10)), "multiclass", y,
                     samples=TensorDataset(x, y))


def test_streamed_sets_give_the_figures_of_the_tensors(cnn, test_subset):
    x, y = fixed_subset(*test_subset, 150, seed=3)
    attack = PGD(cnn, eps=0.2, steps=5, seed=0)
    report, batch = evaluate_attack(attack, x, y, batch_size=64, progress=False)
    figures, _ = attack_figures(attack, x, y, batch_size=64, progress=False)
    for source in (_streamed(x, y), DataLoader(TensorDataset(x, y), batch_size=40)):
        streamed_figures, kept = attack_figures(attack, source, batch_size=64, progress=False)
        for name, value in figures.tensors().items():
            assert torch.equal(streamed_figures.tensors()[name], value), name
        streamed, _ = evaluate_attack(attack, source, batch_size=64, progress=False)
        assert streamed.to_dict() == report.to_dict()
        # Only the first batch of attacked images is kept, and it is the in-memory run's.
        assert len(kept.x_adv) == 64 and torch.equal(kept.x_adv, batch.x_adv[:64])
        assert torch.equal(kept.adv_pred, batch.adv_pred[:64]) and torch.equal(kept.y, y[:64])
    curve = eps_curve(lambda eps: FGSM(cnn, eps=eps), [0.1, 0.3], _streamed(x, y), batch_size=64, progress=False)
    assert curve == eps_curve(lambda eps: FGSM(cnn, eps=eps), [0.1, 0.3], x, y, batch_size=64, progress=False)


def test_labels_go_with_tensors_only(cnn, test_subset):
    x, y = test_subset
    with pytest.raises(ValueError, match="labels y"):
        evaluate_attack(FGSM(cnn, eps=0.1), x[:10], progress=False)
    with pytest.raises(ValueError, match="give y only"):
        evaluate_attack(FGSM(cnn, eps=0.1), _streamed(x[:10], y[:10]), y[:10], progress=False)
    with pytest.raises(TypeError, match="iterable of"):
        evaluate_attack(FGSM(cnn, eps=0.1), 3, progress=False)
