"""Autoregressive decoding: greedy, temperature and top-k sampling over any step function.

The decoder knows nothing about models. A caller supplies the logits for the first
position and a `step` callback that, given the token ids just chosen, advances its own
state (an RNN's hidden state, a caption decoder's context, ...) and returns the next logits:

    step(token_ids: int (batch,)) -> logits: float (batch, vocab)

    ids = decoding.generate(step, first_logits, length=50, temperature=0.8, top_k=40, seed=1)
    # ids: int64 (batch, length)

`temperature=0` is greedy decoding; `top_k` keeps only the k most likely tokens before sampling.
"""

import numpy as np

from zoo.errors import UserError


def check_options(temperature=1.0, top_k=None):
    """Raise a UserError naming the flag when a decoding option is out of range."""
    if temperature is None or not np.isfinite(temperature) or temperature < 0:
        raise UserError(f"--temperature {temperature}: must be 0 (greedy) or positive")
    if top_k is not None and int(top_k) < 1:
        raise UserError(f"--top-k {top_k}: must be at least 1")


def log_softmax(logits):
    """Numerically stable log-softmax over the last axis of a float array."""
    logits = np.asarray(logits, dtype="float64")
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def filter_top_k(logits, top_k):
    """Set every logit outside the `top_k` largest of each row to -inf; (batch, vocab) -> same shape.

    Ties at the k-th value are all kept, so no row ever ends up with fewer than k candidates.
    """
    logits = np.asarray(logits, dtype="float64")
    if top_k is None or top_k >= logits.shape[-1]:
        return logits
    kth = np.partition(logits, -top_k, axis=-1)[..., -top_k][..., None]
    return np.where(logits >= kth, logits, -np.inf)


def choose(logits, rng, temperature=1.0, top_k=None, banned_ids=()):
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


def generate(step, first_logits, length, *, temperature=1.0, top_k=None, seed=None, stop_ids=(), banned_ids=()):
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
