"""Fake-class adversarial training: a classifier with ``K`` real and ``K`` fake classes learns to put the sparse
confident images generated against it into fake classes.

Rounds (round ``r`` starts from the network ``N_r``; ``N_0`` is the start network):

1. *generate* against ``N_r`` with :class:`~alva.attacks.sparse.SparseConfident` for every real class
   ``k``: ``per_class`` images to train on and ``test_per_class`` held-out ones (never trained on), and
   ``de.per_class`` held-out images by a different process, black-box differential evolution
   (:class:`~alva.attacks.differential_evolution.DifferentialEvolution`). A generated image *succeeds* when
   ``N_r`` gives class ``k`` a probability ``>= confidence`` with at most ``max_pixels`` non-zero pixels;
   only successful images are kept. They are labelled with the fake class ``K + k``.
2. *stop* when the generation no longer succeeds (success rate ``< threshold`` with the full step budget:
   ``N_r`` is deemed robust) or at the round limit (``r == rounds``); this last generation is metric 8.
3. *train* with :func:`alva.training.loop.fit` on the real images and every successful generated training
   image so far (the generated ones repeated to make up at least ``min_fake_share`` of the data), giving
   ``N_{r+1}``; after every epoch the eleven metrics are measured and logged.

The eleven metrics (keys ``m00`` ... ``m10`` of ``metrics.jsonl`` and ``rounds.json``):

* ``m00_generation``: success rate, target probability, L0 / L1 sparsity and steps of the round's generation
  (:func:`~alva.attacks.sparse.sparse_summary`), overall and per class.
* ``m01_ood``: a proxy, since no agreed OOD metric exists: mean L2 distance of the successful generated
  images to their nearest real training image (on a fixed pool of ``nn_pool_size``), the cosine distance to
  the most similar one and whether that one is of class ``k``, each against the same for real test images;
  and how a separate standard classifier (the reference network of metric 6) sees them (its probability of
  ``k``, how often its prediction is ``k``). Image grids ``round_NNN.png`` show the generated images with
  their most similar training image, for inspection.
* ``m02_current_batch`` (this round's training images), ``m03_past_train`` (all generated training images
  so far, a sample of ``sample`` per epoch when there are more), ``m04_test_current`` (held-out images of
  this round, generated on the most recent network), ``m05_test_past`` (held-out images of earlier rounds,
  generated on past networks), ``m06_other_network`` (the same process on a reference network trained on
  the disjoint other half of the MNIST training images), ``m07_other_process`` (differential evolution on
  the networks of the rounds and on the reference network; also its generation success). Each of these
  gives, overall and per class ``k``: ``fake_prob`` (probability of the fake class ``K + k``), ``loss``
  (cross-entropy against ``K + k``), ``detected`` (accuracy as the fake class), ``any_fake`` (predicted as
  some fake class), ``target_prob`` (probability of ``k``) and ``fooled`` (``target_prob >= confidence``).
* ``m08_final_sparse``: the generation against the final network (success rate; ``robust`` when below the
  threshold).
* ``m09_real_train`` and ``m10_real_test``: accuracy over all ``2K`` outputs on real images (a real image
  called fake is wrong), the share called fake, per class.

Disjoint data: the first half of the training images (a fixed split) trains the network in the rounds, the
second the reference network. The shipped ``mnist/cnn-small`` start was trained on all of MNIST train, so with
it the reference network's data are new only to the rounds; ``from_scratch`` makes the halves fully disjoint.

Files in ``out``: ``rounds.json`` (settings, status and one record per round, written atomically after
every round), ``metrics.jsonl`` and TensorBoard (``tb/``), ``metrics.png``, ``round_NNN.png``, the network of
each round (``weights/round_NNN.safetensors``), the generated images (``data/round_NNN.safetensors``), the
reference network (``reference/``, cached) and the last network with its card (``model.safetensors``). A
rerun continues after the last finished round and ends as an uninterrupted run: every random choice is
seeded from ``(seed, round)``.

Steps of ``metrics.jsonl`` and TensorBoard: round ``r`` with ``E`` epochs per round uses steps
``r * (E + 1)`` (its generation) to ``r * (E + 1) + E`` (its epochs).

Modules: :mod:`~alva.training.fakeclass.settings` (what defines a run), :mod:`~alva.training.fakeclass.data`
(image sets), :mod:`~alva.training.fakeclass.network` (the networks and their cards),
:mod:`~alva.training.fakeclass.metrics` (the metrics), :mod:`~alva.training.fakeclass.rounds` (the round driver,
:func:`fakeclass_train`); the figures are in :mod:`alva.report.fakeclass`.
"""

from alva.training.fakeclass.data import RoundData, split_halves
from alva.training.fakeclass.metrics import fake_class_stats, real_stats
from alva.training.fakeclass.network import expand_fake_classes
from alva.training.fakeclass.rounds import fakeclass_train
from alva.training.fakeclass.settings import DESettings, FakeClassSettings, ReferenceSettings, SparseSettings

__all__ = ["DESettings", "FakeClassSettings", "ReferenceSettings", "RoundData", "SparseSettings",
           "expand_fake_classes", "fake_class_stats", "fakeclass_train", "real_stats", "split_halves"]
