"""Evaluate a trained run on its test (or validation) split: `python evaluate.py RUN_DIR`."""

import argparse
import json
import os

from zoo.cli import run_main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", help="a run directory written by train.py")
    parser.add_argument("--split", choices=("test", "validation"), default="test")
    parser.add_argument("--data", help="the data source, if training used --data")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from zoo import run as run_lib
    from zoo.io import atomic_write_json

    run = run_lib.load(args.run_dir)
    splits = run.task.load_data(run.config, args.data)
    metrics = run.task.evaluate(run, splits[args.split], split=args.split)
    report = metrics.pop("report", "")
    if report:
        print(report)
    atomic_write_json(os.path.join(args.run_dir, f"eval_{args.split}.json"), {**metrics, "report": report})
    print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}, indent=2))


if __name__ == "__main__":
    run_main(main)
