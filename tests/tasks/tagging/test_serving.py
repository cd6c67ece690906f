"""The exported tagger: save/load round trips decoding what the network scores, serving outputs, the conll format."""

from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

from tasks.tagging import ner, serving
from tasks.tagging import model as model_lib
from tasks.tagging.features import SplitTokens, token_features
from tests.tasks.tagging.helpers import prepared_splits, tiny_config
from zoo.data.pipeline import first_epoch
from zoo.errors import UserError


@pytest.mark.parametrize("output, char_encoder", [("crf", "cnn"), ("crf", "lstm"), ("softmax", "lstm")])
def test_exported_model_round_trip(tmp_path, output, char_encoder):
    config = tiny_config(output=output, char_encoder=char_encoder)
    prepared = prepared_splits(config)
    model = ner.build_model(config, prepared.sizes)
    ner.compile_model(model, config, prepared.sizes)
    model.fit(first_epoch(prepared.train), epochs=2, verbose=0)  # move the weights (and CRF transitions) off their init
    exported = serving.export(model, config, prepared.assets)
    path = str(tmp_path / "model.keras")
    exported.save(path)
    reloaded = keras.saving.load_model(path)
    sentences = tf.constant(["Angela Merkel visited Paris .", "Hi", "  The   EU met in 1996 again .  "])
    before, after = np.asarray(exported(sentences)), np.asarray(reloaded(sentences))
    np.testing.assert_array_equal(before, after)
    # The SavedModel `serve` outputs reuse the reloaded model's layers and agree with it.
    served = serving.serving_outputs(reloaded, sentences)
    np.testing.assert_array_equal(np.asarray(served["tags"]), before)
    np.testing.assert_array_equal(np.asarray(served["length"]), [5, 1, 7])
    assert ("score" in served) == (output == "crf") and ("scores" in served) == (output == "softmax")
    assert before.shape == (3, 7) and (before[1, 1:] == b"").all() and (before[0, 5:] == b"").all()
    assert set(before[before != b""]) <= {tag.encode() for tag in prepared.assets["tags"]}
    # The export decodes exactly what the trained network scores (Viterbi for a CRF, argmax otherwise).
    tokens = SplitTokens()(sentences)
    scores = np.asarray(model(token_features(config, prepared.assets)(tokens), training=False))
    mask = np.asarray(tokens) != b""
    ids = np.asarray(model.get_layer(model_lib.CRF_LAYER).viterbi(scores, mask)) if output == "crf" else np.where(mask, scores.argmax(-1), -1)
    names = np.array([b""] + [tag.encode() for tag in prepared.assets["tags"]])
    np.testing.assert_array_equal(names[ids + 1], before)


def test_conll_format():
    rows = [{"tokens": ["Angela", "Merkel"], "tags": ["B-PER", "I-PER"]}, {"tokens": ["Hi"], "tags": ["O"]}]
    assert serving.format_predictions(rows, "conll") == "Angela\tB-PER\nMerkel\tI-PER\n\nHi\tO\n"
    with pytest.raises(UserError, match="--format xml"):
        serving.format_predictions(rows, "xml")


def eager_tag_sentences(model, token_lists, batch_size=128):
    """The path before the compiled call: the exported model called eagerly on length-sorted batches."""
    order = np.argsort([len(tokens) for tokens in token_lists], kind="stable")
    predicted = [None] * len(token_lists)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        names = np.asarray(model(tf.constant([" ".join(token_lists[i]) for i in chunk]), training=False))
        for row, index in zip(names, chunk):
            predicted[index] = [name.decode("utf-8") for name in row[:len(token_lists[index])]]
    return predicted


@pytest.mark.parametrize("output", ["crf", "softmax"])
def test_compiled_path_tags_real_sentences_as_the_eager_model_did(data_env, output):
    """Real CoNLL-2003 test sentences: the same tags all at once (the predict.py batch), in length-sorted
    batches and one at a time as the eager exported model gave; one trace serves every batch size and length."""
    from tests.conftest import load_splits
    from zoo import inference

    config = tiny_config(output=output)
    splits = load_splits(ner, config)
    keras.utils.set_random_seed(0)
    prepared = prepared_splits(config, splits["validation"].subset(range(500)))
    model = ner.build_model(config, prepared.sizes)
    exported = serving.export(model, config, prepared.assets)
    token_lists = [tokens for tokens in splits["test"].tokens[:200] if "  " not in " ".join(tokens)]
    expected = eager_tag_sentences(exported, token_lists)
    assert len({tag for tags in expected for tag in tags}) > 1  # untrained (seeded), yet not one tag for all
    assert serving.tag_sentences(exported, token_lists) == expected
    # Other batchings pad differently, which can move near-tied scores by float round-off, so they
    # are compared with the eager model on the same batches.
    assert serving.tag_sentences(exported, token_lists, batch_size=32) == eager_tag_sentences(exported, token_lists, 32)
    singles = [serving.tag_sentences(exported, [tokens])[0] for tokens in token_lists[:5]]
    assert singles == eager_tag_sentences(exported, token_lists[:5], batch_size=1)
    rows = ner.predict(SimpleNamespace(model=exported), [" ".join(tokens) for tokens in token_lists[:3]])
    assert [row["tags"] for row in rows] == expected[:3]
    assert serving.tag_sentences(exported, [[], token_lists[0], []]) == [[], expected[0], []]
    assert serving.tag_sentences(exported, [[]]) == [[]]  # no tokens: no tags, and no zero-step graph call
    assert inference.trace_count(exported) == 1
