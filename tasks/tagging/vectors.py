"""Pretrained word vectors for the taggers: GloVe / word2vec text files, the initial embedding matrix, the loading callback."""

from typing import List, Sequence, Tuple

import keras
import numpy as np

from tasks.tagging.features import FIRST_WORD_ID, normalized_tokens
from tasks.tagging.model import WORD_EMBEDDING
from zoo.data import files
from zoo.errors import UserError


def read_vectors(path: str) -> Tuple[List[str], np.ndarray]:
    """Word vectors from a GloVe (`word v1 ... vd`) or word2vec text file (first line `count dim`).

    Returns (words, float32 array (count, dim)); a line of the wrong length names its file:line.
    """
    words, rows, dim = [], [], None
    for number, line in files.lines(path):
        fields = line.rstrip(" ").split(" ")
        if number == 1 and len(fields) == 2 and all(field.isdigit() for field in fields):
            dim = int(fields[1])  # the word2vec header
            continue
        if not line.strip():
            continue
        if dim is None:
            dim = len(fields) - 1
            if dim < 1:
                raise UserError(f"{path}:{number}: expected a word followed by its vector")
        if len(fields) != dim + 1:
            raise UserError(f"{path}:{number}: expected a word and {dim} numbers, found {len(fields) - 1} numbers")
        try:
            rows.append([float(value) for value in fields[1:]])
        except ValueError:
            raise UserError(f"{path}:{number}: a vector value is not a number") from None
        words.append(fields[0])
    if not words:
        raise UserError(f"{path}: no word vectors found")
    return words, np.asarray(rows, dtype="float32")


def pretrained_matrix(path: str, vocabulary: Sequence[str], config) -> Tuple[np.ndarray, int]:
    """(vocab_size, dim) initial word embedding: file vectors where the (normalized) word matches.

    Rows without a vector keep a small random initialisation; returns (matrix, number found).
    """
    words, vectors = read_vectors(path)
    if vectors.shape[1] != config.model.embedding_dim:
        raise UserError(
            f"model.pretrained_vectors={path} holds {vectors.shape[1]}-dimensional vectors; "
            f"set --set model.embedding_dim={vectors.shape[1]}"
        )
    normalized = normalized_tokens([words], config)[0]
    position = {}
    for row, word in enumerate(normalized):
        position.setdefault(word, row)  # the first (most frequent) form wins
    rng = np.random.default_rng(config.train.seed)
    matrix = rng.uniform(-0.05, 0.05, size=(len(vocabulary) + FIRST_WORD_ID, vectors.shape[1])).astype("float32")
    found = 0
    for word_id, word in enumerate(vocabulary, start=FIRST_WORD_ID):
        if word in position:
            matrix[word_id] = vectors[position[word]]
            found += 1
    return matrix, found


class PretrainedEmbedding(keras.callbacks.Callback):
    """Loads pretrained vectors into the tagger's word embedding when training starts from scratch.

    A resumed run (the optimizer has already stepped, restored by BackupAndRestore) keeps its weights.
    """

    def __init__(self, matrix: np.ndarray):
        super().__init__()
        self.matrix = matrix

    def on_train_begin(self, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == 0:
            self.model.get_layer(WORD_EMBEDDING).embeddings.assign(self.matrix)
