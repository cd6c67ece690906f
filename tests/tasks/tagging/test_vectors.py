"""Pretrained word vectors: GloVe and word2vec text, their errors, and loading them when training starts."""

import dataclasses

import numpy as np
import pytest

from tasks.tagging import ner
from tasks.tagging import model as model_lib
from tasks.tagging.vectors import pretrained_matrix, read_vectors
from tests.tasks.tagging.helpers import prepared_splits, tiny_config
from zoo.data.pipeline import first_epoch
from zoo.errors import UserError


def test_pretrained_vectors_glove_and_word2vec(tmp_path):
    config = tiny_config()
    vocabulary = ["paris", "the", "0000", "unseen"]
    glove = tmp_path / "vectors.txt"
    glove.write_text("the 0.1 0.2 0.3 0.4 0.5 0.6\nParis 1 2 3 4 5 6\n1996 -1 -1 -1 -1 -1 -1\nparis 9 9 9 9 9 9\n")
    matrix, found = pretrained_matrix(str(glove), vocabulary, config)
    assert matrix.shape == (6, 6) and found == 3
    np.testing.assert_allclose(matrix[2], [1, 2, 3, 4, 5, 6])  # "Paris" is normalized; first form wins
    np.testing.assert_allclose(matrix[4], [-1] * 6)
    assert np.abs(matrix[5]).max() <= 0.05  # no vector: small random row
    word2vec = tmp_path / "vectors.w2v.txt"
    word2vec.write_text("2 6\nthe 0.1 0.2 0.3 0.4 0.5 0.6\nparis 1 2 3 4 5 6\n")
    words, vectors = read_vectors(str(word2vec))
    assert words == ["the", "paris"] and vectors.shape == (2, 6)
    bad = tmp_path / "bad.txt"
    bad.write_text("the 1 2 3\nparis 1 2\n")
    with pytest.raises(UserError, match=r"bad\.txt:2: expected a word and 3 numbers"):
        read_vectors(str(bad))
    three = tmp_path / "three.txt"
    three.write_text("the 1 2 3\n")
    with pytest.raises(UserError, match=r"holds 3-dimensional vectors; set --set model.embedding_dim=3"):
        pretrained_matrix(str(three), vocabulary, config)


def test_pretrained_vectors_are_loaded_when_training_starts(tmp_path):
    glove = tmp_path / "vectors.txt"
    glove.write_text("angela 1 2 3 4 5 6\nparis 6 5 4 3 2 1\n")
    config = dataclasses.replace(
        tiny_config(), model=dataclasses.replace(tiny_config().model, pretrained_vectors=str(glove))
    )
    prepared = prepared_splits(config)
    model = ner.build_model(config, prepared.sizes)
    ner.compile_model(model, config, prepared.sizes)
    model.fit(first_epoch(prepared.train), epochs=1, verbose=0, callbacks=prepared.callbacks)
    embedding = np.asarray(model.get_layer(model_lib.WORD_EMBEDDING).embeddings)
    row = 2 + prepared.assets["vocabulary"].index("paris")
    np.testing.assert_allclose(embedding[row], [6, 5, 4, 3, 2, 1], atol=0.05)  # one step of training away
