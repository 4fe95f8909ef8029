"""Auto-PGD (Croce and Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks"): PGD with momentum whose step size needs no tuning, under L-inf or L2, with the
cross-entropy, DLR or any class loss; untargeted, targeted at given classes, or (:class:`APGDTargeted`)
targeted in turn at the most likely other classes.

The algorithm (Section 3 of the paper), per sample: start at ``x(0)`` (a random point of the ball), step size
``eta = 2 eps``. Each step::

    z(k+1) = P(x(k) + eta * s(grad f(x(k))))                     s: sign for L-inf, unit vector for L2
    x(k+1) = P(x(k) + a (z(k+1) - x(k)) + (1 - a)(x(k) - x(k-1)))  a = 1 for the first step, else 0.75

where ``P`` projects onto the eps ball and the pixel bounds. At the checkpoints ``w_j = ceil(p_j N)`` with
``p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`` the step size is halved, and the
iterate moved back to the point of highest loss so far, if

1. the loss rose in fewer than ``rho = 0.75`` of the steps since the last checkpoint, or
2. the step size was not halved at the last checkpoint and the highest loss has not grown since.

Random numbers (the random start) are drawn per sample from a counter-based hash of the seed, the
sample's pixels and the restart: a sample gets the same start whatever batch it is attacked in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from alva.attacks.base import Attack, AttackInputError, AttackResult, positive_int
from alva.attacks.dlr import DLRLoss
from alva.attacks.losses import ClassLoss, margin
from alva.attacks.norms import L2, Linf, Norm, get_norm

__all__ = ["APGD", "APGDTargeted", "KeyedRandom", "apgd_checkpoints"]


def apgd_checkpoints(steps: int) -> list[int]:
    """The steps ``ceil(p_j * steps)``, ``0 < p_j < 1``, at which APGD may halve its step size."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    # round() before ceil: 0.22 + 0.19 is 0.41000000000000003 in floating point, which must give 41, not 42.
    return sorted({w for w in (math.ceil(round(q * steps, 9)) for q in p[1:]) if 0 < w < steps})


# --- per-sample random numbers -----------------------------------------------------------------------------

_MASK32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2**32`` for int64 tensors with entries in [0, 2**32): in two halves, so nothing overflows."""
    return ((x & 0xFFFF) * c + ((((x >> 16) * c) & 0xFFFF) << 16)) & _MASK32


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A bijective mixing of 32-bit values (the "lowbias32" integer hash of C. Wellons)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


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


def sample_keys(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit key per sample computed from its pixels (as float32 bits, each mixed with its position)."""
    flat = x.detach().reshape(len(x), -1).to(torch.float32).contiguous()
    bits = flat.view(torch.int32).to(torch.int64) & _MASK32
    position = _hash32(torch.arange(flat.shape[1], dtype=torch.int64, device=x.device) ^ 0x9E3779B9)
    return _hash32(_hash32(bits ^ position).sum(dim=1) & _MASK32)


class KeyedRandom:
    """Random numbers that depend only on a seed, a sample's pixels and a stream label.

    ``uniform(rows, stream, k)`` gives ``k`` numbers in [0, 1) for each row of the batch: the same numbers
    for the same sample whatever the other samples of its batch, the batch size or the row's position.
    The seed is the first draw of ``generator`` (the attack's seeded generator, or torch's global one).
    """

    def __init__(self, x: torch.Tensor, generator: torch.Generator | None) -> None:
        gen_device = generator.device if generator is not None else torch.device("cpu")
        self.seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=gen_device).item())
        self.keys = sample_keys(x)
        self._slots: dict[int, torch.Tensor] = {}

    def uniform(self, rows: torch.Tensor, stream: tuple[int, ...], k: int) -> torch.Tensor:
        base = _hash32(self.keys[rows] ^ _hash_ints((self.seed, *stream)))[:, None]
        if k not in self._slots:
            self._slots[k] = _hash32(torch.arange(k, dtype=torch.int64, device=self.keys.device) ^ 0x632BE5AB)
        bits = _hash32(_hash32(base ^ self._slots[k]) ^ base)
        return (bits >> 8).to(torch.float32) * 2.0**-24

    def ball(self, norm: Norm, like: torch.Tensor, rows: torch.Tensor, eps: float, stream: tuple[int, ...]
             ) -> torch.Tensor:
        """A point uniformly distributed in the eps ball of ``norm``, shaped like ``like`` (the rows' images)."""
        d = like[0].numel()
        if isinstance(norm, Linf):
            u = self.uniform(rows, stream, d)
            return (u * 2 - 1).mul_(eps).view_as(like).to(like.dtype)
        if isinstance(norm, L2):
            u = self.uniform(rows, stream, 2 * d + 1)
            # Box-Muller normals give a uniform direction; the radius has density proportional to r^(d-1).
            normal = torch.sqrt(-2 * torch.log1p(-u[:, :d])) * torch.cos(2 * math.pi * u[:, d:2 * d])
            radius = eps * u[:, 2 * d].pow(1.0 / d)
            direction = normal / normal.norm(dim=1, keepdim=True).clamp_min(1e-12)
            return (direction * radius[:, None]).view_as(like).to(like.dtype)
        raise AttackInputError(f"no random start for the norm {norm!r}")


