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

`zoo.run.train` drives these; `zoo.registry.TASKS` maps `--task` names to modules.
"""
