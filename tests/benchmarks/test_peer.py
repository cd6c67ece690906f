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
    """torch at one intra-op thread: on a loaded 2-core machine its spinning OpenMP threads make the
    tiny models of these tests many times slower."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)


def _config(cell, bidirectional=True, num_layers=1, units=8, embedding_dim=6, pooling="last"):
    from tasks.classification.sentiment import Config

    config = Config()
    model = dataclasses.replace(config.model, cell=cell, bidirectional=bidirectional, num_layers=num_layers,
                                units=units, embedding_dim=embedding_dim, pooling=pooling)
    return dataclasses.replace(config, model=model)


def _trained_looking_model(torch, model_config, variant="packed"):
    """A peer model whose biases are random, as after training: with Keras' zero biases a zero pad
    embedding keeps a zero state at zero, which would hide what reading the pads does."""
    module = peer.build_torch_model(model_config, 30, seed=1, variant=variant)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, weight in module.recurrent.named_parameters():
            if name.startswith("bias"):
                weight.copy_(torch.rand(weight.shape, generator=generator) - 0.5)
    return module.eval()


def _both_variants(module, ids, lengths):
    """(P packed, P fixed) of one module (the same weights) on the same ids."""
    module.variant = "packed"
    packed = module(ids, lengths)
    module.variant = "fixed"
    return packed, module(ids, lengths)


PADDED_IDS = [[3, 4, 5, 0, 0, 0, 0], [6, 7, 8, 9, 2, 11, 12], [5, 0, 0, 0, 0, 0, 0]]


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
    from zoo.data.pipeline import first_epoch

    task, config, prepared = speed.sentiment_setup("gru", 32, 40)
    ids, targets = next(iter(first_epoch(prepared.train)))
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


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("pooling", ["last", "max", "mean"])
@pytest.mark.parametrize("bidirectional, num_layers", [(True, 1), (False, 2), (True, 2)])
def test_fixed_variant_equals_packed_on_full_length_rows(torch, cell, pooling, bidirectional, num_layers):
    module = _trained_looking_model(torch, _config(cell, bidirectional, num_layers, pooling=pooling).model)
    ids = torch.tensor([[3, 4, 5, 6, 7, 8], [6, 7, 8, 9, 2, 11], [12, 5, 5, 5, 9, 1]])  # no padding
    lengths = torch.full((3,), 6)
    with torch.no_grad():
        packed, fixed = _both_variants(module, ids, lengths)
    assert packed.shape == fixed.shape == (3, 1)
    torch.testing.assert_close(fixed, packed, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("pooling", ["last", "max", "mean"])
def test_fixed_variant_pooling_ignores_padded_steps_when_unidirectional(torch, cell, pooling):
    module = _trained_looking_model(torch, _config(cell, bidirectional=False, num_layers=2, pooling=pooling).model)
    ids = torch.tensor(PADDED_IDS)
    lengths = (ids != 0).sum(dim=1)
    with torch.no_grad():
        packed, fixed = _both_variants(module, ids, lengths)
        # The pad steps' outputs are not zero (the state runs on after the last real step), so counting
        # them as real steps changes the result: the mask is what makes the two agree.
        unmasked = module(ids, torch.full((3,), ids.shape[1]))
        longer = module(torch.cat([ids, torch.zeros(3, 9, dtype=ids.dtype)], dim=1), lengths)
    torch.testing.assert_close(fixed, packed, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(longer, fixed, rtol=1e-5, atol=1e-6)  # padded to a wider bucket edge
    assert float((unmasked[[0, 2]] - fixed[[0, 2]]).abs().max()) > 1e-4


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_fixed_variant_backward_direction_reads_the_pads(torch, cell):
    """The documented numerical consequence: bidirectional fixed-length rows that have padding differ
    from packed ones (the backward state starts at the last pad), full rows do not; with Keras' initial
    weights (zero biases) the pads keep the backward state at exactly zero, so nothing differs yet."""
    ids = torch.tensor(PADDED_IDS)
    lengths = (ids != 0).sum(dim=1)
    trained = _trained_looking_model(torch, _config(cell, pooling="max").model)
    initial = peer.build_torch_model(_config(cell, pooling="max").model, 30, seed=1).eval()
    with torch.no_grad():
        packed, fixed = _both_variants(trained, ids, lengths)
        initial_packed, initial_fixed = _both_variants(initial, ids, lengths)
    difference = (fixed - packed).abs()[:, 0]
    assert float(difference[0]) > 1e-4 and float(difference[2]) > 1e-4
    assert float(difference[1]) < 1e-5  # the full-length row
    torch.testing.assert_close(initial_fixed, initial_packed, rtol=1e-5, atol=1e-6)


def test_bucket_edges_are_the_pipelines():
    assert [peer.bucket_edge_width(length, 200) for length in (1, 15, 16, 31, 100, 127, 128, 200)] == [
        15, 15, 31, 31, 127, 127, 200, 200]
    ids = np.ones((2, 20), dtype=np.int32)
    padded = peer.pad_to_bucket_edge(ids, 200)
    assert padded.shape == (2, 31) and (padded[:, :20] == 1).all() and (padded[:, 20:] == 0).all()
    with pytest.raises(ValueError, match="longer than max_length"):
        peer.bucket_edge_width(201, 200)


def test_unknown_variant_or_pooling_is_a_user_error(torch):
    with pytest.raises(UserError, match="valid: packed, fixed"):
        peer.build_torch_model(_config("gru").model, 30, seed=1, variant="compiled")
    model_config = dataclasses.replace(_config("gru").model, pooling="attention")
    with pytest.raises(UserError, match="model.pooling='attention'"):
        peer.build_torch_model(model_config, 30, seed=1)


@pytest.mark.parametrize("cell, fused_when_fixed", [("lstm", True), ("gru", False), ("simple_rnn", False)])
def test_fixed_length_batches_reach_onednn_for_lstm_only(torch, cell, fused_when_fixed):
    """What the report's kernel column counts: PyTorch's CPU oneDNN RNN layer exists for LSTM only, and
    takes fixed-length batches whole; packed batches with rows of different lengths leave it."""
    config = _config(cell)
    batches = [(np.array(PADDED_IDS), np.array([0, 1, 1])), (np.array(PADDED_IDS)[:2, :5], np.array([1, 0]))]
    counts = {}
    for variant in peer.VARIANTS:
        module = peer.build_torch_model(config.model, 30, seed=1, variant=variant)
        trainer = peer.TorchTrainer(module, learning_rate=0.01, clipnorm=1.0)
        counts[variant] = peer._fused_batches(torch, trainer.train_on_batch, batches, layer_calls_per_batch=2)
    assert counts == {"packed": 0, "fixed": 2 if fused_when_fixed else 0}


def _report_item(zoo, packed, fixed):
    """A peer report item as compare() writes it, from per-round examples/s of each runner."""
    def spread(values):
        return {"median": float(np.median(values)), "min": min(values), "max": max(values)}

    best = "packed" if np.median(packed) >= np.median(fixed) else "fixed"
    best_rounds = packed if best == "packed" else fixed
    return {"batches": 7, "rounds": len(zoo), "torch_best_variant": best,
            "threads": {"OMP_WAIT_POLICY": "PASSIVE", "torch_intra_op": 2, "torch_inter_op": 2},
            "load_average_1m": {"start": 3.0, "end": 5.5},
            "zoo_examples_per_second": spread(zoo), "torch_packed_examples_per_second": spread(packed),
            "torch_fixed_examples_per_second": spread(fixed),
            "ratio_zoo_over_torch_best": np.median(zoo) / np.median(best_rounds),
            "ratio_zoo_over_torch_packed": np.median(zoo) / np.median(packed),
            "per_round_ratios_zoo_over_torch_best": [z / b for z, b in zip(zoo, best_rounds)],
            "torch_packed_batches_on_onednn_kernel": 1, "torch_fixed_batches_on_onednn_kernel": 7,
            "fixed_vs_packed_max_probability_difference": 0.0123}


def test_peer_markdown_has_both_variants_the_best_and_the_ratio():
    report = {"lstm": _report_item([100, 90, 110], [20, 25, 22], [150, 200, 180]),
              "gru": _report_item([300, 310, 290], [100, 90, 95], [60, 70, 65]),
              "simple_rnn": {"error": "RuntimeError: out of memory"}}
    text = peer.markdown(report)
    assert "OMP_WAIT_POLICY=PASSIVE, torch threads 2 intra-op / 2 inter-op, 3 rounds" in text
    assert "load average 3.0-5.5" in text
    assert "| torch packed ex/s | torch fixed ex/s | best | ratio zoo/best (rounds) |" in text
    # lstm: fixed is faster, zoo median 100 / fixed median 180; rounds 100/150, 90/200, 110/180.
    assert ("| lstm | 100.0 (90.0-110.0) | 22.0 (20.0-25.0) | 180.0 (150.0-200.0) | fixed | 0.56 (0.45-0.67) "
            "| 4.55 |") in text
    assert "| gru | 300.0 (290.0-310.0) | 95.0 (90.0-100.0) | 65.0 (60.0-70.0) | packed | 3.16 (3.00-3.44) |" in text
    assert "| 1 / 7 of 7 | 0.012 |" in text
    assert "| simple_rnn | error: RuntimeError: out of memory |" in text


@pytest.mark.slow  # 1 Keras model traced, 3 runners x 2 passes, 2 profiled passes: ~30 s at load 7-9
def test_peer_report_has_both_variants_and_the_ratio(torch, data_env, tmp_path, monkeypatch):
    from benchmarks import speed

    # compare() gives PyTorch os.cpu_count() threads; one keeps this test short on a loaded machine.
    monkeypatch.setattr(peer.os, "cpu_count", lambda: 1)
    cells = ["lstm"]
    text = speed.run(cells, "quick", str(tmp_path), examples=16, progress=lambda message: None,
                     parts=("peer",), peer="torch", rounds=1)
    report = json.loads((tmp_path / "speed.json").read_text())
    # Only the part that ran is in the report.
    assert "overhead" not in report and "xla" not in report and "cudnn" not in report
    assert sorted(report["peer"]) == sorted(cells)
    for cell in cells:
        item = report["peer"][cell]
        assert "error" not in item, item
        missing = [field for field in peer.REPORT_FIELDS if field not in item]
        assert not missing, (cell, missing)
        assert item["cell"] == cell and item["rounds"] == 1 == len(item["per_round_ratios_zoo_over_torch_best"])
        assert item["torch_parameters"] == item["zoo_parameters"] + item["torch_extra_bias_parameters"]
        medians = {name: item[f"{name}_examples_per_second"]["median"]
                   for name in ("zoo", "torch_packed", "torch_fixed")}
        for name in medians:
            spread = item[f"{name}_examples_per_second"]
            assert 0 < spread["min"] <= spread["median"] <= spread["max"]
        best = item["torch_best_variant"]
        assert medians[f"torch_{best}"] == max(medians["torch_packed"], medians["torch_fixed"])
        assert item["ratio_zoo_over_torch_best"] == pytest.approx(medians["zoo"] / medians[f"torch_{best}"])
        assert item["ratio_zoo_over_torch_packed"] == pytest.approx(medians["zoo"] / medians["torch_packed"])
        assert item["threads"]["torch_intra_op"] == 1 and "OMP_WAIT_POLICY" in item["threads"]
        # Fixed-length batches are never narrower than the pipeline's (padded to their bucket's edge).
        assert item["fixed_padded_tokens_per_pass"] >= item["padded_tokens_per_pass"] > item["real_tokens_per_pass"]
        # Fixed-length LSTM batches all run on oneDNN's fused layer (see the test of _fused_batches).
        assert item["torch_fixed_batches_on_onednn_kernel"] == item["batches"]
        assert 0 <= item["torch_packed_batches_on_onednn_kernel"] <= item["batches"]
        assert 0 <= item["fixed_vs_packed_max_probability_difference"] < 1
        assert set(item["load_average_1m"]) == {"start", "end"}
        assert f"| {cell} | " in text
    assert "ratio zoo/best" in (tmp_path / "speed.md").read_text()


def test_missing_torch_is_a_user_error_naming_the_install_command(monkeypatch):
    import benchmark
    import importlib

    # Keras/SciPy first: SciPy reads sys.modules["torch"] when imported.
    importlib.import_module("benchmarks.speed")

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


def test_speed_rounds_is_checked_and_belongs_to_the_speed_suite():
    import benchmark

    with pytest.raises(UserError, match="--speed-rounds 0: must be at least 1"):
        benchmark.main(["--suite", "speed", "--speed-rounds", "0", "--out", "/nonexistent-never-written"])
    with pytest.raises(UserError, match="--speed-rounds belongs to the speed suite"):
        benchmark.main(["--suite", "cells", "--speed-rounds", "3", "--out", "/nonexistent-never-written"])
