"""The shared recurrent factory: shapes, masking, save/load round trips and cuDNN eligibility."""

import itertools

import keras
import numpy as np
import pytest

from zoo import recurrent
from zoo.errors import UserError

CELLS = ("simple_rnn", "lstm", "gru")
VOCAB = 30


def _ids():
    # Two right-padded sequences of lengths 5 and 3.
    return np.array([[3, 4, 5, 6, 7], [8, 9, 10, 0, 0]], dtype="int32")


@pytest.mark.parametrize(
    "cell,bidirectional,num_layers,return_sequences",
    list(itertools.product(CELLS, (False, True), (1, 2), (False, True))),
)
def test_encoder_output_shapes(cell, bidirectional, num_layers, return_sequences):
    config = recurrent.RecurrentConfig(cell=cell, units=4, num_layers=num_layers, bidirectional=bidirectional,
                                       embedding_dim=3)
    model = recurrent.build_encoder(config, VOCAB, return_sequences=return_sequences)
    output = model(_ids())
    features = 4 * (2 if bidirectional else 1)
    expected = (2, 5, features) if return_sequences else (2, features)
    assert tuple(output.shape) == expected
    assert len(recurrent.recurrent_layers(model)) == num_layers


@pytest.mark.parametrize("cell,bidirectional", list(itertools.product(CELLS, (False, True))))
def test_padding_does_not_change_the_encoding(cell, bidirectional):
    config = recurrent.RecurrentConfig(cell=cell, units=5, bidirectional=bidirectional, embedding_dim=4)
    model = recurrent.build_encoder(config, VOCAB)
    short = np.array([[8, 9, 10]], dtype="int32")
    padded = np.array([[8, 9, 10, 0, 0, 0, 0]], dtype="int32")
    np.testing.assert_allclose(model(short), model(padded), atol=1e-6)


@pytest.mark.parametrize("cell,bidirectional", list(itertools.product(CELLS, (False, True))))
def test_keras_save_load_round_trip(cell, bidirectional, tmp_path):
    config = recurrent.RecurrentConfig(cell=cell, units=6, num_layers=2, bidirectional=bidirectional,
                                       dropout_rate=0.2, embedding_dim=5)
    token_ids = keras.Input(shape=(None,), dtype="int32")
    features = recurrent.embed_and_encode(token_ids, config, VOCAB)
    model = keras.Model(token_ids, keras.layers.Dense(1, activation="sigmoid")(features))
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(model.predict(_ids(), verbose=0), restored.predict(_ids(), verbose=0))


@pytest.mark.parametrize("cell", ("lstm", "gru"))
def test_factory_layers_keep_cudnn_eligible(cell):
    config = recurrent.RecurrentConfig(cell=cell, units=4, num_layers=2, bidirectional=True, dropout_rate=0.5)
    model = recurrent.build_encoder(config, VOCAB)
    for layer in recurrent.recurrent_layers(model):
        eligible, reasons = recurrent.cudnn_eligible(layer)
        assert eligible, reasons


def test_cudnn_rules_reject_what_keras_rejects():
    assert recurrent.cudnn_eligible(keras.layers.LSTM(3, recurrent_dropout=0.1)) == (False, ["recurrent_dropout is not 0"])
    assert not recurrent.cudnn_eligible(keras.layers.LSTM(3, activation="relu"))[0]
    assert "reset_after is False" in recurrent.cudnn_eligible(keras.layers.GRU(3, reset_after=False))[1]
    assert not recurrent.cudnn_eligible(keras.layers.SimpleRNN(3))[0]


def test_unknown_cell_lists_valid_cells():
    with pytest.raises(UserError, match="unknown cell 'rnn'; valid cells: simple_rnn, lstm, gru, none$"):
        recurrent.RecurrentConfig(cell="rnn").validate()


def test_initial_state_conditions_a_unidirectional_stack():
    config = recurrent.RecurrentConfig(cell="gru", units=3)
    inputs = keras.Input(shape=(None, 2))
    state = keras.Input(shape=(3,))
    model = keras.Model([inputs, state], recurrent.recurrent_stack(inputs, config, initial_state=[state]))
    x = np.ones((1, 4, 2), dtype="float32")
    different = [model([x, np.full((1, 3), value, dtype="float32")]) for value in (0.0, 1.0)]
    assert not np.allclose(different[0], different[1])
    with pytest.raises(UserError, match="unidirectional"):
        recurrent.recurrent_stack(inputs, recurrent.RecurrentConfig(bidirectional=True), initial_state=[state])


# ---- cell none: no recurrent layer --------------------------------------------------------------


def test_cell_none_returns_the_masked_embedding_unchanged():
    # units, num_layers and bidirectional are unused, and valid.
    config = recurrent.RecurrentConfig(cell="none", units=7, num_layers=3, bidirectional=True, embedding_dim=3)
    config.validate()
    model = recurrent.build_encoder(config, VOCAB, return_sequences=True)
    output = model(_ids())
    assert tuple(output.shape) == (2, 5, 3)
    np.testing.assert_array_equal(output, model.get_layer("encoder_embedding")(_ids()))
    np.testing.assert_array_equal(output._keras_mask, _ids() != 0)
    assert recurrent.recurrent_layers(model) == [] and recurrent.layer_count(config) == 0
    assert [type(layer).__name__ for layer in model.layers] == ["InputLayer", "Embedding"]


def test_cell_none_mask_reaches_a_pooling_layer_and_round_trips(tmp_path):
    config = recurrent.RecurrentConfig(cell="none", embedding_dim=4)
    token_ids = keras.Input(shape=(None,), dtype="int32")
    features = recurrent.embed_and_encode(token_ids, config, VOCAB, return_sequences=True)
    model = keras.Model(token_ids, keras.layers.GlobalAveragePooling1D()(features))  # masked mean
    short = np.array([[8, 9, 10]], dtype="int32")
    np.testing.assert_allclose(model(short), model(np.array([[8, 9, 10, 0, 0]], dtype="int32")), atol=1e-6)
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(model.predict(_ids(), verbose=0), restored.predict(_ids(), verbose=0))


def test_cell_none_has_no_state_to_return_or_condition():
    config = recurrent.RecurrentConfig(cell="none")
    inputs = keras.Input(shape=(None, 2))
    with pytest.raises(UserError, match="^model.cell=none has no recurrent state to sum up a sequence; pool"):
        recurrent.recurrent_stack(inputs, config)
    with pytest.raises(UserError, match="^model.cell=none has no recurrent state for an initial state"):
        recurrent.recurrent_stack(inputs, config, return_sequences=True, initial_state=[keras.Input(shape=(3,))])
    with pytest.raises(ValueError, match="no recurrent layer to make"):
        recurrent.make_layer("none", 3, return_sequences=True)
    assert "none" not in recurrent.CELLS and recurrent.CELL_NAMES == ("simple_rnn", "lstm", "gru", "none")
    assert [recurrent.is_recurrent(cell) for cell in recurrent.CELL_NAMES] == [True, True, True, False]
