"""Model registry, offline model building, loading, and seeded text generation.

Names the loader accepts:
- ``tiny``: the offline default, a small GPT-2-style model built here from a config with seeded
  weights and a byte-level BPE tokenizer trained on the bundled text, briefly warm-started on that
  text so that its output is made of words. Built once into MODEL_CACHE_DIR, then loaded with
  ``from_pretrained`` like any hub model.
- ``gpt2-sized``: ``GPT2Config()`` default sizes (124M parameters), seeded weights: the real
  gpt2's compute and memory cost, for honest performance runs with no download.
- a Hugging Face id (``gpt2``, ``distilgpt2``, ``org/name``): from the local HF cache; downloads
  only when ALLOW_MODEL_DOWNLOADS is on.
- a local folder under one of MODEL_DIRS.
``trust_remote_code`` is never enabled.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from app.errors import ApiError

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).parent / "data"
HF_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
BUILD_SEED = 1234
RECIPE_VERSION = "2"  # bump when the build code changes
RECIPE_FILE = "recipe.txt"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    build: Callable[[Path], None]


# The bundled text the tiny tokenizer and warm-start are made from (the image copies just these
# before building the model, so a code change does not rebuild it).
CORPUS_FILES = ("corpus.txt", "few_shot.txt", "training_prompts.json", "adversarial_prompts.json")


def _corpus_lines() -> list[str]:
    lines: list[str] = []
    for name in CORPUS_FILES:
        text = (DATA_DIR / name).read_text(encoding="utf-8")
        lines.extend(_strings(json.loads(text)) if name.endswith(".json") else text.splitlines())
    return [line.strip() for line in lines if line.strip()]


def _strings(obj) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return []


def _train_tokenizer(lines: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
        unk_token="<|endoftext|>", pad_token="<|endoftext|>", model_max_length=512,
    )


def _warm_start(model, tokenizer, lines: list[str], steps: int) -> None:
    """A few seeded LM steps on the bundled text, so the tiny model speaks in words."""
    text = "\n\n".join(lines)
    ids = torch.tensor(tokenizer(text)["input_ids"], dtype=torch.long)
    block, batch = 64, 8
    gen = torch.Generator().manual_seed(BUILD_SEED)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small ops: one thread is as fast, and the result is the same everywhere
    for _ in range(steps):
        starts = torch.randint(0, max(1, len(ids) - block - 1), (batch,), generator=gen)
        x = torch.stack([ids[s : s + block] for s in starts])
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    torch.set_num_threads(threads)
    model.eval()


def _build_gpt2(dest: Path, *, tiny: bool) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(BUILD_SEED)
    lines = _corpus_lines()
    tokenizer = _train_tokenizer(lines, vocab_size=4096 if tiny else 8192)
    if tiny:
        config = GPT2Config(vocab_size=len(tokenizer), n_positions=512, n_embd=128, n_layer=4, n_head=4)
    else:  # gpt2's own sizes; the extra vocabulary rows cost what they cost in gpt2
        config = GPT2Config()
    config.bos_token_id = config.eos_token_id = config.pad_token_id = tokenizer.eos_token_id
    model = GPT2LMHeadModel(config)
    if tiny:
        _warm_start(model, tokenizer, lines, steps=80)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)


REGISTRY: dict[str, ModelSpec] = {
    "tiny": ModelSpec("tiny", "offline default: 4-layer GPT-2-style model, ~1.3M parameters, built locally",
                      lambda dest: _build_gpt2(dest, tiny=True)),
    "gpt2-sized": ModelSpec("gpt2-sized", "GPT2Config() sizes (124M parameters), seeded weights, for performance runs",
                            lambda dest: _build_gpt2(dest, tiny=False)),
}
_build_lock = threading.Lock()
# transformers builds a model under a process-wide "empty weights" patch: two from_pretrained calls
# in different threads at once (the judge preloading while a user loads a model) leave meta tensors
# ("Cannot copy out of meta tensor"). Every load in the app holds this lock.
LOAD_LOCK = threading.RLock()


def recipe(name: str) -> str:
    """Fingerprint of what a registry model is built from: a cached build with another is rebuilt."""
    digest = hashlib.sha256(f"{name}|{BUILD_SEED}|{RECIPE_VERSION}".encode())
    for line in _corpus_lines():
        digest.update(line.encode())
    return digest.hexdigest()[:16]


def _is_built(dest: Path, name: str) -> bool:
    try:
        return (dest / "config.json").exists() and (dest / RECIPE_FILE).read_text().strip() == recipe(name)
    except OSError:
        return False


def ensure_built(name: str, cache_dir: Path) -> Path:
    """Build a registry model into the cache once (temp dir + rename), return its folder.
    A file lock makes concurrent processes sharing the cache build it once."""
    dest = cache_dir / name
    if _is_built(dest, name):
        return dest
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _build_lock, open(cache_dir / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_built(dest, name):
            return dest
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{name}-", dir=cache_dir))
        started = time.perf_counter()
        try:
            REGISTRY[name].build(tmp)
            (tmp / RECIPE_FILE).write_text(recipe(name))
            if dest.exists():  # an outdated build
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("built model", extra={"model": name, "seconds": round(time.perf_counter() - started, 2)})
    return dest


def resolve(name: str, settings) -> tuple[str, bool]:
    """Turn a model name into (what from_pretrained gets, local_files_only). Raises ApiError."""
    name = name.strip()
    if name in REGISTRY:
        return str(ensure_built(name, settings.model_cache_dir)), True
    if name.startswith(("/", ".", "~")) or "\\" in name or ".." in name:
        path = Path(name).expanduser().resolve()
        roots = [r.expanduser().resolve() for r in settings.model_dirs]
        if not any(path == r or r in path.parents for r in roots):
            raise ApiError(422, "model", f"path {name!r} is outside the allowed model folders "
                           f"({', '.join(map(str, roots)) or 'none configured'})")
        if not (path / "config.json").is_file():
            raise ApiError(404, "model", f"no model (config.json) in {name!r}", error="not_found")
        return str(path), True
    if not HF_ID.match(name):
        raise ApiError(422, "model", f"{name!r} is neither a registry name ({', '.join(REGISTRY)}), "
                       "a Hugging Face id nor an allowed folder")
    return name, not settings.allow_downloads


@dataclass
class LoadedModel:
    name: str
    model: torch.nn.Module
    tokenizer: object
    device: str
    parameters: int
    load_seconds: float

    def info(self) -> dict:
        return {"name": self.name, "parameters": self.parameters, "device": self.device,
                "load_seconds": round(self.load_seconds, 3)}


def pick_device(wanted: str) -> str:
    if wanted != "auto":
        return wanted
    return "cuda" if torch.cuda.is_available() else "cpu"


def load(name: str, settings) -> LoadedModel:
    """Load a causal LM and its tokenizer, in eval mode, on the configured device."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    source, local_only = resolve(name, settings)
    try:
        with LOAD_LOCK:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only, trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(source, local_files_only=local_only, trust_remote_code=False)
    except OSError as exc:
        hint = "" if settings.allow_downloads else " (downloads are off: bake it into the image or set ALLOW_MODEL_DOWNLOADS)"
        raise ApiError(404, "model", f"model {name!r} not found locally{hint}: {str(exc).splitlines()[0]}",
                       error="not_found") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = pick_device(settings.device)
    model.to(device).eval()
    params = sum(p.numel() for p in model.parameters())
    return LoadedModel(name, model, tokenizer, device, params, time.perf_counter() - started)


