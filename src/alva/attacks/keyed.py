"""The one source of random numbers of the attacks: numbers keyed per sample.

A sample's numbers depend only on a seed, its key and a stream label (a tuple of ints such as ``(restart,)``
or ``(1, step)``), never on the other samples of its batch, the batch size or the row's position. They come
from a counter-based hash (the "lowbias32" integer hash of C. Wellons) rather than a stateful generator.

A sample's key is a hash of its pixels. Identical samples of one batch (the blank starts of sparse
generation) would draw the same numbers and end as one image, so their keys also mix in their labels (class,
target) and their occurrence among the copies with the same labels. A sample whose pixels are unique in its
batch keeps the key of its pixels alone.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["KeyedRandom", "Uniform", "generator_uniform", "sample_keys"]

Uniform = Callable[[int], torch.Tensor]
"""``uniform(k)``: an ``n x k`` tensor of numbers in [0, 1), one row per sample of a batch."""

_MASK32 = 0xFFFFFFFF


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A bijective mixing of 32-bit values held in int64 (``x`` is not changed).

    An int64 product wraps modulo 2**64, whose low 32 bits are the product modulo 2**32: masking them is the
    32-bit multiplication of the hash.
    """
    x = x ^ (x >> 16)
    x.mul_(0x7FEB352D).bitwise_and_(_MASK32)
    x.bitwise_xor_(x >> 15)
    x.mul_(0x846CA68B).bitwise_and_(_MASK32)
    return x.bitwise_xor_(x >> 16)


def _hash32_int(x: int) -> int:
    """:func:`_hash32` on a Python int."""
    x &= _MASK32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _MASK32
    x ^= x >> 15
    x = (x * 0x846CA68B) & _MASK32
    return x ^ (x >> 16)


def _hash_ints(values: tuple[int, ...]) -> int:
    h = 0x2545F491
    for v in values:
        for part in (v & _MASK32, (v >> 32) & _MASK32):
            h = _hash32_int(h ^ _hash32_int(part))
    return h


def _row_keys(t: torch.Tensor) -> torch.Tensor:
    """A 32-bit key per row of ``t`` from its entries (as float32 bits, each mixed with its position)."""
    flat = t.detach().reshape(len(t), -1).to(torch.float32).contiguous()
    bits = flat.view(torch.int32).to(torch.int64) & _MASK32
    position = _hash32(torch.arange(flat.shape[1], dtype=torch.int64, device=t.device) ^ 0x9E3779B9)
    return _hash32(_hash32(bits ^ position).sum(dim=1) & _MASK32)


def _occurrence(keys: torch.Tensor) -> torch.Tensor:
    """For each entry, the number of earlier entries with the same key."""
    order = torch.argsort(keys, stable=True)
    _, counts = torch.unique_consecutive(keys[order], return_counts=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(keys), device=keys.device) - (counts.cumsum(0) - counts).repeat_interleave(counts)
    return rank


def sample_keys(x: torch.Tensor, *labels: torch.Tensor | None) -> torch.Tensor:
    """A 32-bit key per sample: the hash of its pixels; for samples whose pixels repeat in the batch, mixed with
    their ``labels`` (per-sample tensors; None ones are skipped) and their occurrence among the copies with the
    same labels, so that no two samples of a batch share a key unless their hashes collide."""
    keys = _row_keys(x)
    _, inverse, counts = torch.unique(keys, return_inverse=True, return_counts=True)
    twins = (counts[inverse] > 1).nonzero().squeeze(1)
    if len(twins) == 0:
        return keys
    mixed = keys[twins]
    for label in labels:
        if label is not None:
            mixed = _hash32(mixed ^ _row_keys(label[twins]))
    keys[twins] = _hash32(mixed ^ _hash32(_occurrence(mixed) ^ 0x5BD1E995))
    return keys


class KeyedRandom:
    """Random numbers that depend only on a seed, a sample's key (:func:`sample_keys`) and a stream label.

    ``uniform(rows, stream, k)`` gives ``k`` numbers in [0, 1) for each row of the batch: the same numbers
    for the same sample whatever the other samples of its batch, the batch size or the row's position.
    The seed is the first draw of ``generator`` (the attack's seeded generator, or torch's global one);
    ``labels`` (the batch's labels and targets) tell apart the samples with the same pixels.
    """

    def __init__(self, x: torch.Tensor, generator: torch.Generator | None, *labels: torch.Tensor | None) -> None:
        gen_device = generator.device if generator is not None else torch.device("cpu")
        self.seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=gen_device).item())
        self.keys = sample_keys(x, *labels)
        self._slots: dict[int, torch.Tensor] = {}

    def uniform(self, rows: torch.Tensor, stream: tuple[int, ...], k: int) -> torch.Tensor:
        base = _hash32(self.keys[rows] ^ _hash_ints((self.seed, *stream)))[:, None]
        if k not in self._slots:
            self._slots[k] = _hash32(torch.arange(k, dtype=torch.int64, device=self.keys.device) ^ 0x632BE5AB)
        bits = _hash32(_hash32(base ^ self._slots[k]) ^ base)
        return (bits >> 8).to(torch.float32) * 2.0**-24

    def stream(self, rows: torch.Tensor, stream: tuple[int, ...]) -> Uniform:
        """The numbers of ``rows`` in ``stream`` as a :data:`Uniform` (what the norms sample from)."""
        return lambda k: self.uniform(rows, stream, k)


def generator_uniform(n: int, generator: torch.Generator | None, device: torch.device | str = "cpu",
                      dtype: torch.dtype = torch.float32) -> Uniform:
    """A :data:`Uniform` for ``n`` samples drawn from a torch generator (torch's global one when None): for
    code outside the attacks (adversarial training) whose randomness is the training loop's generator."""
    return lambda k: torch.rand((n, k), generator=generator, device=device, dtype=dtype)
