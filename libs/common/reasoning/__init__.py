"""The reasoner port and its adapters (extractive: no model; LLM: any OpenAI-compatible API)."""

from __future__ import annotations

from libs.common.reasoning.port import Reasoner
from libs.common.settings import LLMSettings


def create_reasoner(settings: LLMSettings) -> Reasoner:
    """The LLM reasoner when ``RAPPORT_LLM_BASE_URL`` is set, else the extractive one."""
    if settings.llm_base_url:
        from libs.common.reasoning.llm import create_llm_reasoner

        return create_llm_reasoner(settings)
    from libs.common.reasoning.extractive import ExtractiveReasoner

    return ExtractiveReasoner()


__all__ = ["Reasoner", "create_reasoner"]
