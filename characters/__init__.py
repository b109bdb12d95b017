"""Character-LLM: from a profile to a trained LoRA adapter and its evaluation."""
