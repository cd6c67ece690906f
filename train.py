"""Train any task of the zoo: `python train.py --task sentiment [--cell gru] [--strategy S] [--set key=value ...]`."""

import argparse
import os
from typing import Any

from zoo.cli import resolve_config, run_main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", required=True, help="task name, e.g. sentiment")
    parser.add_argument("--preset", help="a named set of overrides defined by the task (e.g. quick)")
    parser.add_argument("--cell", help="recurrent cell: simple_rnn, lstm, gru, or none (no recurrent layer, "
                                       "an order-free baseline)")
    parser.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=None,
                        help="bidirectional recurrent layers (default: the task's)")
    parser.add_argument("--epochs", help="maximum number of epochs")
    parser.add_argument("--seed", help="random seed for weights and shuffling")
    parser.add_argument("--train-file", help="the training file (any name); validation and test are carved from it "
                                             "unless given")
    parser.add_argument("--validation-file", help="the validation file (default: carved from train, seeded)")
    parser.add_argument("--test-file", help="the test file (default: carved from train, seeded)")
    parser.add_argument("--data", help="local data: one file (split into train/validation/test), or a folder "
                                       "whose file names say the split (*train*, *dev*/*valid*, *test*)")
    parser.add_argument("--out", help="run directory (default: runs/TASK-CELL[-bi])")
    parser.add_argument("--strategy", default="default",
                        help="tf.distribute strategy: auto (mirrored on 2+ GPUs), default, mirrored (all local "
                             "GPUs) or multi_worker (the machines in TF_CONFIG); recorded in strategy.json")
    parser.add_argument("--init-from", dest="init_from", action="append", default=[], metavar="RUN_DIR",
                        help="start the embedding and recurrent layers from a language model run (--task lm); "
                             "give a forward and a backward one (repeat the flag, or a comma list) for both "
                             "halves of a bidirectional model; sets model.init_from")
    parser.add_argument("--overwrite", action="store_true", help="delete an existing run directory first")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set model.units=128 (repeatable)")
    return parser.parse_args(argv)


def check_init_from(task: Any, name: str) -> None:
    """--init-from is for tasks whose model config has `init_from`; others get a one-line error naming those that do."""
    if hasattr(task.Config().model, "init_from"):
        return
    from tasks import TASKS, get_task
    from zoo.errors import UserError

    able = [other for other in TASKS if hasattr(get_task(other).Config().model, "init_from")]
    raise UserError(f"--init-from: the {name} task cannot start from a language model; tasks that can: {', '.join(able)}")


def main(argv=None):
    args = parse_args(argv)
    from tasks import get_task

    task = get_task(args.task)  # an unknown name fails before TensorFlow is imported
    from zoo import recurrent, run
    from zoo.data import sources

    overrides = []
    for flag, key in (("cell", "model.cell"), ("epochs", "train.epochs"), ("seed", "train.seed")):
        if getattr(args, flag) is not None:
            overrides.append(f"{key}={getattr(args, flag)}")
    if args.bidirectional is not None:
        overrides.append(f"model.bidirectional={args.bidirectional}")
    if args.init_from:
        check_init_from(task, args.task)
        overrides.append("model.init_from=" + ",".join(args.init_from))
    config = resolve_config(task, args.preset, overrides + args.overrides)
    # Cell none has no recurrent layer, so no direction either: runs/sentiment-none, not sentiment-none-bi.
    bidirectional = config.model.bidirectional and recurrent.is_recurrent(config.model.cell)
    out = args.out or os.path.join("runs", f"{args.task}-{config.model.cell}" + ("-bi" if bidirectional else ""))
    request = sources.DataRequest(args.train_file, args.validation_file, args.test_file, args.data)
    metrics = run.train(task, args.task, config, out, request=request, overwrite=args.overwrite, strategy=args.strategy)
    if "worker" in metrics:  # a non-chief multi-worker process: the chief evaluates and writes the run
        print(f"worker {metrics['worker']} finished in {metrics['train_seconds']:.1f}s; the chief wrote {out}")
        return
    print(metrics.get("report", ""))
    headline = {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)}
    print(f"test metrics: {headline}")
    print(f"run directory: {out}")


if __name__ == "__main__":
    run_main(main, script=True)
