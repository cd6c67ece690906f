"""Task modules. Each one exposes the same small interface, read top to bottom:

    Config                      frozen dataclass with working defaults (sections data/model/train)
    PRESETS                     {name: {"section.key": value}} small named override sets

  data (driven by zoo.data.sources.load: explicit files, --data, $RNN_ZOO_DATA, tfds):
    catalog(config) -> zoo.data.sources.Catalog        (the $RNN_ZOO_DATA folder, file types, tfds name)
    read_file(path, config, location) -> split data    (one file, every example; read with the
                                                        config's reading options; `location` is the
                                                        resolved dict, or None for a file named by hand)
    read_tfds(name, split, config) -> split data       (only for tasks whose catalog has tfds)
    complete_splits(parts, config) -> {"train", "validation", "test"}
                                                       (carve the splits `parts` lacks from train,
                                                        seeded; apply data.max_* limits)

  model and training:
    prepare(config, splits) -> zoo.training.Prepared   (vocabularies from train only, tf.data)
    build_model(config, sizes) -> keras.Model           (the trainable Functional model)
    compile_model(model, config, sizes)                 (loss, metrics, optimizer)
    finish(model, config, prepared, splits) -> (exported keras.Model taking raw inputs, state dict)
    evaluate(run, split_data, split="test") -> metrics dict (JSON-serializable; every example scored)
    predict(run, inputs) -> list of JSON-serializable dicts, one per input

Split data supports len() (its example count). Reading options are the `data.*` fields declared
with `zoo.data.sources.reading_option`; they are recorded in source.json and settable in evaluate.py.

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
