"""The attacks of benchmarks/compare_min_norm.py: one budget, and how each library is called with it.

Each ``*_methods(model, settings)`` returns, per row group (``"cw-l2"``, ``"fab-l1"``, ...), a factory that
builds the library's attack once and returns a method ``(x, y, target) -> x_adv``; a group a library does not
implement is absent. ``target`` is None for the untargeted groups; the targeted JSMA group attacks class
(y + 1) mod 10 in every library (torchattacks' JSMA picks that class itself in its default mode).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from compare_peers import SEED, art_classifier
from torch import nn

Method = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]
Factory = Callable[[], Method]

DIAMETER = {"linf": 1.0, "l2": 28.0, "l1": 784.0}
"""The largest perturbation inside [0, 1]^(28 x 28): the radius that means no radius."""
CAPITAL = {"linf": "Linf", "l2": "L2", "l1": "L1"}
ART_NORM = {"linf": np.inf, "l2": 2, "l1": 1}
SLOW = {("torchattacks", "deepfool-l2"), ("torchattacks", "jsma-l0"), ("art", "cw-l2"), ("art", "ead-l1")}
"""(library, group) pairs that attack image by image or in numpy, too slow for the whole subset: they run on the
first ``slow_n`` images (the table says how many; their time is compared per image)."""


@dataclass(frozen=True)
class Settings:
    """The shared budget of every library (see the docstring of compare_min_norm.py)."""

    n: int
    steps: int = 100
    binary_steps: int = 5
    inner_steps: int = 100
    deepfool_steps: int = 50
    queries: int = 1000
    slow_n: int = 50
    eps: tuple[tuple[str, float], ...] = (("linf", 0.3), ("l2", 2.0), ("l1", 10.0))
    cw_lr: float = 0.1
    cw_const: float = 1.0
    ead_lr: float = 0.01
    ead_const: float = 0.01
    overshoot: float = 0.02
    ead_beta: float = 1e-3
    jsma_theta: float = 1.0
    jsma_gamma: float = 0.1
    p_init: float = 0.8
    alpha_max: float = 0.1
    eta: float = 1.05
    beta: float = 0.9

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        return cls(n=args.n, steps=args.steps, binary_steps=args.binary_steps, inner_steps=args.inner_steps,
                   deepfool_steps=args.deepfool_steps, queries=args.queries, slow_n=args.slow_n,
                   eps=(("linf", args.eps_linf), ("l2", args.eps_l2), ("l1", args.eps_l1)))

    def radius(self, norm: str) -> float:
        return dict(self.eps)[norm]


def alva_settings(group: str, eps: float | None, s: Settings) -> tuple[str, dict]:
    """The registry name and settings of alva's attack for ``group``."""
    family, norm = group.split("-")
    if family == "cw":
        return "cw", {"steps": s.inner_steps, "binary_steps": s.binary_steps, "initial_const": s.cw_const,
                      "lr": s.cw_lr, "confidence": 0.0}
    if family == "ead":
        return "ead", {"steps": s.inner_steps, "binary_steps": s.binary_steps, "initial_const": s.ead_const,
                       "lr": s.ead_lr, "beta": s.ead_beta, "decision_rule": "l1"}
    if family == "deepfool":
        return "deepfool", {"norm": norm, "steps": s.deepfool_steps, "overshoot": s.overshoot, "candidates": 10}
    if family == "fab":
        return "fab", {"norm": norm, "steps": s.steps, "restarts": 1, "alpha_max": s.alpha_max, "eta": s.eta,
                       "beta": s.beta, "seed": SEED}
    if family == "fmn":
        return "fmn", {"norm": norm, "steps": s.steps, "seed": SEED}
    if family == "ddn":
        return "ddn", {"steps": s.steps, "init_epsilon": 1.0, "gamma": 0.05, "seed": SEED}
    if family == "jsma":
        return "jsma", {"theta": s.jsma_theta, "gamma": s.jsma_gamma}
    if family == "square":
        return "square", {"norm": norm, "eps": eps, "n_queries": s.queries, "p_init": s.p_init, "loss": "margin",
                          "seed": SEED}
    return "apgd", {"norm": norm, "eps": eps, "steps": s.steps, "restarts": 1, "loss": "ce", "seed": SEED}


