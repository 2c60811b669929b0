"""The engine's own speed on the app's export: OpenVINO GenAI's LLMPipeline with its default settings,
greedy, exactly TOKENS new tokens, the median of RUNS after one warm-up. perf runs it where the app
runs (in the container, or on this host for the process target) and sets the app's HTTP time for the
same work against it (perf.engine_overhead).

    python reference.py EXPORT_FOLDER PROMPT   ->  one JSON line {"seconds": ..., "tokens": ..., "runs": [...]}

It imports only openvino_genai and the standard library, so it runs with the app's own Python.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

TOKENS = 64
RUNS = 5


def measure(folder: str, prompt: str) -> dict:
    import openvino_genai as og

    pipe = og.LLMPipeline(folder, "CPU")
    config = og.GenerationConfig()
    config.max_new_tokens = config.min_new_tokens = TOKENS  # exactly TOKENS: the same work each run
    chat = pipe.get_tokenizer().apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
    pipe.generate(chat, config, apply_chat_template=False)  # warm-up (first-run compilation)
    runs = []
    for _ in range(RUNS):
        started = time.perf_counter()
        pipe.generate(chat, config, apply_chat_template=False)
        runs.append(time.perf_counter() - started)
    return {"seconds": round(statistics.median(runs), 4), "tokens": TOKENS, "runs": [round(r, 4) for r in runs]}


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], sys.argv[2])))
