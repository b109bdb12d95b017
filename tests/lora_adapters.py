"""LoRA adapters made with peft for any local Llama-family model folder (the contract suite's
adapters for smollm2): small random weights, fixed by the name and a seed, so that each adapter
moves the model's answers without wrecking its English."""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

LORA_RANK = 8
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")


def make_lora_adapters(
    model_dir: str | Path,
    out_dir: str | Path,
    names: Sequence[str] = ("alice", "bob"),
    seed: int = 0,
    scale: float = 0.3,
) -> dict[str, str]:
    """Writes one peft LoRA adapter per name under ``out_dir/<name>/`` (kept when already
    there); returns ``{name: folder}``.

    ``A`` is peft's random init and ``B`` a random normal times ``scale`` (peft's default makes
    ``B`` zero: an adapter equal to the base model).
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = Path(out_dir)
    folders = {name: out / name for name in names}
    missing = [n for n, f in folders.items() if not (f / "adapter_config.json").is_file()]
    if missing:
        model: Any = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
        for name in missing:
            config = LoraConfig(
                r=LORA_RANK,
                lora_alpha=2 * LORA_RANK,
                lora_dropout=0.0,
                target_modules=list(TARGET_MODULES),
                init_lora_weights=False,
                task_type="CAUSAL_LM",
            )
            with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                torch.manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
                peft_model = get_peft_model(model, config, adapter_name=name)
                with torch.no_grad():
                    for param_name, param in peft_model.named_parameters():
                        if "lora_B" in param_name:
                            param.copy_(torch.randn_like(param) * scale / LORA_RANK**0.5)
                peft_model.save_pretrained(str(out / "_peft"), selected_adapters=[name])
            (out / "_peft" / name).rename(folders[name])
            model = peft_model.unload()
    return {name: str(folder) for name, folder in folders.items()}
