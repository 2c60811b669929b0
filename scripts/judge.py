"""The judge's maintenance commands: `python scripts/judge.py calibrate` grid-searches each principle's
(threshold, margin) on the labelled examples (app/calibration.py: how the committed thresholds
were chosen); `python scripts/judge.py bench` times the rules and the judge on this host.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import constitution as C  # noqa: E402
from app.calibration import calibrate  # noqa: E402
from app.evaluation import evaluate, load_judge  # noqa: E402


def main(argv: list[str]) -> int:
    import json
    import statistics

    cmd = argv[0] if argv else "calibrate"
    if cmd == "calibrate":
        print(json.dumps(calibrate(), indent=1))
        return 0
    if cmd == "bench":
        import os

        texts = [e["text"] for e in C.eval_examples() + C.ui_examples()]
        long_text = " ".join(texts)[:4000]
        t0 = time.perf_counter()
        load_judge()
        print(f"cpus={os.cpu_count()} load={os.getloadavg()} judge load {time.perf_counter() - t0:.2f} s")

        def run(mode: str, items: list[str], reps: int, label: str) -> None:
            evaluate(items[0], mode)  # warm-up
            times = []
            for _ in range(reps):
                for t in items:
                    t1 = time.perf_counter()
                    evaluate(t, mode)
                    times.append(time.perf_counter() - t1)
            times.sort()
            p50, p95 = statistics.median(times), times[int(0.95 * (len(times) - 1))]
            print(f"{mode:5s} {label:16s} n={len(times):4d} min={times[0] * 1000:7.2f} "
                  f"p50={p50 * 1000:7.2f} p95={p95 * 1000:7.2f} ms")

        for mode, reps in (("rules", 20), ("judge", 5), ("both", 3)):
            run(mode, texts, reps, "labelled texts")
        run("rules", [long_text], 50, "4000-char text")
        run("judge", [long_text], 10, "4000-char text")
        return 0
    print("usage: python scripts/judge.py [calibrate|bench]")
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
