"""The speed suite's optional PyTorch peer: the sentiment model in PyTorch, packed and fixed-length, timed."""

import os

import numpy as np

from benchmarks.report import cell_table
from benchmarks.timing import count_tokens, interleaved, trainable_parameter_count, zoo_model
from zoo.data.pipeline import bucket_boundaries
from zoo.errors import UserError

INSTALL_COMMAND = "python -m pip install -r requirements-peer.txt"
PEERS = ("torch",)

# Bias vectors per direction and layer that PyTorch has beyond Keras. PyTorch's nn.RNN/nn.LSTM/nn.GRU
# always keep two biases per gate (b_ih and b_hh); Keras SimpleRNN and LSTM keep one, and Keras GRU with
# reset_after=True (the default, which the zoo keeps for cuDNN) keeps two, like PyTorch.
EXTRA_BIASES_PER_UNIT = {"simple_rnn": 1, "lstm": 4, "gru": 0}
TORCH_MODULES = {"simple_rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
# How the PyTorch model meets padding. "packed": pack_padded_sequence, so no pad step is computed (exact,
# like Keras masking), but PyTorch leaves oneDNN's fused kernel whenever a batch's rows differ in length.
# "fixed": every batch right-padded to its bucket's edge and run whole, no packing (the fused kernel for
# LSTM, every pad step computed), the mask applied in the pooling; a speed reference, see PeerClassifier.
VARIANTS = ("packed", "fixed")
POOLINGS = ("last", "max", "mean")


def import_torch():
    """The torch module, imported only when a peer run asks for it (it is not a requirement of the zoo)."""
    try:
        import torch
    except ImportError as error:
        raise UserError(f"--peer torch needs PyTorch, which the zoo does not install: run "
                        f"`{INSTALL_COMMAND}` ({error})") from None
    return torch


def extra_torch_parameters(model_config):
    """How many more parameters the PyTorch model has than the Keras one (the second bias vectors)."""
    directions = 2 if model_config.bidirectional else 1
    return EXTRA_BIASES_PER_UNIT[model_config.cell] * model_config.units * directions * model_config.num_layers


def build_torch_model(model_config, vocab_size, seed, variant="packed"):
    """The zoo's sentiment classifier (`tasks.classification.model.build_classifier`) as a torch.nn.Module.

    Input: int64 ids (batch, time), 0-padded on the right, and int64 lengths (batch,) on the CPU.
    Output: (batch, 1) float32 P(positive).
    Layout, as in Keras: embedding (pad id 0) -> input dropout -> recurrent stack -> pooling over the
    real steps (model_config.pooling: "last" = the state at each row's last real step per direction,
    forward then backward; "max"/"mean" = over the unpadded steps' outputs) -> dropout -> Dense(1) ->
    sigmoid. Initializers follow Keras' defaults so both start alike. `variant` is one of VARIANTS;
    the module's `variant` attribute may be switched later (the parameters are the same).
    """
    if variant not in VARIANTS:
        raise UserError(f"peer variant {variant!r}: unknown; valid: {', '.join(VARIANTS)}")
    if model_config.pooling not in POOLINGS:
        raise UserError(f"model.pooling={model_config.pooling!r}: the PyTorch peer has {', '.join(POOLINGS)}")
    torch = import_torch()
    torch.manual_seed(seed)
    module = _module_class(torch)(model_config, vocab_size)
    module.variant = variant
    return module


def bucket_edge_width(length, max_length):
    """The width the zoo's pipeline pads a batch to with `pad_to_edges` (zoo.data.pipeline.batch_by_length):
    its bucket's upper edge, 15, 31, 63, ... or max_length for the last bucket."""
    for edge in bucket_boundaries(max_length) + [max_length + 1]:
        if length < edge:
            return edge - 1
    raise ValueError(f"a batch of {length} steps is longer than max_length {max_length}")


def pad_to_bucket_edge(ids, max_length):
    """(batch, time) ids right-padded with 0 to `bucket_edge_width(time, max_length)` steps."""
    width = bucket_edge_width(ids.shape[1], max_length)
    return np.pad(ids, [(0, 0), (0, width - ids.shape[1])])


_CLASSES = {}


def _module_class(torch):
    """Define the nn.Module subclass once, after torch was imported (a module-level class would import it)."""
    if "model" in _CLASSES:
        return _CLASSES["model"]
    nn = torch.nn

    class PeerClassifier(nn.Module):
        def __init__(self, model_config, vocab_size):
            super().__init__()
            self.cell = model_config.cell
            self.units = model_config.units
            self.pooling = model_config.pooling
            self.variant = "packed"
            self.dropout_rate = model_config.dropout_rate
            self.directions = 2 if model_config.bidirectional else 1
            # padding_idx=0: the pad row is zero and never updated (the packed variant skips pads anyway;
            # the fixed variant feeds these zero vectors at its pad steps).
            self.embedding = nn.Embedding(vocab_size, model_config.embedding_dim, padding_idx=0)
            recurrent_class = getattr(nn, TORCH_MODULES[self.cell])
            extra = {"nonlinearity": "tanh"} if self.cell == "simple_rnn" else {}
            self.recurrent = recurrent_class(
                model_config.embedding_dim, model_config.units, num_layers=model_config.num_layers,
                batch_first=True, bidirectional=model_config.bidirectional,
                # Keras drops each layer's *inputs*; PyTorch's `dropout` drops the inputs of layers 2..n,
                # and layer 1's input dropout is applied by hand in forward().
                dropout=model_config.dropout_rate if model_config.num_layers > 1 else 0.0, **extra,
            )
            self.head_dropout = nn.Dropout(model_config.dropout_rate)
            self.head = nn.Linear(model_config.units * self.directions, 1)
            self._keras_initialization(model_config.units)

        def _keras_initialization(self, units):
            # Keras defaults: Embedding uniform(-0.05, 0.05); kernels glorot_uniform; recurrent kernels
            # orthogonal; biases zero, except LSTM's forget gate at 1 (unit_forget_bias).
            with torch.no_grad():
                nn.init.uniform_(self.embedding.weight, -0.05, 0.05)
                self.embedding.weight[0].zero_()
                gates = {"simple_rnn": 1, "lstm": 4, "gru": 3}[self.cell]
                for name, weight in self.recurrent.named_parameters():
                    if name.startswith("weight_ih"):
                        nn.init.xavier_uniform_(weight)  # (gates*units, in): fans as Keras' (in, gates*units)
                    elif name.startswith("weight_hh"):
                        # Keras draws one orthogonal (units, gates*units) matrix; transposed here.
                        weight.copy_(nn.init.orthogonal_(torch.empty(units, gates * units)).T)
                    else:
                        weight.zero_()
                        if self.cell == "lstm" and name.startswith("bias_ih"):
                            weight[units:2 * units] = 1.0  # PyTorch gate order i, f, g, o
                nn.init.xavier_uniform_(self.head.weight)
                nn.init.zeros_(self.head.bias)

        def forward(self, ids, lengths):
            """ids (batch, time) int64, lengths (batch,) int64 on CPU -> (batch, 1) probabilities."""
            embedded = self.embedding(ids)  # (batch, time, embedding_dim)
            if self.training and self.dropout_rate > 0:
                # Keras' RNN `dropout` uses one mask per sequence, the same at every step.
                keep = 1.0 - self.dropout_rate
                mask = torch.bernoulli(torch.full((embedded.shape[0], 1, embedded.shape[2]), keep)) / keep
                embedded = embedded * mask
            if self.variant == "packed":
                # Packing skips the padding, as Keras masking does: the forward state stops at the last
                # real step and the backward direction starts there.
                packed = nn.utils.rnn.pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
                outputs, state = self.recurrent(packed)
                if self.pooling == "last":
                    hidden = state[0] if self.cell == "lstm" else state  # (layers * directions, batch, units)
                    # The last layer's directions, forward then backward, like Bidirectional(merge_mode="concat").
                    features = torch.cat(list(hidden[-self.directions:]), dim=1)
                else:
                    outputs, _ = nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True,
                                                                 total_length=ids.shape[1])
                    features = self._masked_pooling(outputs, lengths)
            else:
                # Every step of the padded batch is computed. Right padding keeps the forward direction
                # exact at the real steps; the backward direction starts at the last *padded* step, so at
                # the real steps it has first read the pads (zero embeddings: only the biases and the
                # recurrent weights move its state), and differs from the packed model on padded rows.
                outputs, _ = self.recurrent(embedded)  # (batch, time, units * directions)
                if self.pooling == "last":
                    rows = torch.arange(ids.shape[0])
                    forward = outputs[rows, lengths - 1, :self.units]  # the last real step, not the last pad
                    # The backward direction ends at step 0, the first real step of a right-padded row.
                    backward = [outputs[:, 0, self.units:]] if self.directions == 2 else []
                    features = torch.cat([forward, *backward], dim=1)
                else:
                    features = self._masked_pooling(outputs, lengths)
            return torch.sigmoid(self.head(self.head_dropout(features)))  # features (batch, units * directions)

        def _masked_pooling(self, outputs, lengths):
            """outputs (batch, time, features) -> (batch, features) over the steps before each row's length,
            as MaskedMaxOverTime / MaskedMeanOverTime (an empty row pools to zeros)."""
            real = (torch.arange(outputs.shape[1])[None, :] < lengths[:, None]).unsqueeze(-1)  # (batch, time, 1)
            if self.pooling == "mean":
                return (outputs * real).sum(dim=1) / lengths.clamp(min=1)[:, None].to(outputs.dtype)
            lowest = torch.finfo(outputs.dtype).min
            pooled = outputs.masked_fill(~real, lowest).amax(dim=1)
            return torch.where(real.any(dim=1), pooled, torch.zeros_like(pooled))

    _CLASSES["model"] = PeerClassifier
    return PeerClassifier


