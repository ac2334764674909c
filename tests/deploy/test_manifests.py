"""Offline validation of ``deploy/k8s``: every overlay builds with kustomize (no cluster), every
resource validates against the Kubernetes schemas (``kubernetes-validate``) or the vendored CRD
schemas (``deploy/k8s/schemas``), every environment variable is a real settings field, and the
gateway routes send every API route of the FastAPI apps to its service exactly once."""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from fastapi import FastAPI
from pydantic_settings import BaseSettings

from allinone.app import AllInOneSettings
from services.console.app import ConsoleAppSettings
from services.context.app import ContextSettings
from services.context.app import create_app as context_app
from services.deriver.app import DeriverSettings
from services.dialectic.app import DialecticSettings
from services.dialectic.app import create_app as dialectic_app
from services.ingest.app import IngestSettings
from services.ingest.app import create_app as ingest_app

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml"))
K8S_VERSION = "1.30"
SCHEMAS = K8S / "schemas"

SETTINGS: dict[str, type[BaseSettings]] = {
    "ingest": IngestSettings,
    "deriver": DeriverSettings,
    "context": ContextSettings,
    "dialectic": DialecticSettings,
    "console": ConsoleAppSettings,
}
APPS = {"ingest": ingest_app, "context": context_app, "dialectic": dialectic_app}
# Standard libpq variables the pods set besides RAPPORT_* settings (psycopg reads them).
LIBPQ_ENV = {"PGPASSWORD"}
# Secrets the overlays reference but do not create: CNPG creates rapport-pg-app; in prod the
# operator of the install creates rapport-secrets, rapport-tls and rapport-backup-s3.
EXTERNAL_SECRETS = {"rapport-pg-app", "rapport-secrets", "rapport-tls", "rapport-backup-s3"}


def env_name(settings: type[BaseSettings], field: str) -> str:
    prefix = settings.model_config.get("env_prefix", "")
    return f"{prefix}{field}".upper()


def setting_names(settings: type[BaseSettings]) -> set[str]:
    return {env_name(settings, f) for f in settings.model_fields}


ALL_SETTINGS = setting_names(AllInOneSettings)


# -- building ----------------------------------------------------------------------------------
def kustomize_command() -> list[str]:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    pytest.fail("neither kustomize nor kubectl (with its built-in kustomize) is on PATH")


def build_dir(path: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [*kustomize_command(), str(path)], capture_output=True, text=True, check=False, timeout=60
    )
    if done.returncode != 0:
        raise RuntimeError(f"kustomize build {path} failed: {done.stderr}")
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@functools.cache
def _built(overlay: str) -> str:
    return json.dumps(build_dir(K8S / "overlays" / overlay))


def build(overlay: str) -> list[dict[str, Any]]:
    return list(json.loads(_built(overlay)))


# -- schema validation ---------------------------------------------------------------------------
def crd_schema(doc: dict[str, Any]) -> dict[str, Any] | None:
    api = doc.get("apiVersion", "")
    group, _, version = api.rpartition("/")
    path = SCHEMAS / f"{group}_{version}_{doc.get('kind')}.json"
    return json.loads(path.read_text()) if group and path.exists() else None


CORE_GROUPS = {"", "apps", "batch", "policy", "autoscaling", "networking.k8s.io"}


def validation_errors(docs: list[dict[str, Any]]) -> list[str]:
    errors: list[str] = []
    for doc in docs:
        where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        schema = crd_schema(doc)
        if schema is not None:
            validator = jsonschema.Draft202012Validator(schema)
            errors += [f"{where}: {e.json_path}: {e.message}" for e in validator.iter_errors(doc)]
            continue
        group = doc.get("apiVersion", "").rpartition("/")[0]
        if group not in CORE_GROUPS:
            errors.append(f"{where}: no schema for {doc.get('apiVersion')} (vendor one)")
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{where}: {'.'.join(map(str, exc.path))}: {exc.message}")
    return errors


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_and_every_resource_validates(overlay: str) -> None:
    docs = build(overlay)
    assert docs
    assert validation_errors(docs) == []


