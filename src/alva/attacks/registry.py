"""The registry of attacks on a classifier with ``(x, y)``: each name with its class and its options (what each
means, its type and its default), so that a command line, a config file or a test can reach every attack.

``build("pgd", model, eps=0.1, steps=20)`` builds an attack from its name and settings; :data:`REGISTRY` lists
them (``alva attack --attack NAME`` reaches each one, ``alva attack --list`` prints them).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from alva.attacks.apgd import APGD, APGDTargeted
from alva.attacks.attack_options import (
    COMMON,
    EOT,
    EPS,
    NORM,
    NORM_L1,
    AttackSpec,
    Option,
    common_options,
    optional_float,
    optional_int,
)
from alva.attacks.base import Attack
from alva.attacks.carlini_wagner import CarliniWagner
from alva.attacks.ddn import DDN
from alva.attacks.deepfool import DeepFool
from alva.attacks.differential_evolution import STRATEGIES, DifferentialEvolution
from alva.attacks.ead import DECISION_RULES, EAD
from alva.attacks.errors import AttackInputError
from alva.attacks.fab import FAB, FABTargeted
from alva.attacks.fmn import FMN, FMN_NORMS
from alva.attacks.jsma import JSMA
from alva.attacks.pgd import FGSM, PGD
from alva.attacks.registry_black_box import DECISION_SPECS, SCORE_SPECS, TRANSFER_SPECS
from alva.attacks.sparse import OPTIMIZERS, STARTS, SparseConfident
from alva.attacks.sparse_rs import SparseRS
from alva.attacks.square import Square

__all__ = ["ATTACKS", "REGISTRY", "AttackSpec", "Option", "build", "describe"]

_MIN_NORM = Option("norm", str, "linf", "the norm minimised", ("linf", "l2", "l1"))
_MIN_EPS = Option("eps", optional_float, None, "none: minimum norm; a radius: success needs the distance within it")
_FAB_OPTIONS = (
    Option("steps", int, 100, "steps per restart (per target class for fab-t)"),
    Option("restarts", int, 1, "runs; the first from x, the others from random points"),
    Option("alpha_max", float, 0.1, "largest weight of the step from the clean point"),
    Option("eta", float, 1.05, "overshoot of each projection onto the linearised boundary"),
    Option("beta", float, 0.9, "pull back towards the clean point after an adversarial iterate"),
    Option("search_steps", int, 3, "steps of the final search towards the boundary"),
)
_MINIMUM_NORM_COMMON = (COMMON[1], COMMON[3])  # no early stop: a minimum-norm search goes on after a success


REGISTRY: dict[str, AttackSpec] = {spec.name: spec for spec in (
    AttackSpec("fgsm", FGSM, "fast gradient sign method: one step of size eps (Goodfellow et al. 2015)",
               (EPS, NORM, *common_options())),
    AttackSpec("pgd", PGD, "projected gradient descent with random start and restarts (Madry et al. 2018)", (
        EPS, NORM,
        Option("steps", int, 40, "gradient steps per restart"),
        Option("alpha", optional_float, None, "step size; none: 2.5 * eps / steps"),
        Option("random_start", bool, True, "start each restart at a random point of the ball"),
        Option("restarts", int, 1, "independent runs; each sample keeps its worst case"),
        EOT, *common_options())),
    AttackSpec("apgd", APGD, "Auto-PGD: momentum and a step size that needs no tuning (Croce and Hein 2020)", (
        EPS, NORM_L1,
        Option("steps", int, 100, "gradient steps per restart"),
        Option("restarts", int, 1, "independent runs from new random starts"),
        Option("rho", float, 0.75, "share of steps in which the loss must rise for the step size to stay"),
        Option("momentum", float, 0.75, "weight of the new step against the last move"),
        Option("random_start", bool, True, "start at a random point of the ball"),
        EOT, *common_options())),
    AttackSpec("apgd-t", APGDTargeted, "APGD-T: targeted DLR runs against the most likely other classes", (
        EPS, NORM_L1,
        Option("steps", int, 100, "gradient steps per target class and restart"),
        Option("n_target_classes", int, 9, "how many of the most likely other classes to target"),
        Option("restarts", int, 1, "runs per target class"),
        EOT, *common_options(loss="dlr", targeted=False))),
    AttackSpec("square", Square, "Square Attack: score-based random search on square windows (Andriushchenko et al. "
               "2020)", (
        EPS, NORM,
        Option("n_queries", int, 5000, "model evaluations per sample, the clean one included"),
        Option("p_init", float, 0.8, "initial share of pixels changed per step"),
        Option("rescale_schedule", bool, True, "stretch the schedule of p to the budget (false: AutoAttack's)"),
        Option("l2_start", str, "bumps", "the L2 starting point: bumps, or AutoAttack's pairs", ("bumps", "pairs")),
        *common_options(loss="margin", early_stop=True))),
    AttackSpec("one-pixel", DifferentialEvolution, "k-pixel attack by differential evolution (Su et al. 2019)", (
        Option("pixels", int, 1, "k, the number of pixels a candidate sets"),
        Option("popsize", int, 400, "candidates per image"),
        Option("generations", int, 100, "most generations after the initial population"),
        Option("max_queries", optional_int, None, "most forward passes per image; none: generations decide"),
        Option("mutation", float, 0.5, "DE's scale factor F"),
        Option("crossover", float, 1.0, "binomial crossover probability"),
        Option("strategy", str, "rand1", "DE/rand/1 or DE/best/1", STRATEGIES),
        Option("confidence", optional_float, None, "success also needs this probability of the predicted class"),
        *common_options(early_stop=True))),
    AttackSpec("sparse", SparseConfident, "sparse images that the model gives the target class with high "
               "probability (L1-penalised ascent); the targets are y unless a target rule is given", (
        Option("confidence", float, 0.9, "target probability a sample must reach"),
        Option("max_pixels", int, 300, "most non-zero pixels of a successful sample"),
        Option("lam", float, 0.05, "weight of the L1 penalty"),
        Option("steps", int, 1000, "most update steps per sample"),
        Option("lr", optional_float, None, "step size; none: 0.01 for adam, 0.1 for ista"),
        Option("optimizer", str, "adam", "the update rule", OPTIMIZERS),
        Option("start", str, "zeros", "the start image", STARTS),
        Option("mask_fraction", float, 0.0, "share of pixels held at the lower bound"),
        *common_options(early_stop=True))),
    AttackSpec("deepfool", DeepFool, "DeepFool: steps onto the closest linearised boundary, minimum norm "
               "(Moosavi-Dezfooli et al. 2016)", (
        Option("norm", str, "l2", "the norm minimised", ("l2", "linf")),
        Option("steps", int, 50, "most steps per sample"),
        Option("overshoot", float, 0.02, "how far past the boundary each step goes, relative to the distance"),
        Option("candidates", int, 10, "classes linearised: the true one and the most likely others"),
        _MIN_EPS, *common_options(early_stop=True))),
    AttackSpec("fab", FAB, "FAB: fast adaptive boundary attack, minimum norm under linf, l2, l1 (Croce and Hein "
               "2020)", (_MIN_NORM, _MIN_EPS, *_FAB_OPTIONS, *common_options())),
    AttackSpec("fab-t", FABTargeted, "FAB-T of AutoAttack: FAB against each of the most likely other classes", (
        _MIN_NORM, _MIN_EPS, *_FAB_OPTIONS[:2],
        Option("n_target_classes", int, 9, "how many of the most likely other classes to target"),
        *_FAB_OPTIONS[2:], *common_options(targeted=False))),
    AttackSpec("fmn", FMN, "fast minimum-norm attack: each sample's smallest adversarial perturbation under L0, L1, "
               "L2 or L-inf, by steps on an adaptive norm ball (Pintor et al. 2021)", (
        Option("norm", str, "l2", "the norm minimised (l0 counts pixels)", FMN_NORMS),
        Option("steps", int, 100, "gradient steps"),
        Option("alpha_init", float, 1.0, "first step length (L2), cosine-annealed"),
        Option("alpha_final", optional_float, None, "last step length; none: alpha_init / 100"),
        Option("gamma_init", float, 0.05, "first factor by which the radius shrinks or grows"),
        Option("gamma_final", float, 0.001, "last factor (cosine annealing)"),
        Option("loss", str, "margin", "the logit margin whose gradient drives the steps: margin or ce"),
        *_MINIMUM_NORM_COMMON)),
    AttackSpec("ead", EAD, "elastic-net attack: sparse perturbations of small L1 distance by ISTA/FISTA and a binary "
               "search over the constant (Chen et al. 2018)", (
        Option("steps", int, 100, "iterations per binary-search step"),
        Option("binary_steps", int, 9, "binary-search steps over the constant c"),
        Option("beta", float, 1e-3, "weight of the L1 term"),
        Option("decision_rule", str, "l1", "which successful iterate: smallest l1 or smallest elastic-net cost (en)",
               DECISION_RULES),
        Option("initial_const", float, 1e-3, "first constant c"),
        Option("lr", float, 0.01, "first learning rate (square-root decay)"),
        Option("confidence", float, 0.0, "margin a success needs (kappa)"),
        Option("abort_early", bool, True, "end a round for a sample that has stopped improving without success"),
        Option("loss", str, "margin", "the margin of the objective: margin (Carlini-Wagner) or ce"),
        *_MINIMUM_NORM_COMMON)),
    AttackSpec("cw", CarliniWagner, "Carlini-Wagner L2: the smallest L2 perturbation, by Adam in tanh space with a "
               "binary search over the constant c (Carlini and Wagner 2017; minimum-norm)", (
        Option("steps", int, 100, "Adam steps per constant"),
        Option("binary_steps", int, 9, "constants tried per sample (binary search)"),
        Option("initial_const", float, 1e-2, "the first constant c"),
        Option("lr", float, 0.1, "Adam's learning rate (the paper's 0.01 needs thousands of steps)"),
        Option("confidence", float, 0.0, "the logit margin a success needs (kappa)"),
        Option("abort_early", bool, True, "stop a sample's search when its objective stalls"),
        Option("loss", str, "margin", "the margin f of the objective: margin (the paper's) or ce"),
        *_MINIMUM_NORM_COMMON)),
    AttackSpec("ddn", DDN, "Decoupled Direction and Norm: the smallest L2 perturbation, by normalised gradient "
               "steps and a radius that shrinks after each success (Rony et al. 2019; minimum-norm)", (
        Option("steps", int, 100, "iterations"),
        Option("init_epsilon", float, 1.0, "the first radius"),
        Option("gamma", float, 0.05, "relative change of the radius per step"),
        Option("loss", str, "ce", COMMON[0].help),
        *_MINIMUM_NORM_COMMON)),
    AttackSpec("sparse-rs", SparseRS, "Sparse-RS: score-based random search over k pixels set to vertices of the "
               "box (L0; Croce et al. 2022)", (
        Option("k", int, 10, "the most pixels changed"),
        Option("n_queries", int, 1000, "model evaluations per sample, the clean one included"),
        Option("p_init", float, 0.3, "initial share of the k pixels swapped per step"),
        *common_options(loss="margin", early_stop=True))),
    AttackSpec("jsma", JSMA, "Jacobian-based saliency map attack: pairs of pixels towards a target (L0; Papernot "
               "et al. 2016); the targets come from the target rule", (
        Option("theta", float, 1.0, "change of each selected feature per step"),
        Option("gamma", float, 0.1, "largest share of the features changed"),
        Option("loss", str, "ce", "ranks the failed iterates: ce or margin"),
        Option("target", str, "random", "the rule that picks each sample's target: random, least-likely"),
        Option("early_stop", bool, True, COMMON[2].help),
        COMMON[3])),
    *DECISION_SPECS, *SCORE_SPECS, *TRANSFER_SPECS,
)}
"""Every attack that takes a classifier and ``(x, y)``, by name."""

ATTACKS: dict[str, type[Attack]] = {name: spec.cls for name, spec in REGISTRY.items()}
"""Name -> attack class."""


def build(name: str, model: nn.Module, **settings: Any) -> Attack:
    """The registered attack ``name`` on ``model`` with ``settings`` (options of that attack)."""
    if name not in REGISTRY:
        raise AttackInputError(f"unknown attack {name!r}; choose one of {sorted(REGISTRY)}")
    return REGISTRY[name].build(model, **settings)


def describe() -> str:
    """A plain-text listing of the registry: each attack, its options, their defaults and meaning."""
    lines = []
    for spec in REGISTRY.values():
        lines.append(f"{spec.name}: {spec.summary}")
        for o in spec.options:
            choices = f" ({', '.join(o.choices)})" if o.choices else ""
            lines.append(f"    {o.name} = {o.default!r}{choices}: {o.help}")
    return "\n".join(lines)