class Cancelled(Exception):
    """Raised inside generation or training when a cancel was asked for."""


@torch.inference_mode()
def generate(lm: LoadedModel, prompt: str, *, max_new_tokens: int, temperature: float, seed: int,
             top_k: int = 50, should_stop: Callable[[], bool] | None = None) -> str:
    """Sample up to max_new_tokens after the prompt. Seeded per call (its own torch.Generator),
    so concurrent requests don't share random state; stops early at end-of-text or on cancel."""
    tok = lm.tokenizer
    limit = getattr(lm.model.config, "n_positions", None) or getattr(lm.model.config, "max_position_embeddings", 1024)
    ids = tok(prompt, return_tensors="pt")["input_ids"][:, -(limit - max_new_tokens) :].to(lm.device)
    gen = torch.Generator(device=lm.device).manual_seed(seed)
    past, out, step_input = None, [], ids
    for _ in range(max_new_tokens):
        if should_stop and should_stop():
            raise Cancelled()
        result = lm.model(input_ids=step_input, cache=past, use_cache=True)
        past = result.cache
        logits = result.logits[:, -1, :].float() / max(temperature, 1e-3)
        if top_k:
            kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1, None]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        next_id = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=gen)
        if next_id.item() == tok.eos_token_id:
            break
        out.append(next_id.item())
        step_input = next_id
    return tok.decode(out, skip_special_tokens=True).strip()


def main(argv: list[str]) -> int:
    """`python -m app build-models [NAME ...]` (argv here: build NAME ...): build registry models into
    MODEL_CACHE_DIR. The image does this at build time, so the container needs no network."""
    import sys

    from app import config

    if argv[:1] != ["build"] or any(n not in REGISTRY for n in argv[1:]):
        print(f"usage: python -m app build-models [{' | '.join(REGISTRY)} ...]", file=sys.stderr)
        return 2
    cache = config.load().model_cache_dir
    for name in argv[1:] or ["tiny"]:
        started = time.perf_counter()
        print(f"{name}: {ensure_built(name, cache)} ({time.perf_counter() - started:.1f} s)", flush=True)
    return 0

