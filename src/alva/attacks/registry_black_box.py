"""The registry entries of the black-box families (decision-based, score-based) and of the gradient attacks made to
transfer from a substitute; :mod:`alva.attacks.registry` lists them after the white-box attacks."""

from __future__ import annotations

from alva.attacks.attack_options import (
    COMMON,
    EPS,
    NORM,
    AttackSpec,
    Option,
    common_options,
    optional_float,
    optional_int,
)
from alva.attacks.base import Attack
from alva.attacks.boundary_attack import BoundaryAttack
from alva.attacks.hop_skip_jump import HopSkipJump
from alva.attacks.nes import NES
from alva.attacks.sign_opt import SignOPT
from alva.attacks.simba import BASES, SimBA
from alva.attacks.spsa import SPSA
from alva.attacks.transfer_fgsm import DIFGSM, MIFGSM, NIFGSM, TIFGSM, VMIFGSM

__all__ = ["DECISION_SPECS", "SCORE_SPECS", "TRANSFER_SPECS"]


# Decision-based attacks: they see only the predicted label.
_DECISION_COMMON = (
    Option("eps", optional_float, None, "none: minimum norm; a radius: success needs the distance within it"),
    Option("init_attempts", int, 100, "most uniform-noise draws per sample for a starting point"),
    Option("early_stop", bool, False, "with eps: stop querying a sample once within eps"),
    COMMON[1], COMMON[3],
)


def _decision(name: str, cls: type[Attack], summary: str, own: tuple[Option, ...]) -> AttackSpec:
    """A decision-based attack's entry: its budget, its own options, then the options they all share."""
    budget = Option("max_queries", int, 1000, "labels read per sample, the clean one included (a hard budget)")
    return AttackSpec(name, cls, summary, (budget, *own, *_DECISION_COMMON))


DECISION_SPECS: tuple[AttackSpec, ...] = (
    _decision("hsj", HopSkipJump, "HopSkipJump: label-only, minimum norm, by gradient-direction estimates at the "
              "decision boundary (Chen et al. 2020)", (
                  Option("init_evals", int, 100, "labels of the first gradient estimate (times sqrt(iteration))"),
                  Option("max_evals", int, 10000, "most labels of one gradient estimate"),
                  Option("gamma", float, 1.0, "sets the binary-search precision and the probe radius"),
                  Option("steps", optional_int, None, "most iterations; none: until the budget is spent"),
                  Option("norm", str, "l2", "the norm minimised (linf: the paper's L-inf form)", ("l2", "linf")))),
    _decision("boundary", BoundaryAttack, "Boundary Attack: label-only random walk along the decision boundary "
              "towards x, minimum L2 (Brendel et al. 2018)", (
                  Option("spherical_step", float, 0.01, "first relative size of the orthogonal step"),
                  Option("source_step", float, 0.01, "first relative size of the step towards x"),
                  Option("step_adaptation", float, 1.5, "factor by which the step sizes grow or shrink"),
                  Option("stats_every", int, 10, "steps between checks of the orthogonal step (and adaptations)"))),
    _decision("sign-opt", SignOPT, "Sign-OPT: label-only, minimum L2, by signs of directional derivatives of the "
              "distance to the boundary along a direction (Cheng et al. 2020)", (
                  Option("directions", int, 200, "random directions per sign estimate"),
                  Option("alpha", float, 0.2, "first step size on the direction"),
                  Option("beta", float, 0.001, "first probe size"),
                  Option("tolerance", float, 1e-3, "precision of the binary searches, relative to the distance"))),
)


# Score-based attacks with gradient estimation: they see the model's outputs, never a gradient.
_SCORE_QUERIES = Option("n_queries", int, 10000, "model evaluations per sample, the clean one included")


def _estimator(name: str, cls: type[Attack], summary: str, samples: int, *own: Option) -> AttackSpec:
    """The entry of an attack that estimates the gradient from ``2 * samples`` queries per step."""
    pairs = Option("samples", int, samples, "pairs of symmetric queries per step (2 * samples queries)")
    return AttackSpec(name, cls, summary, (EPS, NORM, _SCORE_QUERIES, pairs, *own,
                                           *common_options(loss="margin", early_stop=True)))