def test_every_overlay_is_covered() -> None:
    assert {"dev", "prod", "prod-ingress"} <= set(OVERLAYS)


def _deployment(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [dep] = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name]
    return dep


def test_validation_catches_broken_manifests() -> None:
    docs = build("prod")
    assert validation_errors(docs) == []
    # A misspelt field of a core resource.
    broken = copy.deepcopy(docs)
    container = _deployment(broken, "rapport-ingest")["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpGett"] = container["readinessProbe"].pop("httpGet")
    assert any("httpGett" in e for e in validation_errors(broken))
    # A wrong type in a core resource.
    broken = copy.deepcopy(docs)
    _deployment(broken, "rapport-context")["spec"]["replicas"] = "two"
    assert any("rapport-context" in e for e in validation_errors(broken))
    # An unknown field and a bad enum in CRDs.
    broken = copy.deepcopy(docs)
    [so] = [d for d in broken if d["kind"] == "ScaledObject"]
    so["spec"]["triggers"][0]["metadata"]["lagTreshold"] = "10"
    [route] = [d for d in broken if d["kind"] == "HTTPRoute"]
    route["spec"]["rules"][0]["matches"][0]["path"]["type"] = "Regex"
    errors = validation_errors(broken)
    assert any("ScaledObject" in e and "lagTreshold" in e for e in errors), errors
    assert any("HTTPRoute" in e and "Regex" in e for e in errors), errors
    # A kustomization that references a missing file fails the build itself.
    with pytest.raises(RuntimeError, match="kustomize build"):
        build_dir(SCHEMAS)  # a directory without a kustomization


