"""benchmarks/peer.py: the PyTorch peer of the speed suite (torch is optional: most tests skip without it)."""

import dataclasses
import json
import sys

import numpy as np
import pytest

from benchmarks import peer
from zoo.errors import UserError


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _config(cell, bidirectional=True, num_layers=1, units=8, embedding_dim=6):
    from tasks.classification.sentiment import Config

    config = Config()
    model = dataclasses.replace(config.model, cell=cell, bidirectional=bidirectional, num_layers=num_layers,
                                units=units, embedding_dim=embedding_dim, pooling="last")
    return dataclasses.replace(config, model=model)


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_forward_shape_and_padding_is_skipped(torch, cell):
    module = peer.build_torch_model(_config(cell).model, 30, seed=1)
    module.eval()
    ids = torch.tensor([[3, 4, 5, 0, 0], [6, 7, 8, 9, 2], [5, 0, 0, 0, 0]])
    lengths = (ids != 0).sum(dim=1)
    probabilities = module(ids, lengths)
    assert probabilities.shape == (3, 1)
    assert bool(((probabilities > 0) & (probabilities < 1)).all())
    # Extra padding changes nothing (packing skips it, as Keras masking does); the rows are independent.
    padded = torch.cat([ids, torch.zeros(3, 4, dtype=ids.dtype)], dim=1)
    torch.testing.assert_close(module(padded, lengths), probabilities)
    torch.testing.assert_close(module(ids[2:], lengths[2:]), probabilities[2:])


@pytest.mark.parametrize("cell, extra_per_unit", [("simple_rnn", 1), ("lstm", 4), ("gru", 0)])
@pytest.mark.parametrize("bidirectional, num_layers", [(True, 1), (False, 2)])
def test_parameter_counts_differ_only_by_the_second_bias(torch, cell, extra_per_unit, bidirectional, num_layers):
    from benchmarks import speed

    config = _config(cell, bidirectional, num_layers)
    keras_model = speed.plain_keras_model(config, {"vocab_size": 40})
    module = peer.build_torch_model(config.model, 40, seed=1)
    directions = 2 if bidirectional else 1
    # PyTorch keeps b_ih and b_hh per gate; Keras SimpleRNN/LSTM one bias, Keras GRU (reset_after) two.
    assert peer.parameter_count(module) == keras_model.count_params() + extra_per_unit * 8 * directions * num_layers
    assert peer.extra_torch_parameters(config.model) == extra_per_unit * 8 * directions * num_layers


def test_training_steps_lower_the_loss_on_real_imdb(torch, data_env):
    from benchmarks import speed

    task, config, prepared = speed.sentiment_setup("gru", 32, 40)
    ids, targets = next(iter(prepared.train))
    ids, targets = np.asarray(ids), np.asarray(targets)
    assert ids.shape[0] >= 8 and (ids != 0).any()
    module = peer.build_torch_model(config.model, prepared.sizes["vocab_size"], config.train.seed)
    trainer = peer.TorchTrainer(module, learning_rate=0.01, clipnorm=config.train.clipnorm)
    # One thread: on a loaded 2-core machine PyTorch's spinning OpenMP threads make tiny steps ~15x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def eval_loss():
        module.eval()
        with torch.no_grad():
            ids_tensor = torch.from_numpy(ids.astype(np.int64))
            probabilities = module(ids_tensor, (ids_tensor != 0).sum(dim=1))
        return float(trainer.loss(probabilities, torch.from_numpy(targets.astype(np.float32).reshape(-1, 1))))

    before = eval_loss()
    for _ in range(15):
        loss, accuracy = trainer.train_on_batch(ids, targets)
        assert np.isfinite(loss) and 0.0 <= accuracy <= 1.0
    after = eval_loss()
    torch.set_num_threads(threads)
    assert after < before - 0.05


@pytest.mark.slow  # ~35 s at load ~6: two Keras models traced, 3 models x 5 passes
def test_peer_report_has_every_field_for_every_cell(torch, data_env, tmp_path, monkeypatch):
    from benchmarks import speed

    # compare() gives PyTorch os.cpu_count() threads; one keeps this test short on a loaded machine.
    monkeypatch.setattr(peer.os, "cpu_count", lambda: 1)
    cells = ["simple_rnn", "gru"]
    text = speed.run(cells, "quick", str(tmp_path), examples=16, progress=lambda message: None,
                     parts=("peer",), peer="torch")
    report = json.loads((tmp_path / "speed.json").read_text())
    # Only the part that ran is in the report.
    assert "overhead" not in report and "xla" not in report and "cudnn" not in report
    assert sorted(report["peer"]) == sorted(cells)
    for cell in cells:
        item = report["peer"][cell]
        assert "error" not in item, item
        missing = [field for field in peer.REPORT_FIELDS if field not in item]
        assert not missing, (cell, missing)
        assert item["cell"] == cell
        assert item["torch_parameters"] == item["zoo_parameters"] + item["torch_extra_bias_parameters"]
        assert item["zoo_examples_per_second"] > 0 and item["torch_examples_per_second"] > 0
        assert item["ratio_zoo_over_torch_throughput"] == pytest.approx(
            item["zoo_examples_per_second"] / item["torch_examples_per_second"])
        assert item["threads"]["torch_intra_op"] == 1
        assert 0 <= item["torch_batches_on_onednn_kernel"] <= item["batches"]
        assert item["zoo_tokens_per_second"] / item["zoo_examples_per_second"] == pytest.approx(
            item["real_tokens_per_pass"] / item["examples_per_pass"])
        assert len(item["per_round_ratios"]) == item["rounds"] == speed.SPEED_BUDGETS["quick"]["rounds"]
        assert f"| {cell} | " in text
    assert "ratio zoo/torch" in (tmp_path / "speed.md").read_text()


def test_missing_torch_is_a_user_error_naming_the_install_command(monkeypatch):
    import benchmark
    from benchmarks import speed  # noqa: F401 -- Keras/SciPy first: SciPy reads sys.modules["torch"] when imported

    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(UserError, match="pip install -r requirements-peer.txt"):
        peer.import_torch()

    # Reported before any suite runs (no data needed).
    with pytest.raises(UserError, match="requirements-peer.txt"):
        benchmark.main(["--suite", "speed", "--peer", "torch", "--out", "/nonexistent-never-written"])


def test_peer_flags_belong_to_the_speed_suite():
    import benchmark

    with pytest.raises(UserError, match="--suite speed"):
        benchmark.main(["--suite", "cells", "--peer", "torch"])
    with pytest.raises(UserError, match="--peer torch"):
        benchmark.main(["--suite", "speed", "--speed-parts", "peer", "--out", "/nonexistent-never-written"])
