"""The reasoner port and its adapters (extractive: no model; LLM: any OpenAI-compatible API)."""
