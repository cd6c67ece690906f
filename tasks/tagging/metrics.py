"""Evaluation metrics of the taggers: POS token accuracy with unknown-word accuracy, NER entity F1 (seqeval)."""

from typing import Any, Dict, List, Sequence

from tasks.tagging.features import normalized_tokens
from zoo.data.columns import TaggedSentences


def token_accuracy(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> float:
    """The fraction of tokens whose predicted tag equals the gold one (0 for no tokens)."""
    pairs = [(g, p) for gold_tags, predicted_tags in zip(gold, predicted) for g, p in zip(gold_tags, predicted_tags)]
    return sum(g == p for g, p in pairs) / max(1, len(pairs))


def pos_metrics(part: TaggedSentences, predicted: List[List[str]], vocabulary: Sequence[str], config) -> Dict[str, Any]:
    """Token accuracy, and accuracy on words outside the training vocabulary (after normalization)."""
    from sklearn import metrics

    known = set(vocabulary)
    words = normalized_tokens(part.tokens, config)
    gold_flat = [tag for tags in part.tags for tag in tags]
    predicted_flat = [tag for tags in predicted for tag in tags]
    unknown = [word not in known for sentence in words for word in sentence]
    unknown_pairs = [(g, p) for g, p, u in zip(gold_flat, predicted_flat, unknown) if u]
    labels = sorted(set(gold_flat) | set(predicted_flat))
    return {
        "sentences": len(part),
        "tokens": len(gold_flat),
        "accuracy": token_accuracy(part.tags, predicted),
        "unknown_tokens": len(unknown_pairs),
        "unknown_word_accuracy": sum(g == p for g, p in unknown_pairs) / max(1, len(unknown_pairs)),
        "report": metrics.classification_report(gold_flat, predicted_flat, labels=labels, digits=4, zero_division=0),
    }


def entity_metrics(part: TaggedSentences, predicted: List[List[str]]) -> Dict[str, Any]:
    """Entity-level precision/recall/F1, overall (micro) and per type, scored the conlleval way (seqeval)."""
    from seqeval import metrics

    gold = part.tags
    per_type = metrics.classification_report(gold, predicted, output_dict=True, zero_division=0)
    types = {name: {key: float(value) for key, value in scores.items()}
             for name, scores in per_type.items() if not name.endswith(" avg")}
    return {
        "sentences": len(part),
        "tokens": sum(len(tags) for tags in gold),
        "precision": float(metrics.precision_score(gold, predicted, zero_division=0)),
        "recall": float(metrics.recall_score(gold, predicted, zero_division=0)),
        "f1": float(metrics.f1_score(gold, predicted, zero_division=0)),
        "token_accuracy": token_accuracy(gold, predicted),
        "per_type": types,
        "report": metrics.classification_report(gold, predicted, digits=4, zero_division=0),
    }
