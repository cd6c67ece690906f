"""Caption evaluation: BLEU and diversity metrics, the baselines (most common caption, nearest neighbour), the sheet."""

import base64
import collections
import html
import os
from typing import Any, Dict, List, Sequence

import keras
import numpy as np

from tasks.captioning.data import CaptionSet
from tasks.captioning.preprocessing import normalize
from tasks.captioning.serving import BATCH_IMAGES, caption_batch, image_features
from zoo import images
from zoo import metrics as metrics_lib
from zoo.errors import UserError
from zoo.io import atomic_write_text

SHEET_IMAGES = 60  # images shown in the HTML sheet
RETRIEVAL_FEATURES = "retrieval_features"  # the training images' features: RETRIEVAL_FEATURES.npy in the run


def consensus_caption(captions: Sequence[str]) -> str:
    """Of one image's captions, the one with the highest BLEU-4 against the others (Devlin et al. 2015)."""
    from sacrebleu.metrics import BLEU

    normalized = [normalize(caption) for caption in captions]
    if len(normalized) == 1:
        return normalized[0]
    metric = BLEU(tokenize="none", effective_order=True)
    scores = [metric.sentence_score(text, normalized[:i] + normalized[i + 1:]).score
              for i, text in enumerate(normalized)]
    return normalized[int(np.argmax(scores))]


def unpack_features(packed: Any) -> np.ndarray:
    """The features that runs written before retrieval_features.npy kept in assets.json: float16 bytes in
    base64 ({"dtype", "shape", "base64"}), or, older still, JSON lists -> float32 (n, features)."""
    if isinstance(packed, dict):
        raw = np.frombuffer(base64.b64decode(packed["base64"]), dtype="<f2")
        return raw.reshape(packed["shape"]).astype("float32")
    return np.asarray(packed, dtype="float32")


def retrieval_bank(run: Any) -> np.ndarray:
    """The training images' features (n, features), each scaled to unit length, for nearest-neighbour retrieval:
    from retrieval_features.npy, or (runs written before it) assets.json."""
    path = os.path.join(run.directory, f"{RETRIEVAL_FEATURES}.npy")
    if os.path.isfile(path):
        features = np.load(path).astype("float32")
    elif "features" in run.assets.get("retrieval", {}):
        features = unpack_features(run.assets["retrieval"]["features"])
    else:
        raise UserError(f"{path}: missing (damaged or unfinished run; rerun the train command with --overwrite)")
    return _unit_rows(features)


def baselines(exported: keras.Model, train: CaptionSet) -> Dict[str, Any]:
    """What the baselines need: the most common training caption, and each training image's consensus caption
    and feature (n, features) for nearest-neighbour retrieval (the features go to retrieval_features.npy)."""
    print(f"captioning: encoding {len(train)} training images for the retrieval baseline")
    features = np.concatenate([image_features(exported, batch)[0]
                               for batch in images.encoded_batches(train.images, BATCH_IMAGES)])
    counts = collections.Counter(normalize(caption) for image in train.captions for caption in image)
    most_common = max(counts.items(), key=lambda item: (item[1], -len(item[0]), item[0]))[0]
    return {
        "most_common_caption": most_common,
        "retrieval": {"captions": [consensus_caption(image) for image in train.captions]},
        # float16 (as the base64 that assets.json held before): a quarter of the float32 size, same neighbours.
        RETRIEVAL_FEATURES: features.astype("<f2"),  # zoo.run.write_arrays stores it as retrieval_features.npy
    }


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix / (np.linalg.norm(matrix, axis=1, keepdims=True) + 1e-8)


def nearest_neighbour_captions(features: np.ndarray, captions: Sequence[str], bank: np.ndarray) -> List[str]:
    """Each image (features (n, features)) gets the consensus caption of the training image with the most similar
    feature (cosine); `bank`: the training features, unit length (retrieval_bank), one per caption of `captions`."""
    nearest = (_unit_rows(np.asarray(features, dtype="float32")) @ bank.T).argmax(axis=1)
    return [captions[i] for i in nearest]


