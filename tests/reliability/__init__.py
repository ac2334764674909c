"""Reliability and security tests (issue 8): every test here carries ``pytest.mark.reliability``
(``make test-reliability`` runs exactly those; ``make test`` runs them with everything else)."""
