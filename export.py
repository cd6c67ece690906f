"""Export a trained run: `python export.py RUN_DIR --format saved_model OUT` writes a TF Serving-ready SavedModel."""

import argparse

from zoo.cli import run_main

FORMATS = ("saved_model",)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", help="a run directory written by train.py")
    parser.add_argument("out", help="the folder to write (TF Serving expects MODEL_BASE/<version>, e.g. models/sentiment/1)")
    parser.add_argument("--format", default="saved_model", help="saved_model (the only format so far)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from zoo.errors import UserError

    # Checked before TensorFlow is imported, so a mistyped command fails at once.
    if args.format not in FORMATS:
        raise UserError(f"--format {args.format}: expected one of {', '.join(FORMATS)}")
    from zoo import rundir

    rundir.check_export_dir(args.out, args.overwrite)
    from tasks import load_run
    from zoo import export

    run = load_run(args.run_dir)
    export.write_saved_model(run, args.out, overwrite=args.overwrite)
    print(f"wrote a SavedModel with signature {export.ENDPOINT!r} (also serving_default) to {args.out}")


if __name__ == "__main__":
    run_main(main, script=True)
