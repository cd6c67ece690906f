"""Config overrides: dotted keys, type coercion, clear errors, and JSON round trips."""

import dataclasses

import pytest

from tasks.classification import sentiment
from zoo import config as config_lib
from zoo.errors import UserError


def test_overrides_reach_nested_sections_and_keep_the_original():
    base = sentiment.Config()
    changed = config_lib.apply_overrides(base, ["model.units=16", "train.learning_rate=0.01",
                                               "model.bidirectional=false", "data.max_train_examples=100"])
    assert (changed.model.units, changed.train.learning_rate) == (16, 0.01)
    assert changed.model.bidirectional is False and changed.data.max_train_examples == 100
    assert base.model.units == 64  # frozen: the default is untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.model.units = 3


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.epochs=three", "--set train.epochs=three: expected an integer"),
        ("train.learning_rate=fast", "--set train.learning_rate=fast: expected a number"),
        ("model.bidirectional=maybe", "expected true or false"),
        ("model.colour=red", "unknown key 'colour'; valid keys here: "),
        ("units=3", "unknown key 'units'"),
        ("model=3", "'model' is a section"),
        ("train.epochs", "expected key=value"),
        ("model.cell=rnn", "unknown cell 'rnn'; valid cells: simple_rnn, lstm, gru, none"),
        ("train.epochs=0", "train.epochs=0: must be at least 1"),
    ],
)
def test_bad_overrides_say_what_is_wrong(override, message):
    with pytest.raises(UserError) as error:
        config_lib.apply_overrides(sentiment.Config(), [override])
    assert message in str(error.value)


def test_json_round_trip():
    config = config_lib.apply_overrides(sentiment.Config(), ["model.cell=gru", "data.max_length=50"])
    assert config_lib.from_dict(sentiment.Config, config_lib.to_dict(config)) == config


def test_optional_values_accept_none():
    config = config_lib.apply_overrides(sentiment.Config(), ["data.max_train_examples=10"])
    assert config_lib.apply_overrides(config, ["data.max_train_examples=none"]).data.max_train_examples is None
