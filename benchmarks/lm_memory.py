"""Peak memory of the language model's data preparation (read, vocabulary, windows) against corpus size.

    python benchmarks/lm_memory.py --tokens 1000000,10000000,50000000 --out benchmarks/results/lm-memory

For each size a synthetic word corpus is written once (Zipf-distributed words, 20 per line, 30,000
word types: a vocabulary like WikiText's), then a fresh process resolves it as `--train-file`
(validation and test cut off its end), builds the vocabulary and the window pipelines, exactly as
`train.py --task lm` does before the model exists. It reports the process's peak RSS. The fixed cost
(TensorFlow and the zoo imported, a 10,000-token corpus prepared) is measured the same way and
subtracted, giving bytes per token.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXED_TOKENS = 10_000
WORDS_PER_LINE = 20
WORD_TYPES = 30_000


def write_corpus(path: str, tokens: int, seed: int = 0) -> None:
    """`tokens` words (line breaks included as <eos> tokens) of Zipf-distributed synthetic words."""
    import numpy as np

    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, WORD_TYPES + 1)
    words = np.array([f"w{index}" for index in range(WORD_TYPES)])
    lines = max(1, tokens // (WORDS_PER_LINE + 1))  # each line's break is one more token
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        for start in range(0, lines, 50_000):
            count = min(50_000, lines - start)
            chosen = words[rng.choice(WORD_TYPES, size=(count, WORDS_PER_LINE), p=weights / weights.sum())]
            handle.write("\n".join(" ".join(row) for row in chosen) + "\n")
    os.replace(path + ".tmp", path)


def measure(path: str) -> dict:
    """In this process: prepare `path` as the lm task's training file; peak RSS and timings."""
    sys.path.insert(0, REPO)
    from tasks.lm import task as lm
    from zoo.data import sources

    config = lm.Config()
    started = time.perf_counter()
    splits, record = sources.load(lm, config, sources.DataRequest(train_file=path))
    read_seconds = time.perf_counter() - started
    prepared = lm.prepare(config, splits)
    return {
        "tokens": sum(record["examples"].values()),
        "vocab_size": prepared.sizes["vocab_size"],
        "read_seconds": round(read_seconds, 2),
        "prepare_seconds": round(time.perf_counter() - started - read_seconds, 2),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def measure_in_child(path: str) -> dict:
    result = subprocess.run([sys.executable, os.path.abspath(__file__), "--measure", path],
                            capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if result.returncode != 0:
        raise SystemExit(f"error: measuring {path} failed: {result.stderr.strip().splitlines()[-1]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", default="1000000,10000000,50000000", help="comma-separated corpus sizes")
    parser.add_argument("--out", default=None, help="folder for results.json and results.md")
    parser.add_argument("--corpus-dir", default=None, help="where the synthetic corpora are written (default: a temp dir)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    sizes = [int(float(text)) for text in args.tokens.split(",")]
    corpus_dir = args.corpus_dir or tempfile.mkdtemp(prefix="lm-memory-")
    os.makedirs(corpus_dir, exist_ok=True)
    rows = []
    fixed = None
    for tokens in [FIXED_TOKENS, *sizes]:
        path = os.path.join(corpus_dir, f"corpus-{tokens}.txt")
        if not os.path.isfile(path):
            print(f"writing a {tokens:,}-token corpus to {path}", flush=True)
            write_corpus(path, tokens)
        row = measure_in_child(path)
        if fixed is None:
            fixed = row
            print(f"fixed cost: peak RSS {row['peak_rss_bytes'] / 2**20:,.0f} MiB", flush=True)
            continue
        row["above_fixed_bytes_per_token"] = round((row["peak_rss_bytes"] - fixed["peak_rss_bytes"]) / row["tokens"], 2)
        rows.append(row)
        print(f"{row['tokens']:>12,} tokens: peak RSS {row['peak_rss_bytes'] / 2**20:,.0f} MiB, "
              f"{row['above_fixed_bytes_per_token']} bytes/token above the fixed cost "
              f"(read {row['read_seconds']} s, prepare {row['prepare_seconds']} s)", flush=True)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as handle:
            json.dump({"fixed": fixed, "rows": rows, "command": " ".join(["python", *sys.argv])}, handle, indent=2)
        lines = ["| tokens | peak RSS (MiB) | bytes/token above fixed | read s | prepare s |", "|---:|---:|---:|---:|---:|"]
        lines += [f"| {row['tokens']:,} | {row['peak_rss_bytes'] / 2**20:,.0f} | {row['above_fixed_bytes_per_token']} "
                  f"| {row['read_seconds']} | {row['prepare_seconds']} |" for row in rows]
        with open(os.path.join(args.out, "results.md"), "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
