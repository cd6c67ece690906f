"""The optional PyTorch peer of the speed suite: the sentiment model rebuilt in PyTorch, timed against the zoo's."""

import os

import numpy as np

from benchmarks.report import cell_table
from benchmarks.timing import count_tokens, interleaved, trainable_parameter_count, zoo_model
from zoo.errors import UserError

INSTALL_COMMAND = "python -m pip install -r requirements-peer.txt"
PEERS = ("torch",)

# Bias vectors per direction and layer that PyTorch has beyond Keras. PyTorch's nn.RNN/nn.LSTM/nn.GRU
# always keep two biases per gate (b_ih and b_hh); Keras SimpleRNN and LSTM keep one, and Keras GRU with
# reset_after=True (the default, which the zoo keeps for cuDNN) keeps two, like PyTorch.
EXTRA_BIASES_PER_UNIT = {"simple_rnn": 1, "lstm": 4, "gru": 0}
TORCH_MODULES = {"simple_rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


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


def build_torch_model(model_config, vocab_size, seed):
    """The sentiment classifier of `benchmarks.speed.plain_keras_model` as a torch.nn.Module.

    Input: int64 ids (batch, time), 0-padded on the right, and int64 lengths (batch,) on the CPU.
    Output: (batch, 1) float32 P(positive).
    Layout, as in Keras: embedding (pad id 0) -> input dropout -> recurrent stack (last layer returns
    the state at each row's last real step, per direction, concatenated forward then backward)
    -> dropout -> Dense(1) -> sigmoid. Initializers follow Keras' defaults so both start alike.
    """
    torch = import_torch()
    torch.manual_seed(seed)
    return _module_class(torch)(model_config, vocab_size)


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
            self.dropout_rate = model_config.dropout_rate
            self.directions = 2 if model_config.bidirectional else 1
            # padding_idx=0: the pad row is zero and never updated; packing skips it anyway.
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
            # Packing skips the padding, as Keras masking does: the forward state stops at the last
            # real step and the backward direction starts there.
            packed = nn.utils.rnn.pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
            _, state = self.recurrent(packed)
            hidden = state[0] if self.cell == "lstm" else state  # (layers * directions, batch, units)
            # The last layer's directions, forward then backward, like Bidirectional(merge_mode="concat").
            features = torch.cat(list(hidden[-self.directions:]), dim=1)  # (batch, units * directions)
            return torch.sigmoid(self.head(self.head_dropout(features)))

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


def _one_thread(torch, step):
    """`step` run with a single PyTorch intra-op thread, the budget restored afterwards."""
    def run(ids, targets):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return step(ids, targets)
        finally:
            torch.set_num_threads(threads)
    return run


def compare(task, config, prepared, rounds, peer="torch"):
    """The zoo model vs the PyTorch model on the same batches, passes interleaved; throughput ratios.

    Every model first makes one untimed pass (Keras traces a graph per bucket shape, PyTorch warms its
    allocator), then `rounds` timed passes each, the order reversed every round, so machine load hits
    all of them. "torch" has the same thread budget as TensorFlow (one per core); "torch_1_thread" is a
    second PyTorch model of the same seed limited to one thread, a diagnostic for machines where other
    processes occupy the cores (PyTorch's OpenMP threads spin-wait for each other at every step).
    """
    if peer not in PEERS:
        raise UserError(f"--peer {peer}: unknown; valid: {', '.join(PEERS)}")
    torch = import_torch()

    # The same thread budget as TensorFlow, whose intra-op pool defaults to one thread per core.
    torch.set_num_threads(os.cpu_count() or 1)
    from zoo.data.pipeline import first_epoch

    batches = [(np.asarray(x), np.asarray(y)) for x, y in first_epoch(prepared.train)]
    zoo = zoo_model(task, config, prepared.sizes)
    trainers = {}
    for name in ("torch", "torch_1_thread"):
        module = build_torch_model(config.model, prepared.sizes["vocab_size"], config.train.seed)
        trainers[name] = TorchTrainer(module, config.train.learning_rate, config.train.clipnorm)
    runners = {"zoo": lambda ids, targets: zoo.train_on_batch(ids, targets),
               "torch": trainers["torch"].train_on_batch,
               "torch_1_thread": _one_thread(torch, trainers["torch_1_thread"].train_on_batch)}
    zoo_parameters, torch_parameters = trainable_parameter_count(zoo), parameter_count(trainers["torch"].module)
    extra = extra_torch_parameters(config.model)
    if torch_parameters != zoo_parameters + extra:
        raise AssertionError(f"architectures differ: torch {torch_parameters} != zoo {zoo_parameters} + {extra} "
                             f"extra biases")
    names = tuple(runners)
    first, totals, rounds_seconds, losses = interleaved(runners, batches, rounds)
    per_round = [seconds["torch"] / seconds["zoo"] for seconds in rounds_seconds]  # = zoo / torch throughput
    directions = 2 if config.model.bidirectional else 1
    fused = _fused_batches(torch, runners["torch"], batches, directions * config.model.num_layers)
    examples = sum(len(targets) for _, targets in batches) * rounds
    tokens = sum(count_tokens(ids) for ids, _ in batches) * rounds
    result = {
        "cell": config.model.cell, "peer": f"torch {torch.__version__}", "batches": len(batches), "rounds": rounds,
        "examples_per_pass": examples // rounds, "real_tokens_per_pass": tokens // rounds,
        "padded_tokens_per_pass": int(sum(np.prod(ids.shape) for ids, _ in batches)),
        "zoo_parameters": zoo_parameters, "torch_parameters": torch_parameters,
        "torch_extra_bias_parameters": extra,
        "threads": {"cpu_count": os.cpu_count(), "torch_intra_op": torch.get_num_threads(),
                    "torch_inter_op": torch.get_num_interop_threads(),
                    "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "(unset)")},
        "torch_mkldnn_available": bool(torch.backends.mkldnn.is_available()),
        "torch_batches_on_onednn_kernel": fused,
    }
    for name in names:
        result[f"{name}_first_pass_seconds"] = first[name][0]
        result[f"{name}_seconds"] = totals[name]
        result[f"{name}_examples_per_second"] = examples / totals[name]
        result[f"{name}_tokens_per_second"] = tokens / totals[name]
        result[f"{name}_loss_first_pass"] = first[name][1]
        result[f"{name}_loss_last_pass"] = losses[name]
    # Above 1: the zoo is faster; below 1: PyTorch is.
    result["ratio_zoo_over_torch_throughput"] = result["zoo_examples_per_second"] / result["torch_examples_per_second"]
    result["ratio_zoo_over_torch_1_thread_throughput"] = (
        result["zoo_examples_per_second"] / result["torch_1_thread_examples_per_second"])
    result["per_round_ratios"] = per_round
    return result


REPORT_FIELDS = (
    "cell", "peer", "batches", "rounds", "examples_per_pass", "real_tokens_per_pass", "zoo_parameters",
    "torch_parameters", "torch_extra_bias_parameters", "zoo_seconds", "torch_seconds", "zoo_examples_per_second",
    "torch_examples_per_second", "zoo_tokens_per_second", "torch_tokens_per_second",
    "ratio_zoo_over_torch_throughput", "per_round_ratios", "zoo_first_pass_seconds", "torch_first_pass_seconds",
    "torch_batches_on_onednn_kernel", "threads", "torch_1_thread_examples_per_second",
    "torch_1_thread_tokens_per_second", "ratio_zoo_over_torch_1_thread_throughput",
)


def markdown(peer_report):
    """The peer table: one row per cell of `compare` results (an error row when a cell failed)."""

    lines = cell_table(
        "PyTorch peer (same architecture and batches, passes interleaved after a warm-up pass; "
        "ratio above 1 = zoo faster):",
        ["zoo ex/s:", "torch ex/s:", "zoo tok/s:", "torch tok/s:", "ratio zoo/torch:", "params zoo / torch:",
         "torch batches on oneDNN:", "torch 1-thread ex/s:", "ratio zoo/torch 1-thread:"],
        peer_report,
        lambda item: [f"{item['zoo_examples_per_second']:,.1f}", f"{item['torch_examples_per_second']:,.1f}",
                      f"{item['zoo_tokens_per_second']:,.0f}", f"{item['torch_tokens_per_second']:,.0f}",
                      f"{item['ratio_zoo_over_torch_throughput']:.3f}",
                      f"{item['zoo_parameters']:,} / {item['torch_parameters']:,}",
                      f"{item['torch_batches_on_onednn_kernel']} of {item['batches']}",
                      f"{item['torch_1_thread_examples_per_second']:,.1f}",
                      f"{item['ratio_zoo_over_torch_1_thread_throughput']:.3f}"])
    return "\n".join(lines)