def parameter_count(module):
    return int(sum(parameter.numel() for parameter in module.parameters() if parameter.requires_grad))


class TorchTrainer:
    """Adam + binary cross-entropy + global-norm clipping, one step per call, like Keras' train_on_batch."""

    def __init__(self, module, learning_rate, clipnorm):
        torch = import_torch()
        self.torch, self.module, self.clipnorm = torch, module, clipnorm
        # Keras' Adam epsilon is 1e-7 (PyTorch's default is 1e-8); betas are the same.
        self.optimizer = torch.optim.Adam(module.parameters(), lr=learning_rate, eps=1e-7)
        self.loss = torch.nn.BCELoss()  # on the sigmoid output, as Keras' binary_crossentropy

    def train_on_batch(self, ids, targets):
        """ids (batch, time) int numpy, 0-padded; targets (batch,) 0/1 -> (loss, accuracy) floats."""
        torch = self.torch
        self.module.train()
        ids = torch.from_numpy(np.asarray(ids, dtype=np.int64))
        lengths = (ids != 0).sum(dim=1)  # the pipeline drops empty texts, so every length is >= 1
        targets = torch.from_numpy(np.asarray(targets, dtype=np.float32).reshape(-1, 1))
        self.optimizer.zero_grad(set_to_none=True)
        probabilities = self.module(ids, lengths)
        loss = self.loss(probabilities, targets)
        loss.backward()
        if self.clipnorm:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.clipnorm)
        self.optimizer.step()
        accuracy = ((probabilities.detach() > 0.5).float() == targets).float().mean()
        return float(loss.item()), float(accuracy.item())  # .item() waits for the step: timing is honest


