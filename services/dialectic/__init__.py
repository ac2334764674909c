"""The dialectic service (read path): ``peer.chat`` — retrieval over what the asking peer may
know, answered by the extractive or the LLM reasoner, as JSON or SSE."""
