"""Attacks: build with a model and settings, call on ``(x, y)``, read an :class:`AttackResult`.

Every attack runs on the engine (:mod:`alva.attacks.engine`); :data:`REGISTRY` names the attacks on a
classifier with their options, and :func:`build` makes one from its name.
"""

from alva.attacks.alva import ALVA, ALVAResult, alva_summary
from alva.attacks.apgd import APGD, APGDTargeted
from alva.attacks.base import Attack, AttackInputError, AttackResult, LatentResult, attack_mode
from alva.attacks.boundary_attack import BoundaryAttack
from alva.attacks.carlini_wagner import CarliniWagner
from alva.attacks.ddn import DDN
from alva.attacks.decision import DecisionAttack, LabelOnly
from alva.attacks.deepfool import DeepFool
from alva.attacks.differential_evolution import DifferentialEvolution, OnePixel
from alva.attacks.dlr import DLRLoss, dlr, dlr_targeted
from alva.attacks.ead import EAD
from alva.attacks.engine import EngineAttack, GradientAttack, KeepBest, Repeated, Rows, Run, SearchAttack
from alva.attacks.ensemble import EnsembleModel
from alva.attacks.fab import FAB, FABTargeted
from alva.attacks.fmn import FMN
from alva.attacks.generator_attacks import AdvGANAttack, GeneratorAttackResult, UnrestrictedGeneratorAttack
from alva.attacks.hop_skip_jump import HopSkipJump
from alva.attacks.jsma import JSMA
from alva.attacks.keyed import KeyedRandom
from alva.attacks.losses import LOSSES, AttackLoss, ClassLoss, Confident, cross_entropy, is_success, margin
from alva.attacks.minimum_norm import MIN_NORM_RULE, MinimumNormAttack, MinimumNormResult
from alva.attacks.multilabel import NaiveBCE, SingleLabelFlip
from alva.attacks.nes import NES
from alva.attacks.norms import L0, L1, L2, NORMS, Linf, Norm, get_norm
from alva.attacks.pgd import FGSM, PGD
from alva.attacks.population import PopulationRows, PopulationSearch
from alva.attacks.registry import ATTACKS, REGISTRY, AttackSpec, Option, build
from alva.attacks.sign_opt import SignOPT
from alva.attacks.simba import SimBA
from alva.attacks.sparse import SparseConfident, sparse_summary
from alva.attacks.sparse_rs import SparseRS
from alva.attacks.spsa import SPSA
from alva.attacks.square import Square
from alva.attacks.transfer import QueryCounter, TransferAttack
from alva.attacks.transfer_fgsm import DIFGSM, MIFGSM, NIFGSM, TIFGSM, VMIFGSM, TransferFGSM

__all__ = [
    "ALVA", "APGD", "ATTACKS", "DDN", "EAD", "FAB", "FGSM", "FMN", "L0", "L1", "L2", "LOSSES", "MIN_NORM_RULE",
    "NORMS", "PGD", "REGISTRY",
    "ALVAResult", "APGDTargeted", "AdvGANAttack", "Attack", "AttackInputError", "AttackLoss", "AttackResult",
    "AttackSpec", "CarliniWagner", "ClassLoss", "Confident", "DLRLoss", "DeepFool", "DifferentialEvolution",
    "EngineAttack", "FABTargeted",
    "GeneratorAttackResult", "GradientAttack", "JSMA", "KeepBest", "KeyedRandom", "LatentResult", "Linf",
    "MinimumNormAttack", "MinimumNormResult", "NaiveBCE",
    "Norm", "OnePixel", "Option", "PopulationRows", "PopulationSearch",
    "QueryCounter", "Repeated", "Rows", "Run", "SearchAttack", "SingleLabelFlip",
    "SparseConfident", "SparseRS", "Square", "TransferAttack", "UnrestrictedGeneratorAttack",
    "alva_summary", "attack_mode", "build", "cross_entropy", "dlr", "dlr_targeted", "get_norm", "is_success",
    "margin", "sparse_summary",
    "DIFGSM", "EnsembleModel", "MIFGSM", "NIFGSM", "TIFGSM", "TransferFGSM", "VMIFGSM",
    "SPSA", "SimBA", "NES",
    "DecisionAttack", "LabelOnly", "HopSkipJump", "BoundaryAttack", "SignOPT",
]