# -- settings wiring -----------------------------------------------------------------------------
def _containers(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for d in docs:
        if d["kind"] in ("Deployment", "Job", "StatefulSet"):
            for c in d["spec"]["template"]["spec"]["containers"]:
                out.append((d["metadata"]["name"], c))
    return out


def _by_name(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_env_var_is_a_real_setting(overlay: str) -> None:
    docs = build(overlay)
    config_maps = _by_name(docs, "ConfigMap")
    secrets = _by_name(docs, "Secret")
    rapport = [(n, c) for n, c in _containers(docs) if n.startswith("rapport-")]
    assert {n for n, _ in rapport} >= {f"rapport-{s}" for s in SETTINGS} | {"rapport-migrate"}
    for name, container in rapport:
        service = name.removeprefix("rapport-")
        allowed = setting_names(SETTINGS[service]) if service in SETTINGS else ALL_SETTINGS
        for env in container.get("env", []):
            assert env["name"] in allowed | LIBPQ_ENV, f"{name}: {env['name']} is not a setting"
            ref = env.get("valueFrom", {})
            if "configMapKeyRef" in ref:
                cm = config_maps[ref["configMapKeyRef"]["name"]]
                assert ref["configMapKeyRef"]["key"] in cm["data"]
            if "secretKeyRef" in ref and ref["secretKeyRef"]["name"] in secrets:
                secret = secrets[ref["secretKeyRef"]["name"]]
                keys = set(secret.get("data", {})) | set(secret.get("stringData", {}))
                assert ref["secretKeyRef"].get("optional") or ref["secretKeyRef"]["key"] in keys
            elif "secretKeyRef" in ref:
                assert ref["secretKeyRef"]["name"] in EXTERNAL_SECRETS
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                keys = set(config_maps[source["configMapRef"]["name"]]["data"])
            else:
                keys = set(secrets[source["secretRef"]["name"]].get("data", {}))
            unknown = keys - ALL_SETTINGS
            assert not unknown, f"{name}: not settings: {sorted(unknown)}"
    # Every setting of every service is wired: from the shared ConfigMap or the pod's env
    # (secrets), except HOST/PORT defaults that the image sets too.
    [config] = [cm for n, cm in config_maps.items() if n.startswith("rapport-config")]
    for name, container in rapport:
        service = name.removeprefix("rapport-")
        if service not in SETTINGS:
            continue
        wired = set(config["data"]) | {e["name"] for e in container.get("env", [])}
        optional = {"RAPPORT_QDRANT_PATH", "RAPPORT_QDRANT_URL", "RAPPORT_LLM_BASE_URL"}
        optional |= {n for n in ALL_SETTINGS if n.startswith("RAPPORT_LLM_") and "MODEL" in n}
        optional |= {"RAPPORT_EMBEDDING_BASE_URL", "RAPPORT_LLM_CUSTOM_INSTRUCTIONS"}
        missing = setting_names(SETTINGS[service]) - wired - optional
        assert not missing, f"{name}: settings not wired: {sorted(missing)}"


def test_prod_turns_auth_on_with_a_required_secret_and_uses_qdrant() -> None:
    docs = build("prod")
    [config] = [
        d for d in docs if d["kind"] == "ConfigMap" and "rapport-config" in d["metadata"]["name"]
    ]
    assert config["data"]["RAPPORT_AUTH_ENABLED"] == "true"
    assert config["data"]["RAPPORT_VECTOR_STORE"] == "qdrant"
    assert config["data"]["RAPPORT_QDRANT_URL"] == "http://qdrant:6333"
    for service in ("ingest", "context", "dialectic"):
        container = _deployment(docs, f"rapport-{service}")["spec"]["template"]["spec"][
            "containers"
        ][0]
        [jwt] = [e for e in container["env"] if e["name"] == "RAPPORT_JWT_SECRET"]
        assert jwt["valueFrom"]["secretKeyRef"]["optional"] is False
    assert any(d["kind"] == "StatefulSet" and d["metadata"]["name"] == "qdrant" for d in docs)
    dev = build("dev")
    [dev_config] = [
        d for d in dev if d["kind"] == "ConfigMap" and "rapport-config" in d["metadata"]["name"]
    ]
    assert dev_config["data"]["RAPPORT_AUTH_ENABLED"] == "false"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workloads_have_probes_resources_pdbs_and_autoscaling(overlay: str) -> None:
    docs = build(overlay)
    namespace = next(d["metadata"]["name"] for d in docs if d["kind"] == "Namespace")
    pdbs = _by_name(docs, "PodDisruptionBudget")
    hpas = {
        d["spec"]["scaleTargetRef"]["name"] for d in docs if d["kind"] == "HorizontalPodAutoscaler"
    }
    services = _by_name(docs, "Service")
    for svc in SETTINGS:
        dep = _deployment(docs, f"rapport-{svc}")
        pod = dep["spec"]["template"]
        [container] = pod["spec"]["containers"]
        assert container["args"] == [svc]
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["path"] == "/health"
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
        assert f"rapport-{svc}" in pdbs and f"rapport-{svc}" in services
        assert (svc in hpas) is False
        if svc != "deriver":
            assert f"rapport-{svc}" in hpas
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    [so] = [d for d in docs if d["kind"] == "ScaledObject"]
    assert so["spec"]["scaleTargetRef"]["name"] == "rapport-deriver"
    [trigger] = so["spec"]["triggers"]
    assert trigger["type"] == "nats-jetstream"
    assert trigger["metadata"]["stream"] == "RAPPORT_EVENTS"
    assert trigger["metadata"]["consumer"] == "deriver-representation"
    assert trigger["metadata"]["natsServerMonitoringEndpoint"].startswith(f"nats.{namespace}.svc")
    [nats] = [d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "nats"]
    assert nats["spec"]["replicas"] == 3
    [job] = [d for d in docs if d["kind"] == "Job"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    assert any(d["kind"] == "Cluster" for d in docs)
    assert any(d["kind"] == "ServiceMonitor" for d in docs)
    assert any(d["kind"] == "NetworkPolicy" for d in docs)


def test_the_deriver_consumer_named_by_keda_exists() -> None:
    from services.deriver.consumers import REPRESENTATION

    assert f"deriver-{REPRESENTATION.name}" == "deriver-representation"
    assert DeriverSettings().nats_stream == "RAPPORT_EVENTS"


# -- routes --------------------------------------------------------------------------------------
def api_routes(app: FastAPI) -> set[tuple[str, str]]:
    paths = app.openapi()["paths"]
    return {(m.upper(), p) for p, ops in paths.items() for m in ops}


@functools.cache
def owners() -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for svc, factory in APPS.items():
        for route in api_routes(factory()):
            assert route not in out, f"{route} served by {out.get(route)} and {svc}"
            out[route] = svc
    return out


def sample(path: str, value: str = "x-1") -> str:
    return re.sub(r"\{[^}]+\}", value, path)


TIER = {"Exact": 0, "RegularExpression": 1, "PathPrefix": 2}


def path_matches(kind: str, value: str, path: str) -> bool:
    if kind == "Exact":
        return path == value
    if kind == "PathPrefix":
        return value == "/" or path == value or path.startswith(value.rstrip("/") + "/")
    return re.fullmatch(value, path) is not None


def route_backend(route: dict[str, Any], method: str, path: str) -> list[str]:
    """Backends of the winning match(es): Exact > RegularExpression > longest PathPrefix, then
    a method match beats none. More than one result means the route is ambiguous."""
    hits: list[tuple[tuple[int, int, int], str]] = []
    for rule in route["spec"]["rules"]:
        [backend] = rule["backendRefs"]
        for match in rule["matches"]:
            if "method" in match and match["method"] != method:
                continue
            kind, value = match["path"]["type"], match["path"]["value"]
            if path_matches(kind, value, path):
                rank = (
                    TIER[kind],
                    -len(value) if kind == "PathPrefix" else 0,
                    0 if "method" in match else 1,
                )
                hits.append((rank, backend["name"]))
    if not hits:
        return []
    best = min(rank for rank, _ in hits)
    return [name for rank, name in hits if rank == best]


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o != "prod-ingress"])
def test_httproutes_send_every_api_route_to_its_service_exactly_once(overlay: str) -> None:
    [route] = [d for d in build(overlay) if d["kind"] == "HTTPRoute"]
    table = owners()
    assert len(table) > 30
    used: set[str] = set()
    for (method, path), svc in sorted(table.items()):
        for concrete in {sample(path), sample(path, "query")}:
            if concrete != sample(path) and (method, concrete) in {
                (m, sample(p)) for m, p in table
            }:
                continue
            backends = route_backend(route, method, concrete)
            assert backends == [f"rapport-{svc}"], f"{method} {path} -> {backends}, want {svc}"
        used.add(svc)
    assert used == set(APPS)
    # Every specific rule is needed: each of its matches routes at least one API route.
    for rule in route["spec"]["rules"]:
        for match in rule["matches"]:
            if match["path"]["type"] == "PathPrefix":
                continue
            assert any(
                match.get("method", m) == m
                and path_matches("RegularExpression", match["path"]["value"], sample(p))
                for m, p in table
            ), f"dead match {match}"


def test_ingress_routes_every_api_route_by_path_alone() -> None:
    [ingress] = [d for d in build("prod-ingress") if d["kind"] == "Ingress"]
    assert not any(d["kind"] in ("HTTPRoute", "Gateway") for d in build("prod-ingress"))
    paths = ingress["spec"]["rules"][0]["http"]["paths"]
    table = owners()
    # ingress-nginx with use-regex: case-insensitive regex locations anchored at the start,
    # longest path first.
    ordered = sorted(paths, key=lambda p: len(p["path"]), reverse=True)
    for (method, path), svc in table.items():
        concrete = sample(path)
        [first] = [p for p in ordered if re.match(p["path"], concrete, re.I)][:1]
        assert first["backend"]["service"]["name"] == f"rapport-{svc}", f"{method} {path}"
    # No path is served by two services with different methods (Ingress cannot match methods).
    by_path: dict[str, set[str]] = {}
    for (_, path), svc in table.items():
        by_path.setdefault(sample(path), set()).add(svc)
    assert all(len(s) == 1 for s in by_path.values())
