"""Speeds of two inner loops that used to be wall-clock asserts in unit tests (which flake on a loaded
machine): the transcript alignment of segment, and evaluate's paired bootstrap. Prints seconds per call.

    python scripts/bench_units.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import random
import time


def best_of(repeats: int, function) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from pipeline import alignment as al
    from pipeline.bootstrap import paired_bootstrap
    from pipeline.lexicon import Lexicon
    from pipeline.metrics import score

    vocab = [f"w{i}" for i in range(200)]
    ref = " ".join(vocab[(i * 7919) % 200] for i in range(900))
    hyp = [al.HypWord(" " + (w if i % 6 else "x"), 0.3 * i, 0.3 * i + 0.3) for i, w in enumerate(ref.split())]
    align = best_of(args.repeats, lambda: al.align(ref, hyp, str.lower, (), 300.0))

    rng = random.Random(3)
    refs = [f"small left pleural effusion and {rng.choice(['no', 'a'])} pneumothorax at c5-c6" for _ in range(500)]
    lexicon = Lexicon(["pleural effusion", "pneumothorax"])
    a = score(refs, [r.replace("pleural", "plural") if rng.random() < 0.6 else r for r in refs], lexicon)
    b = score(refs, [r.replace("pleural", "plural") if rng.random() < 0.1 else r for r in refs], lexicon)
    boot = best_of(args.repeats, lambda: paired_bootstrap(a, b, samples=1000, seed=0))
    print(f"| loop | seconds (best of {args.repeats}) |\n|---|---:|")
    print(f"| align 900 reference words to 900 timed hypothesis words (segment) | {align:.3f} |")
    print(f"| paired bootstrap, 1000 resamples of 500 utterances (evaluate) | {boot:.3f} |")


if __name__ == "__main__":
    main()
