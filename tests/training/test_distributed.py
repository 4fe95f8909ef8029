"""Two CPU processes (torchrun, gloo): DDP training matches one process, sharded ALVA generation equals unsharded."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from alva import distributed
from alva.training.augment import generate_dataset, load_dataset

sys.path.insert(0, str(Path(__file__).parent))
import distributed_worker as worker  # noqa: E402


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, torchrun) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    torchrun(str(Path(worker.__file__)), str(out), timeout=180)
    return out


@pytest.mark.parametrize("objective", sorted(worker.OBJECTIVES))
def test_distributed_training_matches_one_process(two_processes, objective):
    assert not distributed.is_initialized()
    single, history = worker.train(objective)
    saved = torch.load(two_processes / f"{objective}.pt")
    # Same global batches, each split in two halves whose mean gradients DDP averages: only the order of float
    # sums differs from one process. After 8 SGD steps the weights agree to ~6e-8 (measured), hence atol 1e-5.
    # (With Adam the measured gap is ~4e-5: it divides by sqrt(v), which magnifies rounding in tiny gradients.)
    for name, weight in single.state_dict().items():
        torch.testing.assert_close(saved["model"][name], weight, atol=1e-5, rtol=0, msg=name)
    for key, value in history[0]["train"].items():
        assert saved["history"][0]["train"][key] == pytest.approx(value, abs=1e-4), key
    other = torch.load(two_processes / f"{objective}-rank1.pt")
    assert other["history"][0]["eval"] == saved["history"][0]["eval"]
    assert saved["history"][0]["eval"]["clean_acc"] == pytest.approx(history[0]["eval"]["clean_acc"], abs=1 / 128)


def test_sharded_generation_equals_the_unsharded_one(two_processes, tmp_path):
    summary = generate_dataset(*worker.generation_models(), None, tmp_path, worker.GENERATION, progress=False)
    x, y = load_dataset(tmp_path)
    x_sharded, y_sharded = load_dataset(two_processes / "generated")
    assert len(x) == worker.GENERATION.n
    assert torch.equal(x_sharded, x) and torch.equal(y_sharded, y)
    assert sorted(p.name for p in (two_processes / "generated" / "chunks").iterdir()) == \
        sorted(p.name for p in (tmp_path / "chunks").iterdir())
    assert summary["generated"] == worker.GENERATION.n


def test_sharded_sparse_generation_equals_the_unsharded_one(two_processes, tmp_path):
    from safetensors.torch import load_file

    from alva.cli.main import main

    assert main([*worker.SPARSE, "--out", str(tmp_path)]) == 0
    single = load_file(tmp_path / "images.safetensors")
    sharded = load_file(two_processes / "sparse" / "images.safetensors")
    assert single.keys() == sharded.keys() and all(torch.equal(single[k], sharded[k]) for k in single)
    assert single["target"].tolist() == [0, 0, 1, 1, 2, 2]


def test_shard_indices_are_disjoint_and_cover_everything():
    shards = [distributed.shard_indices(7, r, 3) for r in range(3)]
    assert shards == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(i for s in shards for i in s) == list(range(7))
    with pytest.raises(ValueError):
        distributed.shard_indices(7, 3, 3)
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
