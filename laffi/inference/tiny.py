"""A tiny random Llama with its own small tokenizer and random LoRA adapters, built from code (no download).

Usage:
    build_tiny_model("/tmp/tiny")                                  # a model folder usable as --base /tmp/tiny
    build_tiny_adapter("/tmp/tiny", "/tmp/adapters/sft", seed=1)   # a PEFT adapter folder for it

Tests and the benchmark's smoke run use it so that every code path (loading, mixed-adapter batches, training,
the app) runs in seconds on a CPU. Its answers are gibberish; only the plumbing is real.
"""

from __future__ import annotations

from pathlib import Path

# The same ChatML layout as SmolLM2's template, so prompts look like the real model's.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "The passage says the answer is here. Question: what is the answer? Reply: no answer.",
    "Correct: the answer matches the passage, so the answer should be kept.",
    "Incorrect: the passage says something else, so the answer should be the river.",
    "Partly correct: the answer has extra words. The right reply is: no answer.",
    "In 1702 fishermen founded a city on the northern coast near the old bridge.",
    "Who, what, when, where, why and how many people lived in the valley?",
    "0123456789 . , ; : ! ? ' \" ( ) - \n",
]


def build_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|im_end|>",
                                   unk_token="<|endoftext|>", chat_template=CHAT_TEMPLATE)


def build_tiny_model(out_dir: str | Path, seed: int = 0, layers: int = 2, hidden: int = 64) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    tokenizer = build_tiny_tokenizer()
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=4096, tie_word_embeddings=True, bos_token_id=None, initializer_range=0.3,
                         eos_token_id=eos, pad_token_id=eos)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = eos
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_tiny_adapter(base_dir: str | Path, out_dir: str | Path, seed: int = 1, r: int = 4,
                       layers: list[int] | None = None) -> Path:
    """A LoRA adapter with random (non-zero) A and B, large enough to change greedy outputs; on the given decoder
    layers only (layers_to_transform) or on all of them."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    cfg = LoraConfig(r=r, lora_alpha=4 * r, target_modules=["q_proj", "v_proj", "down_proj"],
                     init_lora_weights=False, task_type="CAUSAL_LM", layers_to_transform=layers)
    peft_model = get_peft_model(model, cfg)
    peft_model.save_pretrained(out_dir)
    return Path(out_dir)
