"""The POS task: a short training run on a real slice, against the most-frequent-tag baseline, and predict --format conll."""

import json
import os

import pytest

from zoo.data import columns


def _most_frequent_tag_accuracy(train, test):
    """Accuracy of tagging every word with its most frequent training tag (unknown: the commonest tag)."""
    from collections import Counter, defaultdict

    by_word, overall = defaultdict(Counter), Counter()
    for tokens, tags in zip(train.tokens, train.tags):
        for token, tag in zip(tokens, tags):
            by_word[token][tag] += 1
            overall[tag] += 1
    default = overall.most_common(1)[0][0]
    pairs = [(by_word[t].most_common(1)[0][0] if t in by_word else default, g)
             for tokens, tags in zip(test.tokens, test.tags) for t, g in zip(tokens, tags)]
    return sum(p == g for p, g in pairs) / len(pairs)


@pytest.mark.slow
def test_pos_learns_on_a_real_slice(data_env, cli, tmp_path):
    run_dir = str(tmp_path / "pos")
    flags = ["--set", "data.max_train_examples=1500", "--set", "data.max_eval_examples=300",
             "--set", "model.units=32", "--set", "model.dropout_rate=0.2", "--set", "train.learning_rate=0.005",
             "--set", "model.char_encoder=cnn", "--epochs", "2"]  # the CNN: the same check, in less CI time
    result = cli("train.py", "--task", "pos", "--out", run_dir, *flags)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    train = columns.read_columns(os.path.join(data_env, "ud_english_ewt", "en_ewt-ud-train.conllu")).head(1500)
    test = columns.read_columns(os.path.join(data_env, "ud_english_ewt", "en_ewt-ud-test.conllu")).head(300)
    baseline = _most_frequent_tag_accuracy(train, test)
    majority = max(sum(t == tag for tags in test.tags for t in tags) for tag in {"NOUN", "PUNCT"}) / metrics["tokens"]
    assert metrics["tokens"] == sum(map(len, test.tokens))
    assert metrics["accuracy"] > majority + 0.5 and metrics["accuracy"] > baseline, (metrics["accuracy"], baseline)
    assert 0 < metrics["unknown_tokens"] < metrics["tokens"]

    sentences = tmp_path / "sentences.txt"
    sentences.write_text("I saw the cat .\nIt ran away quickly .\n")
    result = cli("predict.py", run_dir, "--input", str(sentences), "--format", "conll")
    assert result.returncode == 0, result.stderr[-2000:]
    blocks = result.stdout.strip("\n").split("\n\n")
    assert [[line.split("\t")[0] for line in block.splitlines()] for block in blocks] == [
        ["I", "saw", "the", "cat", "."], ["It", "ran", "away", "quickly", "."]]
    assert all(line.split("\t")[1] in metrics["report"] for block in blocks for line in block.splitlines())
