"""Two CPU processes (torchrun, gloo) split an evaluation's images and merge the per-sample results: PGD and
the quick strong evaluation on MNIST test images give exactly what one process gives."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from alva import distributed

sys.path.insert(0, str(Path(__file__).parent))
import distributed_eval_worker as worker  # noqa: E402


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, torchrun) -> list[dict]:
    out = tmp_path_factory.mktemp("sharded-eval")
    torchrun(str(Path(worker.__file__)), str(out))
    return [torch.load(out / f"rank{r}.pt") for r in range(2)]


@pytest.fixture(scope="module")
def one_process() -> dict:
    assert not distributed.is_initialized()
    return worker.compute()


def same(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            same(a[k], b[k], f"{where}.{k}")
    else:
        assert a == b, where


@pytest.mark.parametrize("part", ["pgd", "pgd-streamed", "strong", "strong-loader"])
def test_two_processes_give_the_per_sample_results_of_one(two_processes, one_process, part):
    for rank, sharded in enumerate(two_processes):
        got, expected = dict(sharded[part]), dict(one_process[part])
        if part == "strong-loader":  # no process reads a loader shared out over processes in order: no fingerprint
            got["settings"], expected["settings"] = dict(got["settings"]), dict(expected["settings"])
            assert got["settings"].pop("data_sha256") is None
            assert expected["settings"].pop("data_sha256") is not None
        same(got, expected, f"rank {rank} {part}")


def test_the_sharded_runs_cover_every_image_and_are_meaningful(one_process):
    pgd, strong = one_process["pgd"], one_process["strong"]
    assert pgd["report"]["n"] == worker.N == len(strong["broken_by"])
    assert pgd["kept"].shape == (80, 1, 28, 28) and strong["x_adv"].shape == (80, 1, 28, 28)
    assert pgd["report"]["robust_acc"] < pgd["report"]["clean_acc"] - 0.5
    assert strong["report"]["robust_acc"] < strong["report"]["clean_acc"]
    assert [row["attack"] for row in strong["table"]] == ["clean", *worker.STRONG]


def test_without_a_group_one_process_has_every_sample_and_gathering_orders_them():
    assert distributed.shard_indices(5) == [0, 1, 2, 3, 4]
    index, merged = distributed.gather_samples(torch.tensor([2, 0, 1]), {"v": torch.tensor([20.0, 0.0, 10.0]),
                                                                         "ok": torch.tensor([True, False, True])})
    assert index.tolist() == [0, 1, 2] and merged["v"].tolist() == [0.0, 10.0, 20.0]
    assert merged["ok"].tolist() == [False, True, True]
    with pytest.raises(ValueError, match="rows"):
        distributed.gather_samples(torch.tensor([0, 1]), {"v": torch.zeros(3)})
