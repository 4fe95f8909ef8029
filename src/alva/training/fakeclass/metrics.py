"""The metrics of fake-class training: how a ``2K``-output network sees generated images (metrics 2-7), real
images (9, 10), and the out-of-distribution proxy of the generated images (metric 1)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alva.evaluation.accuracy import predict_logits
from alva.training.fakeclass.data import RoundData, RunData, cat, sample
from alva.training.fakeclass.settings import SAMPLE, FakeClassSettings, round_seed


def _summary(values: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, Any]:
    out: dict[str, Any] = {"n": int(rows.sum())}
    if out["n"]:
        out.update({k: v[rows].float().mean().item() for k, v in values.items()})
    return out


def with_classes(values: dict[str, torch.Tensor], classes: torch.Tensor, num_classes: int) -> dict[str, Any]:
    """Means of ``values`` overall and per class (classes with no sample are left out)."""
    record = _summary(values, torch.ones_like(classes, dtype=torch.bool))
    record["per_class"] = {str(c): _summary(values, classes == c) for c in range(num_classes)
                           if bool((classes == c).any())}
    return record


def fake_class_stats(logits: torch.Tensor, targets: torch.Tensor, num_classes: int, confidence: float = 0.9
                     ) -> dict[str, Any]:
    """How a ``2K``-output network sees generated images of the real classes ``targets`` (their label is the
    fake class ``K + target``): means overall and per target class of ``fake_prob``, ``loss`` (cross-entropy
    against the fake class), ``detected`` (predicted as that fake class), ``any_fake`` (predicted as some fake
    class), ``target_prob`` and ``fooled`` (``target_prob >= confidence``: still adversarial)."""
    if len(targets) == 0:
        return {"n": 0, "per_class": {}}
    logits, targets = logits.detach().cpu().float(), targets.cpu()
    fake = targets + num_classes
    logp = logits.log_softmax(dim=1)
    pred = logits.argmax(dim=1)
    target_prob = logp.gather(1, targets[:, None]).squeeze(1).exp()
    values = {
        "fake_prob": logp.gather(1, fake[:, None]).squeeze(1).exp(),
        "loss": F.nll_loss(logp, fake, reduction="none"),
        "detected": pred == fake,
        "any_fake": pred >= num_classes,
        "target_prob": target_prob,
        "fooled": target_prob >= confidence,
    }
    return with_classes(values, targets, num_classes)


def real_stats(logits: torch.Tensor, y: torch.Tensor, num_classes: int) -> dict[str, Any]:
    """Accuracy over all outputs on real images (``acc``; a real image called fake counts as wrong) and the
    share called fake (``fake_rate``), overall and per class."""
    logits, y = logits.detach().cpu(), y.cpu()
    pred = logits.argmax(dim=1)
    return with_classes({"acc": pred == y, "fake_rate": pred >= num_classes}, y, num_classes)


def nearest(queries: torch.Tensor, pool: torch.Tensor, *, cosine: bool = False, chunk: int = 500
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance of each query to its nearest pool image and that image's index: L2, or with ``cosine``
    ``1 - cos`` between the images as vectors (blind to brightness: a faint image is near its own shape)."""
    flat, q = pool.flatten(1), queries.flatten(1)
    if cosine:
        flat, q = F.normalize(flat, dim=1), F.normalize(q, dim=1)
    dist, index = [], []
    for i in range(0, len(q), chunk):
        if cosine:
            most = (q[i:i + chunk] @ flat.T).max(dim=1)
            dist.append(1 - most.values)
            index.append(most.indices)
        else:
            least = torch.cdist(q[i:i + chunk], flat).min(dim=1)
            dist.append(least.values)
            index.append(least.indices)
    if not dist:
        return queries.new_zeros(0), torch.zeros(0, dtype=torch.long)
    return torch.cat(dist), torch.cat(index)


