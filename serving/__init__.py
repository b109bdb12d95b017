"""simulacra serving: the LLM and embedding services."""