SCORE_SPECS: tuple[AttackSpec, ...] = (
    _estimator("spsa", SPSA, "SPSA: Adam steps along a gradient estimated from scores with random signs (Uesato et "
               "al. 2018)", 32,
               Option("delta", float, 0.01, "finite-difference step of the queries"),
               Option("lr", float, 0.01, "Adam's learning rate")),
    AttackSpec("simba", SimBA, "SimBA: steps along orthonormal directions (pixels or low-frequency DCT), kept when "
               "the true class's probability falls (Guo et al. 2019)", (
        Option("eps", optional_float, None, "radius of the ball around x, in the units of norm; none: no ball"),
        Option("norm", str, "l2", "the norm of the ball", ("l2", "linf")), _SCORE_QUERIES,
        Option("step", float, 0.2, "length of each step along a direction"),
        Option("basis", str, "dct", "the directions: pixel, or dct (low frequencies first)", BASES),
        Option("freq_dims", optional_int, None, "dct: side of the block of lowest frequencies tried first"),
        Option("loss", str, "prob", "what the search lowers: prob (the true class's probability; the target's is "
               "raised), margin or ce"), *common_options(loss="prob", early_stop=True)[1:])),
    _estimator("nes", NES, "NES: PGD steps along a gradient estimated from scores with antithetic Gaussian samples "
               "(Ilyas et al. 2018)", 25,
               Option("sigma", float, 0.001, "the search variance: size of the queries' Gaussian perturbations"),
               Option("alpha", float, 0.01, "step size of each PGD step")),
)


# Gradient attacks made to transfer from a substitute to the model under attack.
def _family_options(*, decay: float = 0.0, diversity_prob: float = 0.0, kernel_size: int = 1, nesterov: bool = False,
                    variance_samples: int = 0) -> tuple[Option, ...]:
    """The options of every attack of the transfer FGSM family, with one attack's defaults."""
    return (
        EPS, NORM,
        Option("steps", int, 10, "iterations"),
        Option("alpha", optional_float, None, "step size; none: eps / steps"),
        Option("decay", float, decay, "momentum decay (0: no momentum)"),
        Option("diversity_prob", float, diversity_prob, "probability of random resize and pad per gradient"),
        Option("resize_rate", float, 0.9, "smallest size of the diversity transform, relative to the image"),
        Option("kernel_size", int, kernel_size, "side of the Gaussian kernel smoothing the gradient (odd; 1: none)"),
        Option("kernel_sigmas", float, 3.0, "standard deviations the kernel spans on each side"),
        Option("nesterov", bool, nesterov, "take the gradient at the look-ahead point"),
        Option("variance_samples", int, variance_samples, "neighbours whose gradients tune each step (0: none)"),
        Option("variance_beta", float, 1.5, "radius of the neighbourhood, in units of eps"),
        *common_options())


TRANSFER_SPECS: tuple[AttackSpec, ...] = (
    AttackSpec("mi-fgsm", MIFGSM, "momentum iterative FGSM, for transfer (Dong et al. 2018); every option of the "
               "family combines", _family_options(decay=1.0)),
    AttackSpec("di-fgsm", DIFGSM, "iterative FGSM on randomly resized and padded inputs, for transfer (Xie et al. "
               "2019)", _family_options(diversity_prob=0.5)),
    AttackSpec("ti-fgsm", TIFGSM, "iterative FGSM with a Gaussian-smoothed gradient, translation-invariant (Dong et "
               "al. 2019)", _family_options(kernel_size=15)),
    AttackSpec("ni-fgsm", NIFGSM, "momentum iterative FGSM with a Nesterov look-ahead gradient (Lin et al. 2020)",
               _family_options(decay=1.0, nesterov=True)),
    AttackSpec("vmi-fgsm", VMIFGSM, "momentum iterative FGSM with variance tuning from neighbours' gradients (Wang "
               "and He 2021)", _family_options(decay=1.0, variance_samples=20)),
)
