from __future__ import annotations

from scripts.config_docs import DOC, render


def test_configuration_reference_is_up_to_date() -> None:
    assert DOC.read_text() == render(), "run `python -m scripts.config_docs` and commit"
