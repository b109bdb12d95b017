"""The generative agent's mind: plain Python, no ray, qdrant_client or vllm."""
