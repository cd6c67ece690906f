"""Evaluate a trained run: `python evaluate.py RUN_DIR` scores the data it was tested on, `--test-file F` any labelled file.

Without `--test-file` the run's recorded source (source.json) is read again: the same files, tfds
splits or carved split, and `eval_SPLIT.json` is written. With `--test-file F`, every example of F is
scored, read with the run's reading options plus any `--set data.KEY=VALUE`, and the results go to
`eval_<file stem>.json`; the run's own test results are never touched.
"""

import argparse
import json
import os
import re
import sys

from zoo.cli import run_main

SPLIT_NAMES = ("train", "validation", "test")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a run directory written by train.py")
    parser.add_argument("--split", choices=("test", "validation"), default=None,
                        help="which split of the recorded source to score (default: test)")
    parser.add_argument("--test-file", help="score every example of this labelled file instead")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="data.KEY=VALUE",
                        help="a reading option for --test-file, e.g. --set data.header=false (repeatable)")
    parser.add_argument("--data", help=argparse.SUPPRESS)  # replaced by the recorded source and --test-file
    return parser.parse_args(argv)


def result_name(path):
    """The name a scored file's results go under: its stem, never one of the run's own split names."""
    from zoo.data.files import file_stem

    name = re.sub(r"[^\w.-]+", "_", file_stem(path)).strip("_") or "file"
    return f"{name}-file" if name in SPLIT_NAMES else name


def main(argv=None):
    args = parse_args(argv)
    from zoo.errors import UserError

    if args.data:
        raise UserError("evaluate.py --data: the run remembers its data (source.json); score another labelled "
                        "file with --test-file FILE")
    if args.test_file and args.split:
        raise UserError("--split names a split of the run's own data; --test-file scores a file whole: give one")
    from tasks import load_run
    from zoo.data import sources
    from zoo.io import atomic_write_json

    run = load_run(args.run_dir)
    config = sources.with_reading_overrides(run.config, tuple(args.overrides))
    if args.test_file:
        if not os.path.isfile(args.test_file):
            raise UserError(f"--test-file {args.test_file}: no such file")
        part = run.task.read_file(args.test_file, config, None)
        name, where = result_name(args.test_file), args.test_file
    else:
        if args.overrides:
            raise UserError("--set reads --test-file; the run's own data is read with its recorded options")
        name = args.split or "test"
        if run.source is None:
            print(f"warning: {args.run_dir} has no {sources.SOURCE_FILE} (an older run); reading the task's "
                  "default source", file=sys.stderr)
            splits, _ = sources.load(run.task, config)
        else:
            splits = sources.load_recorded(run.task, config, run.source)
        part = splits[name]
        where = f"the run's {name} split"
    print(f"scoring {len(part):,} examples from {where}")
    metrics = run.task.evaluate(run, part, split=name)
    report = metrics.pop("report", "")
    if report:
        print(report)
    record = {**metrics, "scored_examples": len(part), "source": os.path.abspath(args.test_file) if args.test_file
              else name, "report": report}
    path = os.path.join(args.run_dir, f"eval_{name}.json")
    atomic_write_json(path, record)
    print(f"scored {len(part):,} examples; wrote {path}")
    # The headline metrics come last, as one JSON object, for scripts that read the output.
    print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}, indent=2))


if __name__ == "__main__":
    run_main(main, script=True)
