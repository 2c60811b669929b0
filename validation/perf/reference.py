"""The engine's own speed on the app's export: OpenVINO GenAI's LLMPipeline, greedy, exactly TOKENS
new tokens, the median of RUNS after one warm-up, on as many inference threads as the app gives each
pipeline, and with the engine's default threads for comparison. perf runs it where the app runs (in
the container, or on this host for the process target) and sets the app's HTTP time for the same work
against the first (perf.engine_overhead): the app keeps one thread per pipeline so that an answer does
not depend on its batch (app/engine.py), and what that costs one stream is shown beside it.

    python reference.py EXPORT_FOLDER PROMPT THREADS
      ->  one JSON line {"seconds": ..., "tokens": ..., "runs": [...], "threads": ..., "default_seconds": ...}

It imports only openvino_genai and the standard library, so it runs with the app's own Python.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

TOKENS = 64
RUNS = 5


def timed(folder: str, prompt: str, threads: int | None) -> list[float]:
    import openvino_genai as og

    pipe = og.LLMPipeline(folder, "CPU", **({"INFERENCE_NUM_THREADS": threads} if threads else {}))
    config = og.GenerationConfig()
    config.max_new_tokens = config.min_new_tokens = TOKENS  # exactly TOKENS: the same work each run
    chat = pipe.get_tokenizer().apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
    pipe.generate(chat, config, apply_chat_template=False)  # warm-up (first-run compilation)
    runs = []
    for _ in range(RUNS):
        started = time.perf_counter()
        pipe.generate(chat, config, apply_chat_template=False)
        runs.append(time.perf_counter() - started)
    return runs


def measure(folder: str, prompt: str, threads: int) -> dict:
    runs = timed(folder, prompt, threads)
    return {"seconds": round(statistics.median(runs), 4), "tokens": TOKENS, "runs": [round(r, 4) for r in runs],
            "threads": threads, "default_seconds": round(statistics.median(timed(folder, prompt, None)), 4)}


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
