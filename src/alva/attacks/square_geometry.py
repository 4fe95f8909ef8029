"""Square windows and pyramid-shaped bumps on images: the shapes of the Square Attack's proposals
(Andriushchenko, Croce, Flammarion and Hein 2020, "Square Attack", Section 3 and Appendix B)."""

from __future__ import annotations

import torch

__all__ = ["corner", "pyramid", "split_pyramid", "window", "window_index"]


def pyramid(a: int, b: int, device, dtype) -> torch.Tensor:
    """The paper's centred bump on an a x b window: at Chebyshev distance d from the centre,
    ``sum_{j=d+1}^{n+1} 1 / j^2`` with ``n = a // 2`` (largest in the centre)."""
    n = a // 2
    r = (torch.arange(a, device=device) - a // 2).abs()
    c = (torch.arange(b, device=device) - b // 2).abs()
    d = torch.maximum(r[:, None], c[None, :]).clamp_max(n)
    tail = torch.tensor([sum(1.0 / j**2 for j in range(k + 1, n + 2)) for k in range(n + 1)], device=device,
                        dtype=dtype)
    return tail[d]


def split_pyramid(s: int, device, dtype) -> torch.Tensor:
    """Two opposite bumps side by side on an s x s window (the L2 update's pattern)."""
    left = s // 2
    parts = [] if left == 0 else [pyramid(s, left, device, dtype)]
    parts.append(-pyramid(s, s - left, device, dtype))
    return torch.cat(parts, dim=1)


def window(top: torch.Tensor, left: torch.Tensor, s: int, h: int, w: int) -> torch.Tensor:
    """Per-sample boolean masks (n x 1 x h x w) of the s x s squares with corners (top, left)."""
    rows = torch.arange(h, device=top.device)
    cols = torch.arange(w, device=top.device)
    in_rows = (rows[None, :] >= top[:, None]) & (rows[None, :] < top[:, None] + s)
    in_cols = (cols[None, :] >= left[:, None]) & (cols[None, :] < left[:, None] + s)
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


def window_index(top: torch.Tensor, left: torch.Tensor, s: int, w: int) -> torch.Tensor:
    """Per sample, the positions (n x s*s, row by row) in a flattened h x w image of the s x s square with corner
    (top, left): a proposal that changes only the square reads and writes these entries alone."""
    steps = torch.arange(s, device=top.device)
    rows, cols = top[:, None] + steps, left[:, None] + steps
    return (rows[:, :, None] * w + cols[:, None, :]).reshape(len(top), s * s)


def corner(u: torch.Tensor, size: int, s: int) -> torch.Tensor:
    """The first row (or column) of an s-wide window placed by the uniform numbers ``u``."""
    return (u * (size - s + 1)).long().clamp_(0, size - s)


def signs(u: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """-1 where ``u < 0.5``, else +1."""
    return torch.where(u < 0.5, -1.0, 1.0).to(dtype)