def _torch(attack: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Method:
    def run(x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        torch.manual_seed(SEED)
        return attack(x, y)

    return run


def torchattacks_methods(model: nn.Module, s: Settings) -> dict[str, Factory]:
    import torchattacks as ta

    def fab(norm: str) -> Factory:
        return lambda: _torch(ta.FAB(model, norm=CAPITAL[norm], eps=DIAMETER[norm], steps=s.steps, n_restarts=1,
                                     alpha_max=s.alpha_max, eta=s.eta, beta=s.beta, seed=SEED, n_classes=10))

    def square(norm: str) -> Factory:
        return lambda: _torch(ta.Square(model, norm=CAPITAL[norm], eps=s.radius(norm), n_queries=s.queries,
                                        n_restarts=1, p_init=s.p_init, loss="margin", seed=SEED))

    def apgd(norm: str) -> Factory:
        return lambda: _torch(ta.APGD(model, norm=CAPITAL[norm], eps=s.radius(norm), steps=s.steps, n_restarts=1,
                                      loss="ce", seed=SEED))

    return {
        "cw-l2": lambda: _torch(ta.CW(model, c=s.cw_const, kappa=0, steps=s.binary_steps * s.inner_steps,
                                      lr=s.cw_lr)),
        "deepfool-l2": lambda: _torch(ta.DeepFool(model, steps=s.deepfool_steps, overshoot=s.overshoot)),
        **{f"fab-{n}": fab(n) for n in ("linf", "l2", "l1")},
        "ead-l1": lambda: _torch(ta.EADL1(model, kappa=0, lr=s.ead_lr, binary_search_steps=s.binary_steps,
                                          max_iterations=s.inner_steps, initial_const=s.ead_const,
                                          beta=s.ead_beta)),
        "jsma-l0": lambda: _torch(ta.JSMA(model, theta=s.jsma_theta, gamma=s.jsma_gamma)),
        **{f"square-{n}": square(n) for n in ("linf", "l2")},
        **{f"apgd-{n}": apgd(n) for n in ("linf", "l2")},
    }


def foolbox_methods(model: nn.Module, s: Settings) -> dict[str, Factory]:
    import foolbox as fb

    fmodel = fb.PyTorchModel(model, bounds=(0.0, 1.0), device="cpu")

    def minimize(attack) -> Method:
        def run(x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
            torch.manual_seed(SEED)
            _, clipped, _ = attack(fmodel, x, y, epsilons=None)
            return clipped

        return run

    fmn = {"l0": fb.attacks.L0FMNAttack, "l1": fb.attacks.L1FMNAttack, "l2": fb.attacks.L2FMNAttack,
           "linf": fb.attacks.LInfFMNAttack}
    return {
        "cw-l2": lambda: minimize(fb.attacks.L2CarliniWagnerAttack(
            binary_search_steps=s.binary_steps, steps=s.inner_steps, stepsize=s.cw_lr, confidence=0,
            initial_const=s.cw_const, abort_early=True)),
        "deepfool-l2": lambda: minimize(fb.attacks.L2DeepFoolAttack(steps=s.deepfool_steps, candidates=10,
                                                                     overshoot=s.overshoot)),
        "deepfool-linf": lambda: minimize(fb.attacks.LinfDeepFoolAttack(steps=s.deepfool_steps, candidates=10,
                                                                         overshoot=s.overshoot)),
        **{f"fmn-{n}": (lambda cls=cls: minimize(cls(steps=s.steps))) for n, cls in fmn.items()},
        "ddn-l2": lambda: minimize(fb.attacks.DDNAttack(init_epsilon=1.0, steps=s.steps, gamma=0.05)),
        "ead-l1": lambda: minimize(fb.attacks.EADAttack(
            binary_search_steps=s.binary_steps, steps=s.inner_steps, initial_stepsize=s.ead_lr, confidence=0,
            initial_const=s.ead_const, regularization=s.ead_beta, decision_rule="L1", abort_early=True)),
    }


def art_methods(model: nn.Module, s: Settings) -> dict[str, Factory]:
    from art.attacks import evasion

    classifier = art_classifier(model)

    def numpy(attack) -> Method:
        def run(x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
            np.random.seed(SEED)
            torch.manual_seed(SEED)
            labels = (y if target is None else target).numpy()
            return torch.from_numpy(attack.generate(x=x.numpy(), y=np.eye(10, dtype=np.float32)[labels]))

        return run

    def square(norm: str) -> Factory:
        return lambda: numpy(evasion.SquareAttack(classifier, norm=ART_NORM[norm], max_iter=s.queries,
                                                  eps=s.radius(norm), p_init=s.p_init, nb_restarts=1,
                                                  batch_size=s.n, verbose=False))

    def apgd(norm: str) -> Factory:
        return lambda: numpy(evasion.AutoProjectedGradientDescent(
            classifier, norm=ART_NORM[norm], eps=s.radius(norm), eps_step=2 * s.radius(norm), max_iter=s.steps,
            targeted=False, nb_random_init=1, batch_size=s.n, verbose=False))

    return {
        "cw-l2": lambda: numpy(evasion.CarliniL2Method(
            classifier, confidence=0.0, learning_rate=s.cw_lr, binary_search_steps=s.binary_steps,
            max_iter=s.inner_steps, initial_const=s.cw_const, batch_size=s.n, verbose=False)),
        "deepfool-l2": lambda: numpy(evasion.DeepFool(classifier, max_iter=s.deepfool_steps, epsilon=s.overshoot,
                                                      nb_grads=10, batch_size=s.n, verbose=False)),
        "ead-l1": lambda: numpy(evasion.ElasticNet(
            classifier, confidence=0.0, learning_rate=s.ead_lr, binary_search_steps=s.binary_steps,
            max_iter=s.inner_steps, beta=s.ead_beta, initial_const=s.ead_const, batch_size=s.n,
            decision_rule="L1", verbose=False)),
        "jsma-l0": lambda: numpy(evasion.SaliencyMapMethod(classifier, theta=s.jsma_theta, gamma=s.jsma_gamma,
                                                           batch_size=s.n, verbose=False)),
        **{f"square-{n}": square(n) for n in ("linf", "l2")},
        **{f"apgd-{n}": apgd(n) for n in ("linf", "l2", "l1")},
    }


def autoattack_methods(model: nn.Module, s: Settings) -> dict[str, Factory]:
    from pyautoattack.autopgd_base import APGDAttack
    from pyautoattack.fab_pt import FABAttack_PT
    from pyautoattack.square import SquareAttack

    def perturb(attack) -> Method:
        def run(x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
            torch.manual_seed(SEED)
            return attack.perturb(x, y)

        return run

    def fab(norm: str) -> Factory:
        return lambda: perturb(FABAttack_PT(model, norm=CAPITAL[norm], n_restarts=1, n_iter=s.steps,
                                            eps=DIAMETER[norm], alpha_max=s.alpha_max, eta=s.eta, beta=s.beta,
                                            seed=SEED, device="cpu"))

    def square(norm: str) -> Factory:
        return lambda: perturb(SquareAttack(model, norm=CAPITAL[norm], n_queries=s.queries, eps=s.radius(norm),
                                            p_init=s.p_init, n_restarts=1, seed=SEED, loss="margin", device="cpu"))

    def apgd(norm: str) -> Factory:
        return lambda: perturb(APGDAttack(model, n_iter=s.steps, norm=CAPITAL[norm], n_restarts=1,
                                          eps=s.radius(norm), seed=SEED, loss="ce", device="cpu"))

    return {**{f"fab-{n}": fab(n) for n in ("linf", "l2", "l1")},
            **{f"square-{n}": square(n) for n in ("linf", "l2")},
            **{f"apgd-{n}": apgd(n) for n in ("linf", "l2", "l1")}}


PEER_METHODS: dict[str, Callable[[nn.Module, Settings], dict[str, Factory]]] = {
    "torchattacks": torchattacks_methods, "foolbox": foolbox_methods, "art": art_methods,
    "autoattack": autoattack_methods}
"""Per peer library: the factories of its attacks, by row group."""
