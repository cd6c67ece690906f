"""Benchmark the recurrent cells: `python benchmark.py [--tasks sentiment,spam] [--cells ...] [--suite cells,synthetic,speed]`.

Suites (comma-separated, default `cells`):
  cells      each task x cell x seed (x value, with --variants KEY=V1,V2) as a normal run directory:
             test quality, parameters, training throughput, time per epoch, batch-1 latency,
             large-batch throughput, peak memory; `--cells ...,tfidf_lr` adds a TF-IDF + logistic-regression
             row for the classification tasks (benchmarks/baselines.py)
  synthetic  the adding and copy problems swept over T, and ||dL/dh_t|| at init and after training
  speed      zoo vs hand-written Keras overhead, bucketing vs fixed padding, jit_compile on/off, cuDNN path;
             with --peer torch also the same model trained in PyTorch (requirements-peer.txt)
  latency    for finished run directories (--latency-runs): batch-1 `task.predict` p50/p90 vs the raw graph
             call, and predict.py --input lines/s at batch 256 (benchmarks/latency.py)
Everything lands in --out: results.json/.md and PNG plots per suite. Rerunning skips finished work.
"""

import argparse
import os
import sys

from zoo.cli import run_main

SUITES = ("cells", "synthetic", "speed", "latency")


def _names(text, valid, flag):
    from zoo.errors import UserError

    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if valid is not None and name not in valid:
            raise UserError(f"{flag} {name}: unknown; valid: {', '.join(valid)}")
    if not names:
        raise UserError(f"{flag}: give at least one name")
    return names


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="sentiment,spam", help="comma-separated task names (default: sentiment,spam)")
    parser.add_argument("--cells", default="simple_rnn,lstm,gru",
                        help="comma-separated cells: simple_rnn, lstm, gru, none (order-free, when the model factory "
                             "has it), and the cells-suite row tfidf_lr (TF-IDF + logistic regression, classification "
                             "tasks only; not in the default)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per task x cell (default 3)")
    parser.add_argument("--budget", choices=("quick", "full"), default="quick",
                        help="training budget, the same for every cell (default quick)")
    parser.add_argument("--suite", default="cells", help=f"comma-separated: {', '.join(SUITES)} (default cells)")
    parser.add_argument("--out", default="benchmarks/latest", help="output directory (default benchmarks/latest)")
    parser.add_argument("--data", help="local data path passed to every task (default: each task's own lookup)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override applied to every cells-suite run (repeatable)")
    parser.add_argument("--variants", action="append", default=[], metavar="KEY=V1,V2",
                        help="cells suite: run every task x cell x seed once per value of one config key, "
                             "e.g. model.stateful=true,false (one key, at least two values)")
    parser.add_argument("--lengths", help="synthetic suite: comma-separated T values (default by budget)")
    parser.add_argument("--synthetic-steps", type=int, help="synthetic suite: optimizer steps per point")
    parser.add_argument("--synthetic-tasks", default="adding,copy", help="synthetic suite: adding,copy")
    parser.add_argument("--speed-examples", type=int, help="speed suite: IMDB training examples timed per variant")
    parser.add_argument("--speed-rounds", type=int, help="speed suite: interleaved timed rounds of the overhead "
                        "and peer parts (default by budget: quick 3, full 5)")
    parser.add_argument("--speed-parts", help="speed suite: comma-separated subset of cudnn,overhead,xla,padding,peer "
                        "(default: all; peer needs --peer). A partial run rewrites speed.json/.md with those parts only")
    parser.add_argument("--peer", choices=("torch",), help="speed suite: also train the same model in PyTorch "
                        "(nn.LSTM/GRU/RNN) on the same batches and report zoo/torch throughput; needs --suite speed "
                        "and `python -m pip install -r requirements-peer.txt`")
    parser.add_argument("--latency-runs", help="latency suite: comma-separated finished run directories")
    parser.add_argument("--latency-calls", type=int, default=200, help="latency suite: timed batch-1 calls per run")
    parser.add_argument("--latency-lines", type=int, default=2000,
                        help="latency suite: lines given to predict.py --input per run (0 skips it)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from benchmarks import cells as cell_suite
    from benchmarks.baselines import BENCHMARK_CELLS, model_cells
    from benchmarks.report import machine_description, markdown_table
    from tasks import TASKS
    from zoo.errors import UserError

    if args.seeds < 1:
        raise UserError(f"--seeds {args.seeds}: must be at least 1")
    suites = _names(args.suite, SUITES, "--suite")
    if args.variants and "cells" not in suites:
        raise UserError("--variants: applies to the cells suite only (add --suite cells)")
    if args.speed_rounds is not None and args.speed_rounds < 1:
        raise UserError(f"--speed-rounds {args.speed_rounds}: must be at least 1")
    if (args.peer or args.speed_parts or args.speed_rounds) and "speed" not in suites:
        flag = "--peer" if args.peer else "--speed-parts" if args.speed_parts else "--speed-rounds"
        raise UserError(f"{flag} belongs to the speed suite: add `--suite speed` (e.g. --suite speed --peer torch)")
    speed_parts = None
    if "speed" in suites:
        from benchmarks import speed

        speed_parts = _names(args.speed_parts, speed.PARTS, "--speed-parts") if args.speed_parts else speed.PARTS
        if "peer" in speed_parts and args.speed_parts and not args.peer:
            raise UserError("--speed-parts peer: name the peer framework with --peer torch")
        if args.peer:
            from benchmarks import peer

            peer.import_torch()  # a missing torch is reported now, not after the other suites ran
    latency_runs = None
    if "latency" in suites:
        if not args.latency_runs:
            raise UserError("--suite latency: name the run directories to time with --latency-runs DIR,DIR")
        latency_runs = _names(args.latency_runs, None, "--latency-runs")
        for run_dir in latency_runs:
            if not os.path.isfile(os.path.join(run_dir, "metrics.json")):
                raise UserError(f"--latency-runs {run_dir}: not a finished run directory (no metrics.json)")
        if args.latency_calls < 1 or args.latency_lines < 0:
            raise UserError("--latency-calls must be at least 1 and --latency-lines at least 0")
    elif args.latency_runs:
        raise UserError("--latency-runs belongs to the latency suite: add `--suite latency`")
    cells = _names(args.cells, BENCHMARK_CELLS, "--cells")
    recurrent_cells = model_cells(cells)  # what the synthetic and speed suites build
    other_suites = [suite for suite in suites if suite in ("synthetic", "speed")]
    if other_suites and not recurrent_cells:
        raise UserError(f"--cells {args.cells}: the {' and '.join(other_suites)} suite(s) need a recurrent cell; "
                        "tfidf_lr is a row of the cells suite only")
    os.makedirs(args.out, exist_ok=True)
    print(f"machine: {machine_description()}", flush=True)

    def progress(message):
        print(message, flush=True)

    failures = []
    if "cells" in suites:
        tasks = _names(args.tasks, sorted(TASKS), "--tasks")
        variants = None
        if len(args.variants) > 1:
            raise UserError("--variants: give it once, with one key (e.g. --variants model.stateful=true,false)")
        if args.variants:
            variants = cell_suite.parse_variants(args.variants[0])
            cell_suite.check_variants(variants, tasks, cells, args.budget, args.overrides)
        for task in tasks:  # a bad --set, or a cell the model factory lacks, fails now in one line, not in every run
            for cell in recurrent_cells or cells:
                cell_suite.resolve(task, cell, 1, args.budget, args.overrides)
        results = cell_suite.run_benchmark(tasks, cells, args.seeds, args.budget, args.out,
                                           extra_overrides=args.overrides, data_path=args.data, progress=progress,
                                           variants=variants)
        print(markdown_table(results))
        failed = sum(r["status"] != "ok" for r in results["runs"])
        print(f"{len(results['runs']) - failed} runs ok, {failed} failed; results in {args.out}/results.json")
        failures.append(f"{failed} of {len(results['runs'])} cells-suite runs failed (see {args.out}/results.json)"
                        if failed else None)
    if "synthetic" in suites:
        from benchmarks import synthetic

        lengths = [int(v) for v in _names(args.lengths, None, "--lengths")] if args.lengths else None
        synthetic_tasks = _names(args.synthetic_tasks, ("adding", "copy"), "--synthetic-tasks")
        summary = synthetic.run(recurrent_cells, args.budget, os.path.join(args.out, "synthetic"), lengths=lengths,
                                steps=args.synthetic_steps, tasks=synthetic_tasks, progress=progress)
        print(summary)
    if "speed" in suites:
        from benchmarks import speed

        speed_report = speed.run(recurrent_cells, args.budget, os.path.join(args.out, "speed"), data_path=args.data,
                                 examples=args.speed_examples, progress=progress, parts=speed_parts, peer=args.peer,
                                 rounds=args.speed_rounds)
        print(speed_report)
    if "latency" in suites:
        from benchmarks import latency

        command = "python benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:])
        print(latency.run(latency_runs, os.path.join(args.out, "latency"), calls=args.latency_calls,
                          lines=args.latency_lines, progress=progress, command=command))
    failures = [failure for failure in failures if failure]
    if failures:
        from zoo.errors import TrainingError

        raise TrainingError("; ".join(failures))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    run_main(main, script=True)