# --- the best point of each sample ----------------------------------------------------------------------------

@dataclass
class Best:
    """The worst case found so far per sample: a success beats a failure; between equals, the higher score."""

    x: torch.Tensor
    logits: torch.Tensor
    score: torch.Tensor
    success: torch.Tensor

    def update(self, rows: torch.Tensor, x: torch.Tensor, logits: torch.Tensor, score: torch.Tensor,
               success: torch.Tensor) -> None:
        old_success, old_score = self.success[rows], self.score[rows]
        better = (success & ~old_success) | ((success == old_success) & (score > old_score))
        if not better.any():
            return
        local = better.nonzero().squeeze(1)
        at = rows[local]
        self.x[at] = x[local].to(self.x.dtype)
        self.logits[at] = logits[local].to(self.logits.dtype)
        self.score[at] = score[local].to(self.score.dtype)
        self.success[at] = success[local]


def _take(t: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor | None:
    return None if t is None else t[rows]


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.ndim - 1)))


class APGD(Attack):
    """Auto-PGD: a budget of ``steps`` gradient steps and nothing to tune.

    Args:
        eps: radius of the ball (>= 0) in the units of ``norm``.
        steps: gradient steps per restart (the paper's N_iter; AutoAttack uses 100).
        norm: ``"linf"`` or ``"l2"``.
        loss: ``"ce"`` (default), ``"dlr"`` (the scale-invariant loss of the paper; targeted DLR when the
            attack is targeted), ``"margin"`` or any class loss (see :class:`~alva.attacks.base.Attack`).
        restarts: independent runs from new random starts; each sample keeps its worst case. With
            ``early_stop`` a restart only works on the samples not yet broken.
        rho: the fraction of steps since the last checkpoint in which the loss must have risen for the step
            size to stay (condition 1, 0.75 in the paper).
        momentum: the weight ``a`` of the new step against the last move (0.75 in the paper).
        random_start: start at a random point of the ball (else at x itself).
        target, early_stop, bounds, seed: as for every attack. A target (tensor or rule) makes APGD targeted:
            it maximises the targeted loss and succeeds when ``x_adv`` is classified as the target.

    Queries: one forward and backward pass per step plus one forward pass at the last iterate, per restart,
    on the samples still attacked, and the clean forward pass. The result for a sample is its worst case:
    a successful iterate (with early stop the first one) else the iterate of highest loss.
    """

    def __init__(self, model: torch.nn.Module, eps: float = 0.3, steps: int = 100, *, norm: str | Norm = "linf",
                 loss="ce", restarts: int = 1, rho: float = 0.75, momentum: float = 0.75,
                 random_start: bool = True, **kwargs) -> None:
        if isinstance(loss, str) and loss.lower() == "dlr":
            loss = DLRLoss()
        super().__init__(model, loss=loss, **kwargs)
        if not 0 <= eps < float("inf"):
            raise AttackInputError(f"eps must be >= 0 and finite, got {eps}")
        if not 0 < rho <= 1:
            raise AttackInputError(f"rho must be in (0, 1], got {rho}")
        if not 0 <= momentum <= 1:
            raise AttackInputError(f"momentum must be in [0, 1], got {momentum}")
        self.eps = float(eps)
        self.steps = positive_int("steps", steps)
        self.norm = get_norm(norm)
        self.restarts = positive_int("restarts", restarts)
        self.rho = float(rho)
        self.momentum = float(momentum)
        self.random_start = bool(random_start)
        self.checkpoints = frozenset(apgd_checkpoints(self.steps))

    def run(self, x, y, target, clean_logits, generator) -> AttackResult:
        rng = KeyedRandom(x, generator)
        best = Best(x.clone(), clean_logits.clone(), self.loss(clean_logits, y, target),
                    self.loss.success(clean_logits, y, target))
        steps = torch.zeros(len(x), dtype=torch.long, device=x.device)
        queries = torch.ones(len(x), dtype=torch.long, device=x.device)
        everyone = torch.arange(len(x), device=x.device)
        for restart in range(self.restarts):
            rows = (~best.success).nonzero().squeeze(1) if self.early_stop else everyone
            if len(rows) == 0:
                break
            self._attack(x, y, target, target, rows, best, steps, queries, rng, (0, restart))
        return AttackResult(best.x, best.success.clone(), steps, queries, best.logits, clean_logits, target)

    # -- the algorithm ------------------------------------------------------------------------------------

    def _project(self, v: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        lo, hi = self.bounds
        return (x0 + self.norm.project(v - x0, self.eps)).clamp_(lo, hi)

    def _attack(self, x: torch.Tensor, y: torch.Tensor, loss_target: torch.Tensor | None,
                success_target: torch.Tensor | None, rows: torch.Tensor, best: Best, steps: torch.Tensor,
                queries: torch.Tensor, rng: KeyedRandom, stream: tuple[int, ...], score=None) -> None:
        """One APGD run on ``rows``: the loss uses ``loss_target``, success ``success_target``; ``best`` keeps
        per sample the worst case by success, then by ``score(logits, labels)`` (default: the loss)."""
        x0 = x[rows]
        start = x0.clone()
        if self.random_start and self.eps > 0:
            start = self._project(x0 + rng.ball(self.norm, x0, rows, self.eps, stream), x0)
        s: dict[str, torch.Tensor | None] = {
            "rows": rows, "x0": x0, "y": y[rows], "lt": _take(loss_target, rows), "st": _take(success_target, rows),
            "x": start, "x_prev": start, "eta": torch.full((len(rows),), 2 * self.eps, dtype=x.dtype, device=x.device),
            "n_up": torch.zeros(len(rows), dtype=torch.long, device=x.device),
            "halved": torch.zeros(len(rows), dtype=torch.bool, device=x.device),
        }
        last_check = 0
        for k in range(self.steps):
            xk = s["x"].detach().requires_grad_(True)
            logits = self.model(xk)
            loss = self.loss(logits, s["y"], s["lt"])
            (grad,) = torch.autograd.grad(loss.sum(), xk)
            queries[s["rows"]] += 1
            with torch.no_grad():
                logits, loss = logits.detach(), loss.detach()
                success = self.loss.success(logits, s["y"], s["st"])
                best.update(s["rows"], s["x"], logits, loss if score is None else score(logits, s["y"]), success)
                if k == 0:
                    s.update(f_max=loss.clone(), x_max=s["x"], g_max=grad, f_prev=loss, f_check=loss.clone())
                else:
                    s["n_up"] = s["n_up"] + (loss > s["f_prev"])
                    up = loss > s["f_max"]
                    up_px = _per_sample(up, grad)
                    s.update(f_max=torch.where(up, loss, s["f_max"]), x_max=torch.where(up_px, s["x"], s["x_max"]),
                             g_max=torch.where(up_px, grad, s["g_max"]), f_prev=loss)
                s["g"] = grad
                if self.early_stop and success.any():
                    keep = (~success).nonzero().squeeze(1)
                    s = {name: None if t is None else t[keep] for name, t in s.items()}
                    if len(keep) == 0:
                        return
                steps[s["rows"]] += 1
                if k in self.checkpoints:
                    self._check(s, k - last_check)
                    last_check = k
                a = 1.0 if k == 0 else self.momentum
                xc, x0 = s["x"], s["x0"]
                z = self._project(xc + self.norm.ascent_step(s["g"], 1.0) * _per_sample(s["eta"], xc), x0)
                x_new = self._project(xc + a * (z - xc) + (1 - a) * (xc - s["x_prev"]), x0)
                s["x_prev"], s["x"] = xc, x_new
        with torch.no_grad():
            logits = self.model(s["x"])
            queries[s["rows"]] += 1
            loss = self.loss(logits, s["y"], s["lt"])
            success = self.loss.success(logits, s["y"], s["st"])
            best.update(s["rows"], s["x"], logits, loss if score is None else score(logits, s["y"]), success)

    def _check(self, s: dict, span: int) -> None:
        """A checkpoint: halve the step size where condition 1 or 2 holds and restart there from the best point."""
        halve = (s["n_up"] < self.rho * span) | (~s["halved"] & (s["f_max"] <= s["f_check"]))
        if halve.any():
            px = _per_sample(halve, s["x"])
            s["eta"] = torch.where(halve, s["eta"] / 2, s["eta"])
            s["x"] = torch.where(px, s["x_max"], s["x"])
            s["g"] = torch.where(px, s["g_max"], s["g"])
            s["x_prev"] = torch.where(px, s["x_max"], s["x_prev"])  # no momentum out of a restart
            s["f_prev"] = torch.where(halve, s["f_max"], s["f_prev"])
        s["halved"] = halve
        s["f_check"] = s["f_max"].clone()
        s["n_up"] = torch.zeros_like(s["n_up"])


class APGDTargeted(APGD):
    """APGD-T of AutoAttack: an untargeted attack made of targeted runs.

    For each sample, APGD with the targeted loss (default the targeted DLR) is run against the most likely
    classes other than the true one (ranked by the clean logits), one class after the other, at most
    ``n_target_classes`` of them (9 in AutoAttack), each pass only on the samples not misclassified yet.
    Success is misclassification (any wrong class); ``extras["target_class"]`` is the target of the pass
    that broke each sample (-1 where none did). The worst case kept for a sample that no pass breaks is the
    point with the smallest margin of the true class.
    """

    def __init__(self, model: torch.nn.Module, eps: float = 0.3, steps: int = 100, *, n_target_classes: int = 9,
                 norm: str | Norm = "linf", loss="dlr", **kwargs) -> None:
        if kwargs.get("target") is not None:
            raise AttackInputError("APGDTargeted picks its own targets (the most likely other classes); for "
                                   "given targets use APGD(..., target=...)")
        super().__init__(model, eps, steps, norm=norm, loss=loss, **kwargs)
        if not isinstance(self.loss, ClassLoss):
            raise AttackInputError("APGDTargeted needs a loss on class labels")
        self.n_target_classes = positive_int("n_target_classes", n_target_classes)

    def run(self, x, y, target, clean_logits, generator) -> AttackResult:
        if target is not None:
            raise AttackInputError("APGDTargeted picks its own targets; call it without target")
        num_classes = clean_logits.shape[1]
        if num_classes < 2:
            raise AttackInputError("APGDTargeted needs a model with at least 2 classes")
        if isinstance(self.loss, DLRLoss) and num_classes < 4:
            raise AttackInputError(f"the targeted DLR loss needs a model with at least 4 classes, got {num_classes}")
        rng = KeyedRandom(x, generator)
        untargeted = lambda logits, labels: margin(logits, labels, False)  # noqa: E731
        best = Best(x.clone(), clean_logits.clone(), untargeted(clean_logits, y),
                    self.loss.success(clean_logits, y, None))
        steps = torch.zeros(len(x), dtype=torch.long, device=x.device)
        queries = torch.ones(len(x), dtype=torch.long, device=x.device)
        target_class = torch.full((len(x),), -1, dtype=torch.long, device=x.device)
        # Classes other than the true one, the most likely first.
        ranked = clean_logits.scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True, stable=True)
        for t in range(min(self.n_target_classes, num_classes - 1)):
            for restart in range(self.restarts):
                rows = (~best.success).nonzero().squeeze(1)
                if len(rows) == 0:
                    break
                self._attack(x, y, ranked[:, t], None, rows, best, steps, queries, rng, (1 + t, restart),
                             score=untargeted)
                newly = best.success[rows] & (target_class[rows] < 0)
                target_class[rows[newly]] = ranked[rows[newly], t]
        return AttackResult(best.x, best.success.clone(), steps, queries, best.logits, clean_logits, None,
                            extras={"target_class": target_class})
