"""Build a tiny random-weight Llama and its tokenizer, offline.

    python -m services.worker.tiny_model DIR

For tests and the CPU demo (it ships in the worker image), where no weights can be downloaded:
the directory loads with the same `from_pretrained` code as a real model (and with vLLM: head_dim
32, untied embeddings). Needs the `transformers` extra.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _corpus(n: int = 3000) -> list[str]:
    rng = random.Random(0)
    words = (
        "the a model queue worker answer token request broker redis rabbit gpu fleet serve fast "
        "what is ai artificial intelligence hello world one two three four five six seven"
    ).split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 15))) for _ in range(n)]


def build(out: Path, *, vocab_size: int = 1024, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,  # room for long generations in tests (RoPE)
        tie_word_embeddings=False,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    model = LlamaForCausalLM(config)  # type: ignore[no-untyped-call]
    model.save_pretrained(out)
    out.chmod(0o755)  # readable by a container's non-root user through a bind mount
    for f in out.iterdir():
        f.chmod(0o644)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if (args.out / "config.json").exists():
        sys.stderr.write(f"{args.out} already holds a model; leaving it\n")
        return 0
    build(args.out)
    sys.stderr.write(f"tiny model written to {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