def _fused_batches(torch, step, batches, layer_calls_per_batch):
    """Batches of one (untimed, profiled) pass that PyTorch ran on oneDNN's fused RNN layer.

    PyTorch picks its CPU kernel per call: oneDNN's whole-sequence layer (aten::mkldnn_rnn_layer) or
    its generic step-by-step loop; the profiler shows which, so the report says rather than guesses.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for ids, targets in batches:
            step(ids, targets)
    calls = sum(event.count for event in profiler.key_averages() if event.key == "aten::mkldnn_rnn_layer")
    return calls // layer_calls_per_batch


def _spread(values):
    """{"median", "min", "max"} of a list of per-round figures."""
    return {"median": float(np.median(values)), "min": float(np.min(values)), "max": float(np.max(values))}


def _fixed_vs_packed_difference(torch, module, batches):
    """The largest |P(fixed) - P(packed)| of one model (eval mode, same weights) over `batches` of
    (ids, the same ids padded to the bucket edge): 0 up to rounding for unidirectional models; for
    bidirectional ones, what the backward direction's reading of the pads changes. With Keras' initial
    weights it is exactly 0 (zero biases and zero pad embeddings keep a zero state at zero), so it is
    measured on a trained model."""
    module.eval()
    largest = 0.0
    with torch.no_grad():
        for ids, fixed_ids in batches:
            ids, fixed_ids = torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(fixed_ids.astype(np.int64))
            lengths = (ids != 0).sum(dim=1)
            module.variant = "packed"
            packed = module(ids, lengths)
            module.variant = "fixed"
            largest = max(largest, float((module(fixed_ids, lengths) - packed).abs().max()))
    return largest


def compare(task, config, prepared, rounds, peer="torch"):
    """The zoo model vs the PyTorch model in both VARIANTS on the same examples, passes interleaved.

    Every model first makes one untimed pass (Keras traces a graph per bucket shape, PyTorch warms its
    allocator and oneDNN's primitive cache), then `rounds` timed passes each, the order reversed every
    round, so machine load hits all of them alike. The zoo and "torch_packed" train on the pipeline's
    batches (each padded to its longest row); "torch_fixed" on the same batches padded to their bucket's
    edge. Per runner: the median and min-max of the per-round examples/s; the headline ratio is the zoo
    over the faster PyTorch variant (by median). PyTorch gets the same thread budget as TensorFlow.
    """
    if peer not in PEERS:
        raise UserError(f"--peer {peer}: unknown; valid: {', '.join(PEERS)}")
    torch = import_torch()
    load_at_start = os.getloadavg()[0]

    # The same thread budget as TensorFlow, whose intra-op pool defaults to one thread per core.
    torch.set_num_threads(os.cpu_count() or 1)
    from zoo.data.pipeline import first_epoch

    batches = [(np.asarray(x), np.asarray(y)) for x, y in first_epoch(prepared.train)]
    max_length = config.data.max_length
    # Padded once, before timing; looked up by the batch object the timing loop passes in.
    fixed_ids = {id(ids): pad_to_bucket_edge(ids, max_length) for ids, _ in batches}
    zoo = zoo_model(task, config, prepared.sizes)
    trainers = {}
    for variant in VARIANTS:
        module = build_torch_model(config.model, prepared.sizes["vocab_size"], config.train.seed, variant)
        trainers[variant] = TorchTrainer(module, config.train.learning_rate, config.train.clipnorm)
    runners = {"zoo": lambda ids, targets: zoo.train_on_batch(ids, targets),
               "torch_packed": trainers["packed"].train_on_batch,
               "torch_fixed": lambda ids, targets: trainers["fixed"].train_on_batch(fixed_ids[id(ids)], targets)}
    zoo_parameters, torch_parameters = trainable_parameter_count(zoo), parameter_count(trainers["packed"].module)
    extra = extra_torch_parameters(config.model)
    if torch_parameters != zoo_parameters + extra:
        raise AssertionError(f"architectures differ: torch {torch_parameters} != zoo {zoo_parameters} + {extra} "
                             f"extra biases")
    first, _, rounds_seconds, losses = interleaved(runners, batches, rounds)
    examples = sum(len(targets) for _, targets in batches)
    tokens = sum(count_tokens(ids) for ids, _ in batches)
    throughput = {name: [examples / seconds[name] for seconds in rounds_seconds] for name in runners}
    medians = {name: float(np.median(values)) for name, values in throughput.items()}
    best = max(("torch_packed", "torch_fixed"), key=medians.get)
    directions = 2 if config.model.bidirectional else 1
    layer_calls = directions * config.model.num_layers
    result = {
        "cell": config.model.cell, "pooling": config.model.pooling, "peer": f"torch {torch.__version__}",
        "batches": len(batches), "rounds": rounds, "examples_per_pass": examples, "real_tokens_per_pass": tokens,
        "padded_tokens_per_pass": int(sum(np.prod(ids.shape) for ids, _ in batches)),
        "fixed_padded_tokens_per_pass": int(sum(np.prod(padded.shape) for padded in fixed_ids.values())),
        "zoo_parameters": zoo_parameters, "torch_parameters": torch_parameters,
        "torch_extra_bias_parameters": extra,
        "threads": {"cpu_count": os.cpu_count(), "torch_intra_op": torch.get_num_threads(),
                    "torch_inter_op": torch.get_num_interop_threads(),
                    "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "(unset)")},
        "torch_mkldnn_available": bool(torch.backends.mkldnn.is_available()),
        "torch_packed_batches_on_onednn_kernel": _fused_batches(torch, runners["torch_packed"], batches, layer_calls),
        "torch_fixed_batches_on_onednn_kernel": _fused_batches(torch, runners["torch_fixed"], batches, layer_calls),
        # After all the passes; the model is left in eval mode, the timing is over.
        "fixed_vs_packed_max_probability_difference": _fixed_vs_packed_difference(
            torch, trainers["packed"].module, [(ids, fixed_ids[id(ids)]) for ids, _ in batches]),
        "torch_best_variant": best.removeprefix("torch_"),
    }
    for name in runners:
        spread = _spread(throughput[name])
        result[f"{name}_examples_per_second"] = spread  # median, min, max over the rounds
        result[f"{name}_tokens_per_second_median"] = spread["median"] * tokens / examples
        result[f"{name}_first_pass_seconds"] = first[name][0]
        result[f"{name}_loss_first_pass"] = first[name][1]
        result[f"{name}_loss_last_pass"] = losses[name]
    # Above 1: the zoo is faster; below 1: PyTorch is. Ratios of medians, and the spread of the
    # per-round ratios (the zoo and PyTorch passes of one round ran back to back).
    for name in ("torch_packed", "torch_fixed"):
        result[f"ratio_zoo_over_{name}"] = medians["zoo"] / medians[name]
    result["ratio_zoo_over_torch_best"] = medians["zoo"] / medians[best]
    result["per_round_ratios_zoo_over_torch_best"] = [
        zoo / torch_best for zoo, torch_best in zip(throughput["zoo"], throughput[best])]
    result["load_average_1m"] = {"start": load_at_start, "end": os.getloadavg()[0]}
    return result


REPORT_FIELDS = (
    "cell", "pooling", "peer", "batches", "rounds", "examples_per_pass", "real_tokens_per_pass",
    "padded_tokens_per_pass", "fixed_padded_tokens_per_pass", "zoo_parameters", "torch_parameters",
    "torch_extra_bias_parameters", "threads", "torch_packed_batches_on_onednn_kernel",
    "torch_fixed_batches_on_onednn_kernel", "fixed_vs_packed_max_probability_difference", "torch_best_variant",
    "zoo_examples_per_second", "torch_packed_examples_per_second", "torch_fixed_examples_per_second",
    "zoo_tokens_per_second_median", "torch_packed_tokens_per_second_median", "torch_fixed_tokens_per_second_median",
    "ratio_zoo_over_torch_packed", "ratio_zoo_over_torch_fixed", "ratio_zoo_over_torch_best",
    "per_round_ratios_zoo_over_torch_best", "zoo_loss_last_pass", "torch_packed_loss_last_pass",
    "torch_fixed_loss_last_pass", "load_average_1m",
)


def _median_range(spread, digits=1):
    return f"{spread['median']:,.{digits}f} ({spread['min']:,.{digits}f}-{spread['max']:,.{digits}f})"


def markdown(peer_report):
    """The peer table: one row per cell of `compare` results (an error row when a cell failed)."""
    items = [item for item in peer_report.values() if "error" not in item]
    settings = ""
    if items:
        threads = items[0]["threads"]
        loads = [value for item in items for value in item["load_average_1m"].values()]
        settings = (f"OMP_WAIT_POLICY={threads['OMP_WAIT_POLICY']}, torch threads {threads['torch_intra_op']} "
                    f"intra-op / {threads['torch_inter_op']} inter-op, {items[0]['rounds']} rounds, "
                    f"1-minute load average {min(loads):.1f}-{max(loads):.1f}; ")
    lines = cell_table(
        f"PyTorch peer, packed and fixed-length ({settings}same examples, passes interleaved after a warm-up "
        "pass; examples/s as median (min-max) over the rounds; ratio above 1 = zoo faster; "
        "best = the faster PyTorch variant by median):",
        ["zoo ex/s:", "torch packed ex/s:", "torch fixed ex/s:", "best", "ratio zoo/best (rounds):",
         "ratio zoo/packed:", "torch batches on oneDNN packed / fixed:", "max abs P fixed-packed:"],
        peer_report,
        lambda item: [_median_range(item["zoo_examples_per_second"]),
                      _median_range(item["torch_packed_examples_per_second"]),
                      _median_range(item["torch_fixed_examples_per_second"]), item["torch_best_variant"],
                      f"{item['ratio_zoo_over_torch_best']:.2f} "
                      f"({min(item['per_round_ratios_zoo_over_torch_best']):.2f}-"
                      f"{max(item['per_round_ratios_zoo_over_torch_best']):.2f})",
                      f"{item['ratio_zoo_over_torch_packed']:.2f}",
                      f"{item['torch_packed_batches_on_onednn_kernel']} / "
                      f"{item['torch_fixed_batches_on_onednn_kernel']} of {item['batches']}",
                      f"{item['fixed_vs_packed_max_probability_difference']:.2g}"])
    return "\n".join(lines)
