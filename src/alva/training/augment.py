"""ALVA data augmentation: generate labelled adversarial images through a generator, in resumable chunks.

Each chunk's latent vectors and labels depend only on ``(seed, chunk index)``, and a chunk is written
atomically once finished, so a stopped run resumes with no sample lost or duplicated and ends with the
same data set as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from alva import distributed
from alva.attacks.alva import ALVA, ALVAResult, alva_summary
from alva.models.generative import draw_labels, draw_noise, is_conditional
from alva.report.figures import adversarial_grid
from alva.results import Batch
from alva.tracking.checkpoint import differences
from alva.tracking.files import atomic_write_bytes, atomic_write_json
from alva.tracking.verify import encode_verified, read_verified, tensors_sha256

KEEP = ("valid", "successful", "all")
REDO_CHUNK = "generate that chunk again (rerun with --resume)"


@dataclass
class GenerationSettings:
    """What to generate: ``n`` latent vectors attacked with ALVA(eps, steps, norm); ``keep`` selects which
    samples enter the data set: valid adversarial ones (default), all successful ones, or all."""

    n: int = 1000
    eps: float = 0.5
    steps: int = 1
    norm: str = "linf"
    chunk_size: int = 500
    seed: int = 0
    keep: str = "valid"

    def __post_init__(self) -> None:
        if self.n < 1 or self.chunk_size < 1:
            raise ValueError(f"n and chunk_size must be >= 1, got {self.n} and {self.chunk_size}")
        if self.keep not in KEEP:
            raise ValueError(f"keep must be one of {KEEP}, got {self.keep!r}")


def chunk_seed(seed: int, index: int) -> int:
    return int(seed) * 1_000_003 + int(index)


def attack_chunk(attack: ALVA, settings: GenerationSettings, index: int, device: str = "cpu") -> ALVAResult:
    """ALVA on chunk ``index``: its latent vectors (and labels) drawn from ``chunk_seed(seed, index)``."""
    size = min(settings.chunk_size, settings.n - index * settings.chunk_size)
    generator = torch.Generator(device=device).manual_seed(chunk_seed(settings.seed, index))
    z = draw_noise(attack.generator, size, generator=generator, device=device)
    y = draw_labels(attack.generator, size, generator=generator, device=device) if attack.conditional else None
    return attack(z, y)


def _selected(result: ALVAResult, keep: str) -> torch.Tensor:
    if keep == "all":
        return torch.ones_like(result.success)
    if keep == "successful":
        return result.success
    return result.valid_adversarial


def generate_dataset(generator: nn.Module, classifier: nn.Module, oracle: nn.Module | None, out: str | Path,
                     settings: GenerationSettings, *, device: str = "cpu", progress: bool = True
                     ) -> dict[str, Any]:
    """Write ``out/dataset.safetensors`` (``x``: the kept ``G(z')``, ``y``: their classes) and
    ``out/summary.json``; finished chunks in ``out/chunks/`` are reused on a rerun.

    Under ``torchrun`` rank ``r`` of ``N`` generates chunks ``r, r + N, ...`` only; since a chunk depends only on
    ``(seed, chunk index)``, rank 0's merge after a barrier gives exactly the single-process data set."""
    if settings.keep == "valid" and oracle is None:
        raise ValueError("keep='valid' needs an oracle classifier to judge validity")
    out = Path(out)
    chunks = out / "chunks"
    chunks.mkdir(parents=True, exist_ok=True)
    config = {**asdict(settings), "conditional": is_conditional(generator),
              **{f"{name}_sha256": _weights_sha256(net) for name, net in
                 (("generator", generator), ("classifier", classifier), ("oracle", oracle))}}
    config_path = out / "config.json"
    saved = json.loads(config_path.read_text()) if config_path.exists() else None
    changed = differences(saved, config) if saved is not None else []
    if changed:
        raise ValueError(f"{out} holds a generation with other settings or models ({config_path}): "
                         + "; ".join(changed) + "; use a new --out")
    if distributed.is_main():
        atomic_write_json(config_path, config, kind="alva-generation-config")
    attack = ALVA(generator, classifier, eps=settings.eps, steps=settings.steps, norm=settings.norm, oracle=oracle)
    count = math.ceil(settings.n / settings.chunk_size)
    mine = distributed.shard_indices(count, distributed.rank(), distributed.world_size())
    for index in tqdm(mine, desc="ALVA chunks", disable=not (progress and distributed.is_main()),
                      dynamic_ncols=True):
        path = chunks / f"chunk-{index:05d}.safetensors"
        if path.exists():
            read_verified(path, REDO_CHUNK)  # a damaged chunk stops the run here, not at the merge
            continue
        result = attack_chunk(attack, settings, index, device)
        stats = alva_summary(result)
        if result.z is None or result.z_adv is None or result.y is None:
            raise RuntimeError("an ALVA result holds z, z_adv and y")
        tensors = {"z": result.z, "z_adv": result.z_adv, "x_adv": result.x_adv, "y": result.y,
                   "success": result.success, "keep": _selected(result, settings.keep)}
        if result.valid is not None:
            tensors["valid"] = result.valid
        if index == 0:
            _grid(out / "grid.png", result, classifier)
        atomic_write_bytes(path, encode_verified(tensors, {"summary": json.dumps(stats)}))
    distributed.barrier()  # every chunk written
    if distributed.is_main():
        summary = _merge(out, count)
    distributed.barrier()  # the data set written
    return summary if distributed.is_main() else json.loads((out / "summary.json").read_text())


def _weights_sha256(net: nn.Module | None) -> str | None:
    """The fingerprint of a network's weights (None for no network)."""
    return None if net is None else tensors_sha256(dict(net.state_dict()))


def _grid(path: Path, result: ALVAResult, classifier: nn.Module) -> None:
    if result.x is None or result.y is None:
        raise RuntimeError("an ALVA result holds x and y")
    with torch.no_grad():
        clean_logits = classifier(result.x)
    # With an oracle, show the valid adversarial samples first: those are the ones the data set keeps.
    shown = result.valid_adversarial if result.valid is not None else result.success
    batch = Batch.from_logits(result.x, result.x_adv, result.y, clean_logits, result.adv_logits, shown)
    notes = None
    if result.oracle_pred is not None:
        notes = [f"oracle={int(p)}" for p in result.oracle_pred.tolist()]
    title = "ALVA: G(z) (top), G(z') with the classifier's label and the oracle's, their difference"
    adversarial_grid(path, batch, title=title, notes=notes)


def _merge(out: Path, count: int) -> dict[str, Any]:
    parts = [read_verified(out / "chunks" / f"chunk-{i:05d}.safetensors", REDO_CHUNK)[0] for i in range(count)]
    keep = torch.cat([p["keep"] for p in parts])
    x = torch.cat([p["x_adv"] for p in parts])[keep]
    y = torch.cat([p["y"] for p in parts])[keep]
    atomic_write_bytes(out / "dataset.safetensors", encode_verified({"x": x, "y": y}))
    success = torch.cat([p["success"] for p in parts])
    summary: dict[str, Any] = {"generated": len(keep), "kept": int(keep.sum()),
                               "success": success.float().mean().item()}
    if all("valid" in p for p in parts):
        valid = torch.cat([p["valid"] for p in parts])
        summary["validity"] = valid.float().mean().item()
        summary["valid_adversarial"] = (valid & success).float().mean().item()
    atomic_write_json(out / "summary.json", summary, kind="alva-generation-summary")
    return summary


def load_dataset(out: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(x, y)`` written by :func:`generate_dataset`."""
    tensors, _ = read_verified(Path(out) / "dataset.safetensors", "merge the chunks again (rerun the generation)")
    return tensors["x"], tensors["y"]
