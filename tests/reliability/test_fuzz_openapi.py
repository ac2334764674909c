"""Schemathesis against each service's OpenAPI schema, in-process on real Postgres and NATS:
no 5xx, and every response conforms to the schema (status code documented, content type,
headers and body as declared); requests the schema forbids are refused with a 4xx.

The budget is fixed (``RAPPORT_FUZZ_EXAMPLES`` per operation and generation mode, 25 by
default) and the generation derandomized, so a CI run is reproducible. A local campaign:
``RAPPORT_FUZZ_EXAMPLES=300 RAPPORT_FUZZ_SEED=7 make test-reliability PYTEST_ARGS="-k fuzz -s"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from pydantic_settings import BaseSettings
from schemathesis.python.asgi import shutdown_lifespans

from allinone.app import create_app as create_allinone
from services.context.app import ContextSettings
from services.context.app import create_app as create_context
from services.dialectic.app import DialecticSettings
from services.dialectic.app import create_app as create_dialectic
from services.ingest.app import IngestSettings
from services.ingest.app import create_app as create_ingest
from tests.conftest import JWT_SECRET, InfraEndpoints, bearer, make_settings
from tests.reliability.fuzzing import EXAMPLES, FuzzReport, Seed, client_for, fuzz, seed_workspace

pytestmark = pytest.mark.timeout(900)


def service_settings(cls: type[BaseSettings], infra: InfraEndpoints, **overrides: Any) -> Any:
    """The test settings (deriver off), narrowed to the fields one service reads."""
    base = make_settings(infra, **overrides)
    return cls(**{name: getattr(base, name) for name in cls.model_fields})


@dataclass
class Target:
    schema: schemathesis.BaseSchema
    headers: dict[str, str] | None


@pytest.fixture(scope="module")
def apps(infra: InfraEndpoints) -> Iterator[dict[str, Any]]:
    """One app per service (and the all-in-one with auth on), all on the run's database."""
    built = {
        "ingest": create_ingest(service_settings(IngestSettings, infra)),
        "context": create_context(service_settings(ContextSettings, infra)),
        "dialectic": create_dialectic(service_settings(DialecticSettings, infra)),
        "allinone-auth": create_allinone(
            make_settings(infra, auth_enabled=True, jwt_secret=JWT_SECRET)
        ),
    }
    yield built
    shutdown_lifespans()


@pytest.fixture(scope="module")
def seeder(apps: dict[str, Any], infra: InfraEndpoints) -> Callable[[], Seed]:
    """Seeds a fresh workspace through the ingest app (auth off) for each operation."""
    client = client_for(apps["ingest"]).__enter__()
    return lambda: seed_workspace(client, infra.dsn)


def target(apps: dict[str, Any], name: str) -> Target:
    schema = schemathesis.openapi.from_asgi("/openapi.json", apps[name])
    headers = bearer(admin=True) if name == "allinone-auth" else None
    return Target(schema=schema, headers=headers)


def operations(schema: schemathesis.BaseSchema) -> set[str]:
    return {r.ok().label for r in schema.get_all_operations()}


def test_allinone_serves_exactly_the_services_operations(apps: dict[str, Any]) -> None:
    """The all-in-one schema is the union of the three services' schemas, so fuzzing it once
    (with auth on) and each service (auth off) covers every operation both ways."""
    services = [
        operations(target(apps, name).schema) for name in ("ingest", "context", "dialectic")
    ]
    allinone = operations(target(apps, "allinone-auth").schema)
    assert set().union(*services) == allinone
    assert sum(len(s) for s in services) == len(allinone)  # no operation in two services


@pytest.mark.parametrize("name", ["ingest", "context", "dialectic", "allinone-auth"])
def test_fuzz_service_schema(apps: dict[str, Any], seeder: Callable[[], Seed], name: str) -> None:
    t = target(apps, name)
    report: FuzzReport = fuzz(t.schema, seed=seeder, headers=t.headers)
    print(f"\n[fuzz] {name}: {report.summary()}")
    assert report.operations, "the schema has no operations"
    # Every operation really ran (a broken strategy would send nothing).
    assert report.requests >= len(report.operations) * min(EXAMPLES, 5)
    assert not report.errors and not report.failures, report.failure_text()
    assert report.server_errors == 0