def caption_metrics(captions: Sequence[str], references: Sequence[Sequence[str]]) -> Dict[str, Any]:
    """BLEU-1..4 against every normalized reference, plus caption length and vocabulary usage."""
    normalized_references = [[normalize(caption) for caption in image] for image in references]
    return {**metrics_lib.corpus_bleu(captions, normalized_references), **metrics_lib.caption_diversity(captions)}


def write_sheet(path: str, part: CaptionSet, encoded: Sequence[bytes], columns: Dict[str, List[str]],
                limit: int = SHEET_IMAGES) -> None:
    """A self-contained HTML page: each image (thumbnail) with its generated and reference captions."""
    rows = []
    for index in range(min(limit, len(part), len(encoded))):
        generated = "".join(f"<li><b>{html.escape(name)}</b>: {html.escape(captions[index])}</li>"
                            for name, captions in columns.items())
        references = "".join(f"<li>{html.escape(caption)}</li>" for caption in part.captions[index])
        rows.append(f"<tr><td><img src=\"{images.thumbnail_data_uri(encoded[index])}\"><br>"
                    f"{html.escape(part.names[index])}</td><td><ul>{generated}</ul>references:<ol>{references}</ol>"
                    f"</td></tr>")
    atomic_write_text(path, "<!doctype html><meta charset=\"utf-8\"><title>captions</title>"
                            "<style>td{vertical-align:top;padding:6px;border-bottom:1px solid #ccc}</style>"
                            f"<h1>{html.escape(part.source)}</h1><table>{''.join(rows)}</table>\n")


def evaluate(run: Any, part: CaptionSet, split: str = "test") -> dict:
    """BLEU-1..4 (beam and greedy), caption length, vocabulary usage, the two baselines, and an HTML sheet.

    Every image of `part` is scored, streamed BATCH_IMAGES at a time (only the sheet's images are kept)."""
    config, vocabulary = run.config, run.assets["vocabulary"]
    print(f"captioning: captioning the {len(part)} images of {split}")
    bank = retrieval_bank(run)
    beam, greedy, neighbour, shown = [], [], [], []
    for encoded in images.encoded_batches(part.images, BATCH_IMAGES):
        outputs = caption_batch(run.model, encoded, vocabulary, config)
        beam.extend(outputs["beam"])
        greedy.extend(outputs["greedy"])
        neighbour.extend(nearest_neighbour_captions(outputs["features"], run.assets["retrieval"]["captions"], bank))
        shown.extend(encoded[: max(0, SHEET_IMAGES - len(shown))])
    most_common = [run.assets["most_common_caption"]] * len(beam)
    results = {"split": split, "images": len(beam), "beam_width": config.model.beam_width}
    results.update(caption_metrics(beam, part.captions))
    results["greedy"] = caption_metrics(greedy, part.captions)
    results["baseline_most_common_caption"] = caption_metrics(most_common, part.captions)
    results["baseline_nearest_neighbour"] = caption_metrics(neighbour, part.captions)
    sheet = os.path.join(run.directory, f"captions_{split}.html")
    write_sheet(sheet, part, shown, {f"beam {config.model.beam_width}": beam, "greedy": greedy,
                                     "nearest neighbour": neighbour})
    lines = [f"{split}: {len(beam)} images; BLEU-1..4 (0-100) against all references"]
    for name, scores in (("model, beam", results), ("model, greedy", results["greedy"]),
                         ("most common caption", results["baseline_most_common_caption"]),
                         ("nearest neighbour", results["baseline_nearest_neighbour"])):
        lines.append(f"  {name:<22} " + " / ".join(f"{scores[f'bleu_{n}']:.1f}" for n in range(1, 5))
                     + f"   length {scores['mean_caption_length']:.1f}, {scores['distinct_words']} words, "
                       f"{scores['distinct_caption_fraction']:.0%} distinct captions")
    lines.append(f"  sheet: {sheet}")
    results["report"] = "\n".join(lines)
    return results


