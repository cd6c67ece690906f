"""Task modules. Each one exposes the same small interface, read top to bottom:

    Config                      frozen dataclass with working defaults (sections data/model/train)
    PRESETS                     {name: {"section.key": value}} small named override sets
    load_data(config, data_path=None) -> {"train", "validation", "test": split data}
    prepare(config, splits) -> zoo.training.Prepared   (vocabularies from train only, tf.data)
    build_model(config, sizes) -> keras.Model           (the trainable Functional model)
    compile_model(model, config, sizes)                 (loss, metrics, optimizer)
    finish(model, config, prepared, splits) -> (exported keras.Model taking raw inputs, state dict)
    evaluate(run, split_data, split="test") -> metrics dict (JSON-serializable)
    predict(run, inputs) -> list of JSON-serializable dicts, one per input

Optional hooks (a task without them gets the default in brackets):

    serving_outputs(run, raw_inputs) -> {name: tensor}
        TF ops from a batch of raw inputs (what the exported model takes) to named outputs with
        labels and scores, traced into the `serve` signature of `export.py --format saved_model`.
        [the exported model's own outputs, under its output names]
    distribution_problem(config) -> str or None
        why this config cannot train on more than one replica (`train.py --strategy`), as a
        message for the user; None when it can. [it can]

`zoo.run.train` drives these; `zoo.registry.TASKS` maps `--task` names to modules.
"""
