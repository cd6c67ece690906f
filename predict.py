"""Predict with a trained run: `python predict.py RUN_DIR "some text" ...` or `--input FILE`.

Prints one JSON line per input; `--format conll` writes `token<TAB>tag` columns for tagging runs.
`--input` is streamed: `--batch-size` lines are read, predicted and written at a time, so memory
stays flat however long the file is.
"""

import argparse
import json
import sys

from zoo.cli import run_main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", help="a run directory written by train.py")
    parser.add_argument("inputs", nargs="*", help="inputs given on the command line")
    parser.add_argument("--input", help="a file with one input per line ('-' for standard input)")
    parser.add_argument("--batch-size", type=int, default=256, help="inputs read and predicted at a time")
    parser.add_argument("--format", default="json",
                        help="json (one line per input), or a text format the task offers (tagging: conll)")
    return parser.parse_args(argv)


def _input_lines(path):
    """Lines of `--input` (a file, gzip allowed, or '-' for standard input), without their ends."""
    from zoo.data import files

    if path != "-":
        yield from (line for _, line in files.lines(path))
        return
    for line in sys.stdin:
        yield line.rstrip("\r\n")


def _batches(args):
    from zoo.errors import UserError

    if args.inputs:
        yield list(args.inputs)
    if args.input:
        batch = []
        for line in _input_lines(args.input):
            if line.strip():
                batch.append(line)
            if len(batch) >= args.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
    if not args.inputs and not args.input:
        raise UserError("give inputs on the command line or --input FILE")


def main(argv=None):
    args = parse_args(argv)
    from tasks import load_run
    from zoo.errors import UserError

    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be at least 1")

    run = load_run(args.run_dir)
    formatter = getattr(run.task, "format_predictions", None)
    if args.format != "json" and formatter is None:
        raise UserError(f"--format {args.format}: the {run.task_name} task writes json only")
    predicted_any = False
    for batch in _batches(args):
        given = [item for item in batch if item.strip()]
        if not given:
            continue
        predicted_any = True
        rows = iter(run.task.predict(run, given))
        # An empty input gets an error row in its place, so outputs stay aligned with inputs.
        rows = [next(rows) if item.strip() else {"input": item, "error": "empty input"} for item in batch]
        if args.format != "json":
            rows = [row for row in rows if "error" not in row]
        if args.format == "json":
            for row in rows:
                print(json.dumps(row, ensure_ascii=False))
        else:
            print(formatter(rows, args.format), end="\n" if rows else "")
        sys.stdout.flush()  # a consumer of the stream sees each batch as soon as it is predicted
    if not predicted_any:
        raise UserError("every input is empty; give text (or an image path) to predict")


if __name__ == "__main__":
    run_main(main, script=True)
