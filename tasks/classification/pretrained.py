"""The classifiers' `model.init_from`: the language model runs read and checked, and the encoder initialised from them.

    python train.py --task sentiment --init-from runs/lm-imdb          # a forward language model
    python train.py --task sentiment --init-from runs/lm-fw,runs/lm-bw  # both halves of the BiLSTM

The task then uses the language model's vocabulary (tasks.classification.data.prepare), its
embedding and recurrent weights (zoo.pretrained: what goes where), and fine-tunes per
`train.freeze_epochs` and `train.pretrained_lr_scale`. The classifier looks words up after
zoo.text.standardize_words (lowercase, punctuation split off), so a word-level language model must
have read its text the same way (data.standardize=words); a character-level one reads raw characters.
"""

from typing import Any, Dict, List

import keras

from tasks.classification.model import encoder_layer_names
from tasks.lm.pretrained import read_init_from
from zoo import pretrained
from zoo.errors import UserError

# The language model's data.standardize that yields the tokens this family looks up, per data.level.
STANDARDIZE = {"word": "words", "char": "none"}


def language_models(config: Any) -> Dict[str, pretrained.Pretrained]:
    """{direction: Pretrained} of `model.init_from` ({} when unset), refused with a one-line UserError
    unless their level, standardization, cell and sizes fit this classifier's config."""
    runs = read_init_from(config.model.init_from)
    if not runs:
        return {}
    pretrained.check_architecture(runs, config.model, level=config.data.level)
    wanted = STANDARDIZE[config.data.level]
    for run in runs:
        if run.standardize != wanted:
            raise UserError(
                f"model.init_from={run.source}: the language model read its text with data.standardize="
                f"{run.standardize}, but a {config.data.level}-level classifier looks up "
                + ("zoo.text.standardize_words tokens (lowercase, punctuation split off)" if config.data.level == "word"
                   else "raw characters")
                + f"; retrain the language model with --set data.standardize={wanted}"
            )
    return pretrained.pair_directions(runs, config.model.bidirectional)


def targets(model: keras.Model, config: Any) -> List[pretrained.Target]:
    """The encoder variables that take pretrained arrays ([] without `model.init_from`)."""
    runs = language_models(config)
    if not runs:
        return []
    embedding, *recurrent = encoder_layer_names(config)
    return pretrained.plan(model, runs, embedding, recurrent)


def initialise(model: keras.Model, config: Any) -> None:
    """Copy the `model.init_from` weights into a freshly built classifier (nothing without it).

    A resumed run restores its checkpoint over these afterwards (zoo.training.fit), as for any initializer.
    """
    pretrained.copy_weights(targets(model, config))
