"""Autoregressive decoding: greedy, temperature and top-k sampling, and beam search, over any step function.

The decoder knows nothing about models. A caller supplies the logits for the first
position and a `step` callback that, given the token ids just chosen, advances its own
state (an RNN's hidden state, a caption decoder's context, ...) and returns the next logits:

    step(token_ids: int (batch,)) -> logits: float (batch, vocab)

    ids = decoding.generate(step, first_logits, length=50, temperature=0.8, top_k=40, seed=1)
    # ids: int64 (batch, length)

`temperature=0` is greedy decoding; `top_k` keeps only the k most likely tokens before sampling.

Beam search has to reorder the state when beams are pruned, so its step function takes the state
explicitly and returns the new one (a list of arrays, each with one row per beam):

    beam_step(token_ids: int (rows,), state: list of (rows, ...)) -> (logits (rows, vocab), new state)

    best = decoding.beam_search(beam_step, state, first_logits, beam_width=3, max_length=20, end_id=3)
    # best[i]: up to beam_width (ids int64 (steps,), normalized score), best first, for input i
"""

from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from zoo.errors import UserError


def check_options(temperature: float = 1.0, top_k: Optional[int] = None) -> None:
    """Raise a UserError naming the flag when a decoding option is out of range."""
    if temperature is None or not np.isfinite(temperature) or temperature < 0:
        raise UserError(f"--temperature {temperature}: must be 0 (greedy) or positive")
    if top_k is not None and int(top_k) < 1:
        raise UserError(f"--top-k {top_k}: must be at least 1")


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax over the last axis of a float array."""
    logits = np.asarray(logits, dtype="float64")
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def filter_top_k(logits: np.ndarray, top_k: Optional[int]) -> np.ndarray:
    """Set every logit outside the `top_k` largest of each row to -inf; (batch, vocab) -> same shape.

    Ties at the k-th value are all kept, so no row ever ends up with fewer than k candidates.
    """
    logits = np.asarray(logits, dtype="float64")
    if top_k is None or top_k >= logits.shape[-1]:
        return logits
    kth = np.partition(logits, -top_k, axis=-1)[..., -top_k][..., None]
    return np.where(logits >= kth, logits, -np.inf)


def choose(logits: np.ndarray, rng: np.random.Generator, temperature: float = 1.0, top_k: Optional[int] = None,
           banned_ids: Sequence[int] = ()) -> np.ndarray:
    """Pick one token per row of `logits` (batch, vocab) -> int64 (batch,).

    temperature 0 is argmax (greedy); otherwise logits are divided by the temperature,
    restricted to the top k, and sampled with `rng` (a numpy Generator).
    `banned_ids` (e.g. padding) are never chosen.
    """
    logits = np.array(logits, dtype="float64")
    if logits.ndim == 1:
        logits = logits[None]
    if banned_ids:
        logits[:, list(banned_ids)] = -np.inf
    if temperature == 0:
        return logits.argmax(axis=-1).astype("int64")
    logits = filter_top_k(logits / temperature, top_k)
    probabilities = np.exp(log_softmax(logits))
    # Inverse-CDF sampling per row: one uniform draw per row keeps a seed's output reproducible.
    cumulative = np.cumsum(probabilities, axis=-1)
    draws = rng.random((logits.shape[0], 1)) * cumulative[:, -1:]
    picked = (cumulative < draws).sum(axis=-1)
    # Guard against round-off pushing past the last allowed token.
    picked = np.minimum(picked, logits.shape[-1] - 1)
    allowed = np.isfinite(logits[np.arange(len(picked)), picked])
    picked = np.where(allowed, picked, logits.argmax(axis=-1))
    return picked.astype("int64")


def generate(step: Callable[[np.ndarray], np.ndarray], first_logits: np.ndarray, length: int, *,
             temperature: float = 1.0, top_k: Optional[int] = None, seed: Optional[int] = None,
             stop_ids: Sequence[int] = (), banned_ids: Sequence[int] = ()) -> np.ndarray:
    """Decode up to `length` tokens.

    Args:
        step: callback int64 (batch,) -> float (batch, vocab), the logits after feeding those ids.
        first_logits: float (batch, vocab), the logits for the first generated position
            (e.g. after warming an RNN on a prompt).
        length: number of tokens to produce.
        temperature, top_k: see `choose`.
        seed: makes sampling reproducible (same seed, same step function -> same ids).
        stop_ids: decoding stops once every row has produced one of these (the stop id is kept).
        banned_ids: ids never produced (e.g. padding, out-of-vocabulary).

    Returns:
        int64 (batch, steps) with steps <= length.
    """
    check_options(temperature, top_k)
    rng = np.random.default_rng(seed)
    logits = np.asarray(first_logits)
    if logits.ndim == 1:
        logits = logits[None]
    finished = np.zeros(logits.shape[0], dtype=bool)
    chosen = []
    for position in range(length):
        ids = choose(logits, rng, temperature, top_k, banned_ids)
        chosen.append(ids)
        if stop_ids:
            finished |= np.isin(ids, list(stop_ids))
            if finished.all():
                break
        if position + 1 < length:
            logits = np.asarray(step(ids))
    if not chosen:
        return np.zeros((logits.shape[0], 0), dtype="int64")
    return np.stack(chosen, axis=1)


def check_beam_options(beam_width: int, length_penalty: float = 1.0) -> None:
    """Raise a UserError naming the setting when a beam-search option is out of range."""
    if int(beam_width) < 1:
        raise UserError(f"beam width {beam_width}: must be at least 1")
    if length_penalty is None or not np.isfinite(length_penalty) or length_penalty < 0:
        raise UserError(f"length penalty {length_penalty}: must be 0 (raw sum) or positive")


def normalized_score(total_log_probability: float, length: int, length_penalty: float = 1.0) -> float:
    """Length normalization: summed log-probability / length ** length_penalty (1.0 = mean per token).

    Without it a beam prefers short captions, since every extra token only lowers the sum.
    """
    return float(total_log_probability) / max(1, length) ** length_penalty


def beam_search(step: Callable[[np.ndarray, List[np.ndarray]], Tuple[np.ndarray, List[np.ndarray]]],
                initial_state: Iterable[np.ndarray], first_logits: np.ndarray, *, beam_width: int, max_length: int,
                end_id: int, length_penalty: float = 1.0,
                banned_ids: Iterable[int] = ()) -> List[List[Tuple[np.ndarray, float]]]:
    """Beam search with an end token, a maximum length and length-normalized ranking.

    Args:
        step: callback (token_ids int64 (rows,), state) -> (logits (rows, vocab), new state); `state` is a
            list of arrays whose first axis is the row. Rows are input-major: row i * beam_width + k.
        initial_state: list of arrays (batch, ...), the state that produced `first_logits`.
        first_logits: float (batch, vocab), the logits of the first generated position.
        beam_width: hypotheses kept per input (1 is greedy decoding).
        max_length: most tokens per hypothesis, the end token included.
        end_id: the token that finishes a hypothesis (kept as its last id).
        length_penalty: exponent of the length in the normalization (see `normalized_score`).
        banned_ids: ids never produced (padding, out of vocabulary, a start token).

    Alive beams compete on their summed log-probability, as in the usual formulation; a hypothesis
    that ends is scored by its normalized score, and an input stops once it has `beam_width` finished
    hypotheses (or at `max_length`, where the alive beams count as finished).

    Returns:
        a list with one entry per input: up to `beam_width` (ids int64 (steps,), normalized score)
        pairs, sorted by normalized score, best first.
    """
    check_beam_options(beam_width, length_penalty)
    if max_length < 1:
        raise UserError(f"maximum length {max_length}: must be at least 1")
    banned = list(banned_ids)

    def log_probabilities(logits):
        logits = np.array(logits, dtype="float64")
        if logits.ndim == 1:
            logits = logits[None]
        if banned:
            logits[:, banned] = -np.inf
        return log_softmax(logits)

    candidates = log_probabilities(first_logits)[:, None, :]  # (batch, beams, vocab), one beam at first
    batch, _, vocab = candidates.shape
    sequences = np.zeros((batch, 1, 0), dtype="int64")
    totals = np.zeros((batch, 1))
    state = list(initial_state)
    finished = [[] for _ in range(batch)]
    done = np.zeros(batch, dtype=bool)
    for position in range(max_length):
        beams = candidates.shape[1]
        scores = (totals[:, :, None] + candidates).reshape(batch, beams * vocab)
        next_sequences = np.zeros((batch, beam_width, position + 1), dtype="int64")
        next_totals = np.full((batch, beam_width), -np.inf)
        parents = np.zeros((batch, beam_width), dtype="int64")
        for row in range(batch):
            if done[row]:
                continue
            kept = 0
            # 2 * beam_width candidates always hold beam_width that do not end (at most beam_width end).
            for index in np.argsort(-scores[row], kind="stable")[: 2 * beam_width]:
                total = scores[row, index]
                if kept == beam_width or not np.isfinite(total):
                    break
                parent, token = divmod(int(index), vocab)
                ids = np.append(sequences[row, parent], token)
                if token == end_id:
                    finished[row].append((ids, normalized_score(total, len(ids), length_penalty)))
                else:
                    next_sequences[row, kept], next_totals[row, kept], parents[row, kept] = ids, total, parent
                    kept += 1
            if len(finished[row]) >= beam_width or position == max_length - 1:
                if position == max_length - 1:
                    finished[row].extend(
                        (next_sequences[row, k], normalized_score(next_totals[row, k], position + 1, length_penalty))
                        for k in range(kept)
                    )
                done[row] = True
        if done.all():
            break
        # Each kept beam continues from its parent's state.
        rows = (np.arange(batch)[:, None] * beams + parents).reshape(-1)
        state = [np.asarray(part)[rows] for part in state]
        logits, state = step(next_sequences[:, :, -1].reshape(-1), state)
        candidates = log_probabilities(logits).reshape(batch, beam_width, vocab)
        sequences, totals = next_sequences, next_totals
    return [sorted(row, key=lambda item: -item[1])[:beam_width] for row in finished]
