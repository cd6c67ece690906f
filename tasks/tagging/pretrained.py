"""The taggers' `model.init_from`: the language model runs read and checked, and the tagger initialised from them.

    python train.py --task pos --init-from runs/lm-ewt                  # a forward language model
    python train.py --task ner --init-from runs/lm-fw,runs/lm-bw        # both halves of the BiLSTM

The tagger then uses the language model's word vocabulary (tasks.tagging.data.prepare), its word
embedding and recurrent weights (zoo.pretrained: what goes where; the char and casing rows of the
first layer's input kernel keep their initializer), and fine-tunes per `train.freeze_epochs` and
`train.pretrained_lr_scale`. Words are looked up after features.normalize_words, so the language
model must have read its words the same way: data.lowercase and data.normalize_digits both true
needs its data.standardize=lower_digits, both false data.standardize=none.
"""

from typing import Any, Dict, List

import keras

from tasks.lm.pretrained import read_init_from
from tasks.tagging.model import RECURRENT, WORD_EMBEDDING
from zoo import pretrained
from zoo.errors import UserError

# (data.lowercase, data.normalize_digits) -> the language model's data.standardize giving the same words.
STANDARDIZE = {(True, True): "lower_digits", (False, False): "none"}


def language_models(config: Any) -> Dict[str, pretrained.Pretrained]:
    """{direction: Pretrained} of `model.init_from` ({} when unset), refused with a one-line UserError
    unless their level, standardization, cell and sizes fit this tagger's config."""
    runs = read_init_from(config.model.init_from)
    if not runs:
        return {}
    pretrained.check_architecture(runs, config.model, level="word")
    lookup = (config.data.lowercase, config.data.normalize_digits)
    if lookup not in STANDARDIZE:
        raise UserError(
            f"model.init_from with data.lowercase={str(lookup[0]).lower()} and data.normalize_digits="
            f"{str(lookup[1]).lower()}: no language-model standardization reads words that way; set both true "
            "(a language model with data.standardize=lower_digits) or both false (data.standardize=none)"
        )
    wanted = STANDARDIZE[lookup]
    for run in runs:
        if run.standardize != wanted:
            raise UserError(
                f"model.init_from={run.source}: the language model read its text with data.standardize="
                f"{run.standardize}, but this tagger looks words up with data.lowercase={str(lookup[0]).lower()} "
                f"and data.normalize_digits={str(lookup[1]).lower()}; retrain the language model with "
                f"--set data.standardize={wanted}"
            )
    return pretrained.pair_directions(runs, config.model.bidirectional)


def targets(model: keras.Model, config: Any) -> List[pretrained.Target]:
    """The tagger variables that take pretrained arrays ([] without `model.init_from`)."""
    runs = language_models(config)
    if not runs:
        return []
    recurrent = [f"{RECURRENT}_{index + 1}" for index in range(config.model.num_layers)]
    return pretrained.plan(model, runs, WORD_EMBEDDING, recurrent)


def initialise(model: keras.Model, config: Any) -> None:
    """Copy the `model.init_from` weights into a freshly built tagger (nothing without it).

    A resumed run restores its checkpoint over these afterwards (zoo.training.fit), as for any initializer.
    """
    pretrained.copy_weights(targets(model, config))