class FakeClassMetrics:
    """The measurements of one run on its fixed image sets ``sets``."""

    def __init__(self, settings: FakeClassSettings, sets: RunData) -> None:
        self.settings, self.sets, self.k = settings, sets, settings.num_classes
        queries, labels = sets.queries
        cos, near = nearest(queries, sets.pool, cosine=True)
        self.real_yardstick = {"nn_dist_real_test": nearest(queries, sets.pool)[0].mean().item(),
                               "nn_cosine_real_test": cos.mean().item(),
                               "nn_agree_real_test": (sets.pool_y[near] == labels).float().mean().item()}

    def ood(self, x: torch.Tensor, t: torch.Tensor, reference: nn.Module) -> dict[str, Any]:
        """Metric 1's proxy for the successful generated images ``x`` of the classes ``t``: L2 distance to the
        nearest real training image (``nn_dist``), cosine distance to the most similar one (``nn_cosine``) and
        whether that one is of class ``t`` (``nn_agree``: a 1-NN classifier's view), each beside its value for
        real test images (``*_real_test``); and the reference network's view of them."""
        if len(x) == 0:
            return {"n": 0, **self.real_yardstick, "per_class": {}}
        dist, _ = nearest(x, self.sets.pool)
        cos, near = nearest(x, self.sets.pool, cosine=True)
        probs = predict_logits(reference, x).softmax(dim=1)
        values = {"nn_dist": dist, "nn_cosine": cos, "nn_agree": self.sets.pool_y[near] == t,
                  "reference_target_prob": probs.gather(1, t[:, None]).squeeze(1),
                  "reference_agree": probs.argmax(dim=1) == t, "reference_max_prob": probs.amax(dim=1)}
        record = with_classes(values, t, self.k)
        per_class = record.pop("per_class")
        ratio = record["nn_dist"] / max(self.real_yardstick["nn_dist_real_test"], 1e-12)
        return {**record, **self.real_yardstick, "nn_ratio": ratio, "per_class": per_class}

    def evaluate(self, model: nn.Module, r: int, data: list[RoundData], reference_sets: dict[str, Any], *,
                 epoch: int, final: bool) -> dict[str, Any]:
        """Metrics 2-7 (detection of generated images), 9 and 10 of ``model``.

        During round ``r``'s training (``final=False``) the current round is ``data[r]``: its training images
        (2), all training images so far (3), its held-out images (4), earlier held-out images (5), DE images of
        rounds ``<= r`` (7). For the final network (``final=True``, generation of round ``r`` made against it)
        only earlier rounds' images count: (3) ``data[:r]``, (5) ``data[:r]``, (7) ``data[:r]``.
        ``reference_sets`` holds the images generated once on the reference network (6, 7).
        """
        s, k = self.settings, self.k
        conf = s.attack.confidence
        upto = r if final else r + 1

        def stats(x: torch.Tensor, t: torch.Tensor) -> dict[str, Any]:
            return fake_class_stats(predict_logits(model, x) if len(x) else torch.zeros(0, 2 * k), t, k, conf)

        empty = self.sets.empty()
        train_x = cat([d.x_train for d in data[:upto]], empty[0])
        train_t = cat([d.t_train for d in data[:upto]], empty[1])
        past_test = data[:r]
        test_x = cat([d.x_test for d in past_test], empty[0])
        test_t = cat([d.t_test for d in past_test], empty[1])
        de_x = cat([d.x_de for d in data[:upto]], empty[0])
        de_t = cat([d.t_de for d in data[:upto]], empty[1])
        seed = round_seed(s.seed, r, SAMPLE) + epoch
        metrics: dict[str, Any] = {}
        if not final:
            metrics["m02_current_batch"] = stats(data[r].x_train, data[r].t_train)
        metrics["m03_past_train"] = stats(*sample(train_x, train_t, s.sample, seed))
        if not final:
            metrics["m04_test_current"] = stats(data[r].x_test, data[r].t_test)
        metrics["m05_test_past"] = stats(*sample(test_x, test_t, s.sample, seed + 7919))
        metrics["m06_other_network"] = stats(*reference_sets["sparse"])
        metrics["m07_other_process"] = {"current_net": stats(de_x, de_t), "reference_net": stats(*reference_sets["de"])}
        metrics.update(self.real_metrics(model))
        return metrics

    def real_metrics(self, model: nn.Module) -> dict[str, Any]:
        """Metrics 9 and 10: accuracy over all outputs on the real training and test subsets."""
        train, test = self.sets.eval_train, self.sets.eval_test
        return {"m09_real_train": real_stats(predict_logits(model, train[0]), train[1], self.k),
                "m10_real_test": real_stats(predict_logits(model, test[0]), test[1], self.k)}
