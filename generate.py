"""Generate text with a trained language model: `python generate.py RUN_DIR --prompt "the market" --length 50`.

`--temperature 0` is greedy decoding; `--top-k K` samples among the K most likely tokens only;
`--seed S` makes a sampled continuation repeat exactly.
"""

import argparse
import json

from zoo.cli import run_main


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", help="a run directory written by `train.py --task lm`")
    parser.add_argument("--prompt", default="", help="text to continue (default: start a new sentence / line)")
    parser.add_argument("--length", type=int, default=50, help="tokens to generate (words or characters)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature; 0 = greedy")
    parser.add_argument("--top-k", type=int, default=None, help="sample only among the K most likely tokens")
    parser.add_argument("--seed", type=int, default=None, help="random seed for sampling")
    parser.add_argument("--json", action="store_true", help="print a JSON object instead of plain text")
    return parser.parse_args()


def main():
    args = parse_args()
    from tasks import load_run
    from zoo.errors import UserError

    run = load_run(args.run_dir)
    if not hasattr(run.task, "generate"):
        raise UserError(f"{args.run_dir}: task {run.task_name!r} does not generate text (train with --task lm)")
    result = run.task.generate(run, args.prompt, length=args.length, temperature=args.temperature,
                               top_k=args.top_k, seed=args.seed)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(result["text"])


if __name__ == "__main__":
    run_main(main, script=True)
