"""The classifier model (tasks/classification/model.py): pooling over time ignores padding and survives empty texts."""

import numpy as np
import pytest

from tasks.classification import sentiment, spam
from zoo.cli import resolve_config


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_pooling_ignores_padding_and_survives_empty_texts(pooling):
    from zoo.config import apply_overrides

    config = apply_overrides(sentiment.Config(), [f"model.pooling={pooling}", "model.units=4"])
    model = sentiment.build_model(config, {"vocab_size": 20, "num_classes": 2})
    short = model(np.array([[3, 4, 5]], dtype="int32"))
    padded = model(np.array([[3, 4, 5, 0, 0, 0]], dtype="int32"))
    np.testing.assert_allclose(short, padded, atol=1e-6)
    assert np.isfinite(np.asarray(model(np.zeros((1, 4), dtype="int32")))).all()


def test_max_pooling_ignores_padding_and_reloads(tmp_path):
    import keras

    config = resolve_config(spam, overrides=["model.pooling=max", "model.units=4", "model.cell=gru"])
    model = spam.build_model(config, {"vocab_size": 20, "num_classes": 2})
    padded = np.array([[3, 4, 5, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
    outputs = np.asarray(model(padded))
    assert outputs.shape == (2, 1)
    np.testing.assert_allclose(outputs[0], np.asarray(model(padded[:1, :3]))[0], rtol=1e-6)
    assert np.isfinite(outputs).all()  # an all-padding row pools to zeros, not -inf
    path = str(tmp_path / "model.keras")
    model.save(path)
    np.testing.assert_array_equal(np.asarray(keras.saving.load_model(path)(padded)), outputs)


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_cell_none_is_an_order_free_bag_of_embeddings(pooling):
    config = resolve_config(sentiment, overrides=["model.cell=none", f"model.pooling={pooling}"])
    model = sentiment.build_model(config, {"vocab_size": 20, "num_classes": 2})
    words = np.array([[3, 4, 5, 6, 0, 0]], dtype="int32")
    reordered = np.array([[6, 3, 5, 4, 0, 0]], dtype="int32")
    np.testing.assert_allclose(model(words), model(reordered), atol=1e-6)
    assert not np.allclose(model(words), model(np.array([[3, 3, 3, 3]], dtype="int32")), atol=1e-6)
    # Embedding -> pooling -> dropout -> probabilities: nothing recurrent in between.
    assert [layer.name for layer in model.layers][2:] == [f"{pooling}_over_time", "head_dropout", "probabilities"]


def test_cell_none_with_last_pooling_names_both_keys():
    from zoo.errors import UserError

    with pytest.raises(UserError) as raised:
        resolve_config(spam, overrides=["model.cell=none"])  # spam pools the last state by default
    assert str(raised.value) == ("model.pooling=last needs a recurrent state, which model.cell=none has not; "
                                 "use model.pooling=mean or max")
