"""Attacks: build with a model and settings, call on ``(x, y)``, read an :class:`AttackResult`."""

from alva.attacks.apgd import APGD, APGDTargeted
from alva.attacks.base import Attack, AttackInputError, AttackResult, attack_mode
from alva.attacks.differential_evolution import DifferentialEvolution, OnePixel
from alva.attacks.dlr import DLRLoss, dlr, dlr_targeted
from alva.attacks.generator_attacks import AdvGANAttack, UnrestrictedGeneratorAttack
from alva.attacks.losses import LOSSES, cross_entropy, is_success, margin
from alva.attacks.norms import L2, NORMS, Linf, Norm, get_norm
from alva.attacks.pgd import FGSM, PGD
from alva.attacks.sparse import SparseConfident, sparse_summary
from alva.attacks.square import Square
from alva.attacks.transfer import TransferAttack

ATTACKS = {"fgsm": FGSM, "pgd": PGD}

__all__ = [
    "ATTACKS", "Attack", "AttackInputError", "AttackResult", "FGSM", "L2", "LOSSES", "Linf", "NORMS", "Norm",
    "PGD", "attack_mode", "cross_entropy", "get_norm", "is_success", "margin",
    "APGD", "APGDTargeted", "DLRLoss", "Square", "dlr", "dlr_targeted",
    "DifferentialEvolution", "OnePixel", "SparseConfident", "sparse_summary",
    "AdvGANAttack", "TransferAttack", "UnrestrictedGeneratorAttack",
]
