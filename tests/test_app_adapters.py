"""A LoRA adapter served beside its base (app/adapters.py): base and adapted rows in one batch."""

import copy
import gc

import pytest
import torch

from app import adapters, generation, models


@pytest.fixture
def llama(tiny):
    """A small Llama (plain nn.Linear layers, like smollm2) with the tiny model's tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tiny.tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                         eos_token_id=tiny.tokenizer.eos_token_id)
    model = LlamaForCausalLM(config).eval()
    return models.LoadedModel("llama", model, tiny.tokenizer, "cpu", model.num_parameters(), 0.0)


@pytest.fixture
def adapter_folder(llama, tmp_path):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)  # init_lora_weights=False: random B, so the adapter changes the answers
    peft_model = get_peft_model(copy.deepcopy(llama.model), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                                        init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    return tmp_path / "adapter"


def test_adapter_rows_match_the_merged_model_and_base_rows_the_base(llama, adapter_folder):
    from peft import PeftModel

    ids = torch.tensor([llama.tokenizer("Human: hello there\nAssistant:")["input_ids"]])
    merged_model = PeftModel.from_pretrained(copy.deepcopy(llama.model), str(adapter_folder)).merge_and_unload()
    with torch.inference_mode():
        base_alone = llama.model(ids).logits
        merged = merged_model.eval()(ids).logits
        trained = models.apply_adapter(llama, adapter_folder)
        assert trained.served is not None and trained.model is llama.model and trained.batcher is llama.batcher
        with adapters.segments([(trained.served.key, 1, 2)]):
            both = llama.model(ids.repeat(2, 1)).logits
    torch.testing.assert_close(both[0], base_alone[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(both[1], merged[0], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(both[0], both[1], atol=1e-3)  # the adapter does change the answer


def test_base_and_trained_requests_share_one_batch_and_answer_as_when_alone(llama, adapter_folder):
    trained = models.apply_adapter(llama, adapter_folder)

    def answer(lm):
        return models.generate(lm, "tell me a story", max_new_tokens=12, temperature=0.0, seed=0)

    alone = {"base": answer(llama), "trained": answer(trained)}
    requests = {k: lm.submit([{"role": "user", "content": "tell me a story"}], max_new_tokens=12)
                for k, lm in (("trained", trained), ("base", llama))}
    together = {k: generation.wait(llama.tokenizer, r) for k, r in requests.items()}
    assert together == alone and alone["base"] != alone["trained"]
    assert max(r.batch_size for r in requests.values()) == 2


def test_a_copy_is_the_plain_base_and_a_dropped_adapter_is_detached(llama, adapter_folder):
    state = {k: v.clone() for k, v in llama.model.state_dict().items()}
    trained = models.apply_adapter(llama, adapter_folder)
    layers = [m for m in llama.model.modules() if isinstance(m, adapters.AdaptedLinear)]
    assert len(layers) == 14 and all(len(m.factors) == 1 for m in layers)  # 7 linear layers x 2 blocks
    plain = copy.deepcopy(llama.model)  # what training and merging start from
    assert not any(isinstance(m, adapters.AdaptedLinear) for m in plain.modules())
    assert all(torch.equal(v, state[k]) for k, v in plain.state_dict().items())
    del trained
    gc.collect()
    assert all(not m.factors for m in layers)


def test_adapters_on_layers_it_cannot_serve_are_merged_into_a_copy(tiny, tmp_path):
    from peft import LoraConfig, get_peft_model

    get_peft_model(copy.deepcopy(tiny.model), LoraConfig(r=4, target_modules="all-linear")).save_pretrained(tmp_path)
    trained = models.apply_adapter(tiny, tmp_path)  # GPT-2's Conv1D layers
    assert trained.served is None and trained.model is not tiny.model
