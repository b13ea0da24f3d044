"""The Helm chart: Helm's own lint and renderer, schema-validated manifests, helm-unittest-style checks."""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml

from exporter.mongod import free_port
from tests.support.daemon import create_pools
from tests.support.paths import ROOT
from tests.support.scripts import load_script
from tests.support.tools import missing_tool

CHART = ROOT / "helm" / "session-pool-exporter"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
KUBE_VERSION = "1.30.0"
RELEASE = "spe"
NAMESPACE = "monitoring-test"
PORT = 9810
ADMIN_PORT = 9811
CONFIG_PATH = "/etc/session-pool-exporter/config.yaml"
# Every optional part of the chart; each must be switched on by at least one ci/*-values.yaml.
OPTIONAL_PARTS = (
    "serviceMonitor.enabled",
    "prometheusRule.enabled",
    "grafanaDashboards.enabled",
    "networkPolicy.metrics.from",
    "networkPolicy.admin.from",
    "networkPolicy.egress",
    "podDisruptionBudget.enabled",
    "existingSecret",
    "tls.enabled",
    "admin.allowPlaintext",
)
# Parts on by default; each must be switched off by at least one ci/*-values.yaml.
DEFAULT_PARTS = ("networkPolicy.enabled",)
# Admin tokens of the tests: the exporter refuses tokens shorter than 24 characters.
ADMIN_TOKEN = "admin-s3cret-0123456789abcdef"
ALICE_TOKEN = "alice-s3cret-0123456789abcdef"
DURATION = re.compile(r"([0-9]+(ms|s|m|h|d|w|y))+")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


_missing = missing_tool


def _module(name: str, package: str) -> ModuleType:
    """Import a test-only library, or fail/skip as `_missing` says."""
    try:
        return importlib.import_module(name)
    except ImportError:
        _missing(f"Python module {name} (PyPI {package})")
        raise


@pytest.fixture(scope="module")
def helm() -> ModuleType:
    """Helm's Go SDK, embedded by the PyPI package helm-python-sdk."""
    return _module("helm_python", "helm-python-sdk")


@pytest.fixture(scope="module")
def kubernetes_validate() -> ModuleType:
    """Kubernetes JSON schemas and their validator (PyPI kubernetes-validate)."""
    return _module("kubernetes_validate", "kubernetes-validate")


def _values_file(path: Path | None) -> dict[str, Any]:
    """The values of a ci/*-values.yaml (None: the chart's defaults, i.e. no user values)."""
    if path is None:
        return {}
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else {}


def _cases() -> list[Any]:
    """Default values plus every ci/*-values.yaml, as pytest params."""
    return [pytest.param(None, id="defaults")] + [
        pytest.param(path, id=path.name.removesuffix("-values.yaml")) for path in CI_VALUES
    ]


def render(helm: ModuleType, values: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Render the chart offline with Helm's engine; every non-empty manifest, tagged with its template."""
    with helm.Chart.load(str(CHART)) as chart:
        rendered: dict[str, str] = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)
    docs: list[dict[str, Any]] = []
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                assert isinstance(doc, dict), f"{template}: not a mapping"
                doc["__template__"] = template
                docs.append(doc)
    return docs


def notes(helm: ModuleType, values: dict[str, Any] | None) -> str:
    """The rendered NOTES.txt."""
    with helm.Chart.load(str(CHART)) as chart:
        rendered: dict[str, str] = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)
    return next(text for template, text in rendered.items() if template.endswith("NOTES.txt"))


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The manifests of one kind."""
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The single manifest of a kind."""
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The exporter container of the Deployment."""
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def config_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The exporter's config file, parsed from the config ConfigMap."""
    configmaps = [cm for cm in of_kind(docs, "ConfigMap") if "config.yaml" in cm.get("data", {})]
    assert len(configmaps) == 1
    parsed: dict[str, Any] = yaml.safe_load(configmaps[0]["data"]["config.yaml"])
    return parsed


def rule_sources() -> dict[str, Path]:
    """alerts/*.yml rule files (top-level `groups:`), by file name."""
    found: dict[str, Path] = {}
    for path in sorted((ROOT / "alerts").glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(doc, dict) and "groups" in doc:
            found[path.name] = path
    return found


def dashboard_sources() -> dict[str, Path]:
    """dashboards/*.json, by file name."""
    return {path.name: path for path in sorted((ROOT / "dashboards").glob("*.json"))}


def _get(values: dict[str, Any], dotted: str) -> Any:
    """A nested value by dotted path (None when absent)."""
    node: Any = values
    for key in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _walk_strings(node: Any) -> Iterator[str]:
    """Every string (keys and values) inside a parsed manifest."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _walk_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_strings(item)
    elif isinstance(node, str):
        yield node


# ---- lint and render -------------------------------------------------------------------------


@pytest.mark.parametrize("values_file", _cases())
def test_lint_has_no_errors_or_warnings(helm: ModuleType, values_file: Path | None) -> None:
    """`helm lint --strict` (Helm's own code) finds nothing above info level."""
    report = helm.lint(str(CHART), _values_file(values_file), strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["total_charts_linted"] == 1
    serious = [m for m in report["messages"] if m["severity"] >= 2]
    assert serious == [], serious
    assert report["errors"] == []


def test_ci_values_switch_on_every_optional_part() -> None:
    """Each optional part is switched on by at least one ci/*-values.yaml, each default part off by one."""
    assert CI_VALUES, "no ci/*-values.yaml"
    switched = {part: False for part in OPTIONAL_PARTS + DEFAULT_PARTS}
    for path in CI_VALUES:
        values = _values_file(path)
        for part in OPTIONAL_PARTS:
            switched[part] = switched[part] or bool(_get(values, part))
        for part in DEFAULT_PARTS:
            switched[part] = switched[part] or _get(values, part) is False
    assert all(switched.values()), [part for part, on in switched.items() if not on]


def test_ci_values_pass_the_values_schema(helm: ModuleType) -> None:
    """Defaults and every ci values file satisfy values.schema.json."""
    with helm.Chart.load(str(CHART)) as chart:
        assert chart.schema is not None
        for path in [None, *CI_VALUES]:
            chart.validate_schema(chart.merge_values(_values_file(path)))


@pytest.mark.parametrize("values_file", _cases())
def test_rendered_manifests_validate(
    helm: ModuleType, kubernetes_validate: ModuleType, values_file: Path | None
) -> None:
    """Core kinds validate (strict) against Kubernetes schemas; CRD kinds against their structure."""
    docs = render(helm, _values_file(values_file))
    assert {"Deployment", "Service", "ServiceAccount", "ConfigMap"} <= {d["kind"] for d in docs}
    names: set[tuple[str, str]] = set()
    for doc in docs:
        template = doc.pop("__template__")
        kind, meta = doc["kind"], doc["metadata"]
        assert DNS_SUBDOMAIN.fullmatch(meta["name"]) and len(meta["name"]) <= 63, meta["name"]
        assert meta.get("namespace"), f"{template}: {kind} without a namespace"
        assert (kind, meta["name"]) not in names, f"duplicate {kind} {meta['name']}"
        names.add((kind, meta["name"]))
        assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE
        if kind == "ServiceMonitor":
            check_service_monitor(doc, docs)
        elif kind == "PrometheusRule":
            check_prometheus_rule(doc)
        else:
            try:
                kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = ".".join(str(p) for p in error.path)
                pytest.fail(f"{template}: {kind} invalid at {path}: {error.message}")
        doc["__template__"] = template


def check_service_monitor(doc: dict[str, Any], docs: list[dict[str, Any]]) -> None:
    """A monitoring.coreos.com/v1 ServiceMonitor that selects our Service by its port name."""
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(doc) <= {"apiVersion", "kind", "metadata", "spec", "__template__"}
    spec = doc["spec"]
    assert set(spec) <= {"jobLabel", "namespaceSelector", "selector", "endpoints"}
    service = one(docs, "Service")
    labels = spec["selector"]["matchLabels"]
    assert labels.items() <= service["metadata"]["labels"].items()
    assert spec["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    port_names = {port["name"] for port in service["spec"]["ports"]}
    assert isinstance(spec["endpoints"], list)
    assert spec["endpoints"]
    allowed = {
        "port",
        "path",
        "scheme",
        "interval",
        "scrapeTimeout",
        "tlsConfig",
        "relabelings",
        "metricRelabelings",
    }
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= allowed, set(endpoint) - allowed
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"
        assert endpoint["scheme"] in ("http", "https")
        for key in ("interval", "scrapeTimeout"):
            assert DURATION.fullmatch(endpoint[key]), endpoint[key]
        for key in ("relabelings", "metricRelabelings"):
            for relabel in endpoint.get(key, []):
                assert isinstance(relabel, dict)
                assert relabel.get("action", "replace") in {
                    "replace",
                    "keep",
                    "drop",
                    "keepequal",
                    "dropequal",
                    "hashmod",
                    "labelmap",
                    "labeldrop",
                    "labelkeep",
                    "lowercase",
                    "uppercase",
                }


def check_prometheus_rule(doc: dict[str, Any]) -> None:
    """A monitoring.coreos.com/v1 PrometheusRule whose spec.groups is a valid rule-group list."""
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(doc["spec"]) == {"groups"}
    groups = doc["spec"]["groups"]
    assert isinstance(groups, list)
    assert groups
    group_keys = {"name", "interval", "rules", "limit", "partial_response_strategy", "labels"}
    rule_keys = {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
    seen: set[str] = set()
    for group in groups:
        assert set(group) <= group_keys, set(group) - group_keys
        assert isinstance(group["name"], str)
        assert group["name"] not in seen, f"duplicate group {group['name']}"
        seen.add(group["name"])
        if "interval" in group:
            assert DURATION.fullmatch(group["interval"])
        assert isinstance(group["rules"], list)
        for rule in group["rules"]:
            assert set(rule) <= rule_keys, set(rule) - rule_keys
            assert ("record" in rule) != ("alert" in rule), rule
            assert isinstance(rule["expr"], str | int | float)
            assert str(rule["expr"]).strip()
            for key in ("for", "keep_firing_for"):
                if key in rule:
                    assert DURATION.fullmatch(rule[key]), rule[key]
            for key in ("labels", "annotations"):
                for name, value in rule.get(key, {}).items():
                    assert isinstance(name, str)
                    assert isinstance(value, str), f"{rule}: {key}.{name} is not a string"


# ---- what the pods run ------------------------------------------------------------------------


def _admin_on(values: dict[str, Any]) -> bool:
    """Whether values configure an admin token (the chart's rule, written out independently)."""
    key = _get(values, "secretKeys.adminToken")
    from_existing = bool(values.get("existingSecret")) and key != ""
    return bool(_get(values, "secret.adminToken") or _get(values, "config.admin.tokens") or from_existing)


@pytest.mark.parametrize("values_file", _cases())
def test_probes_and_ports(helm: ModuleType, values_file: Path | None) -> None:
    """Liveness /healthz, readiness /readyz on port 9810; the admin port 9811 only with admin tokens."""
    values = _values_file(values_file)
    docs = render(helm, values)
    box = container(docs)
    scheme = "HTTPS" if _get(values, "tls.enabled") else "HTTP"
    ports = [{"name": "metrics", "containerPort": PORT, "protocol": "TCP"}]
    service_ports = [{"name": "metrics", "port": PORT, "targetPort": "metrics", "protocol": "TCP"}]
    if _admin_on(values):
        ports.append({"name": "admin", "containerPort": ADMIN_PORT, "protocol": "TCP"})
        service_ports.append({"name": "admin", "port": ADMIN_PORT, "targetPort": "admin", "protocol": "TCP"})
    assert box["ports"] == ports
    assert box["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics", "scheme": scheme}
    assert box["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics", "scheme": scheme}
    service = one(docs, "Service")
    assert service["spec"]["ports"] == service_ports
    deployment = one(docs, "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == selector
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert box["args"] == ["run", "--config", CONFIG_PATH]
    config = config_of(docs)
    assert config["listen"] == f"0.0.0.0:{PORT}"
    if _admin_on(values):
        assert config["admin"]["listen"] == f"0.0.0.0:{ADMIN_PORT}"
    else:
        assert "listen" not in config["admin"], "no admin listener without a token: the exporter's loopback default"


@pytest.mark.parametrize("values_file", _cases())
def test_secure_defaults(helm: ModuleType, values_file: Path | None) -> None:
    """Non-root, read-only root, no privilege escalation, no capabilities, RuntimeDefault seccomp."""
    docs = render(helm, _values_file(values_file))
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert not pod.get("hostNetwork")
    assert not pod.get("hostPID")
    for volume in pod["volumes"]:
        assert "hostPath" not in volume
    box = container(docs)
    ctx = box["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["runAsUser"] != 0
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["privileged"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    for key in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(box["resources"][key])
    account = one(docs, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    mounts = {m["name"]: m for m in box["volumeMounts"]}
    assert mounts["config"]["mountPath"] == CONFIG_PATH
    assert mounts["config"]["readOnly"] is True
    assert mounts["tmp"]["mountPath"] == "/tmp"


def test_schema_refuses_insecure_or_secret_bearing_values(helm: ModuleType) -> None:
    """Secrets in the config, root, privilege escalation, TLS without a Secret, short tokens, open admin peers."""
    everyone: dict[str, Any] = {"namespaceSelector": {}}
    bad: list[dict[str, Any]] = [
        {"config": {"mongodb": {"uri": "mongodb://u:p@h/"}}},
        {"config": {"mongodb": {"uri_file": "/x"}}},
        {"config": {"admin": {"tokens": [{"name": "a", "role": "write", "token": "t"}]}}},
        {"securityContext": {"runAsNonRoot": False}},
        {"securityContext": {"allowPrivilegeEscalation": True}},
        {"podSecurityContext": {"runAsUser": 0}},
        {"tls": {"enabled": True}},
        {"config": {"pools": [{"name": "bad name", "database": "d", "collection": "c"}]}},
        {"secret": {"mongodbUri": "http://not-mongo"}},
        # The chart sets the admin listener itself: the config may not move or unlock it.
        {"config": {"admin": {"listen": "0.0.0.0:9999"}}},
        {"config": {"admin": {"allow_plaintext": True}}},
        {"config": {"admin": {"tls": {"cert_file": "/c", "key_file": "/k"}}}},
        # Tokens the exporter would refuse at start-up are refused at install time.
        {"secret": {"adminToken": "x" * 23}, "admin": {"allowPlaintext": True}},
        {"secret": {"adminTokens": {"alice": "x" * 23}}, "admin": {"allowPlaintext": True}},
        {"admin": {"allowPlaintext": "yes"}},
        {"admin": {"containerPort": 70000}},
        # An admin peer must not admit every namespace or every address; a peer must say something.
        {"networkPolicy": {"admin": {"from": [everyone]}}},
        {"networkPolicy": {"admin": {"from": [{**everyone, "podSelector": {"matchLabels": {"a": "b"}}}]}}},
        {"networkPolicy": {"admin": {"from": [{"namespaceSelector": {"matchLabels": {}}}]}}},
        {"networkPolicy": {"admin": {"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}}},
        {"networkPolicy": {"admin": {"from": [{"ipBlock": {"cidr": "::/0"}}]}}},
        {"networkPolicy": {"metrics": {"from": [{}]}}},
        # The old single list is gone: it would silently stop applying to anything.
        {"networkPolicy": {"ingressFrom": [{"podSelector": {}}]}},
        {"serviceMonitor": {"tlsConfig": {"insecureSkipVerify": "false"}}},
        {"networkpolicy": {"enabled": False}},
    ]
    with helm.Chart.load(str(CHART)) as chart:
        for values in bad:
            with pytest.raises(helm.HelmValuesError):
                chart.render(values, name=RELEASE, namespace=NAMESPACE)
        # A peer that names its namespace is fine: the refusals above are not blanket ones.
        good = {"networkPolicy": {"admin": {"from": [{"namespaceSelector": {"matchLabels": {"team": "ops"}}}]}}}
        chart.render(good, name=RELEASE, namespace=NAMESPACE)


# ---- secrets ----------------------------------------------------------------------------------

SECRET_VALUES: dict[str, Any] = {
    "secret": {
        "mongodbUri": "mongodb://exporter:s3cret-pw@mongo:27017/?replicaSet=rs0",
        "adminToken": ADMIN_TOKEN,
        "adminTokens": {"alice": ALICE_TOKEN},
    },
    "config": {
        "pools": [{"name": "telegram", "database": "sessions", "collection": "telegram"}],
        "admin": {"tokens": [{"name": "alice", "role": "write"}]},
    },
    "admin": {"allowPlaintext": True},
}


def _env(box: dict[str, Any]) -> dict[str, Any]:
    """The container's env as name -> entry."""
    return {entry["name"]: entry for entry in box.get("env", [])}


def test_chart_secret_carries_the_secrets_and_nothing_else_does(helm: ModuleType) -> None:
    """URI and tokens live only in the Secret; pods reference them; the ConfigMap has file paths."""
    docs = render(helm, SECRET_VALUES)
    secret = one(docs, "Secret")
    name = secret["metadata"]["name"]
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == {
        "mongodb-uri": SECRET_VALUES["secret"]["mongodbUri"],
        "admin-token": ADMIN_TOKEN,
        "admin-token-alice": ALICE_TOKEN,
    }
    env = _env(container(docs))
    assert env["SESSION_POOL_EXPORTER_MONGODB__URI"]["valueFrom"]["secretKeyRef"] == {
        "name": name,
        "key": "mongodb-uri",
    }
    assert env["SESSION_POOL_EXPORTER_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": name,
        "key": "admin-token",
        "optional": False,
    }
    for entry in env.values():
        assert "value" not in entry or "s3cret" not in entry["value"]
    config = config_of(docs)
    assert "uri" not in config.get("mongodb", {})
    assert config["admin"]["tokens"] == [
        {
            "name": "alice",
            "role": "write",
            "token_file": "/etc/session-pool-exporter/tokens/admin-token-alice",
        }
    ]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    tokens = next(v for v in pod["volumes"] if v["name"] == "admin-tokens")
    assert tokens["secret"]["secretName"] == name
    assert tokens["secret"]["items"] == [{"key": "admin-token-alice", "path": "admin-token-alice"}]
    mounts = {m["name"]: m["mountPath"] for m in container(docs)["volumeMounts"]}
    assert mounts["admin-tokens"] == "/etc/session-pool-exporter/tokens"
    for doc in docs:
        if doc["kind"] == "Secret":
            continue
        for text in _walk_strings(doc):
            assert "s3cret" not in text, f"a secret value leaked into {doc['kind']}"
            for value in decoded.values():
                assert base64.b64encode(value.encode()).decode() not in text


def test_named_token_without_a_secret_value_fails_to_render(helm: ModuleType) -> None:
    """A token named in config.admin.tokens but absent from secret.adminTokens is an error."""
    values = {"config": {"admin": {"tokens": [{"name": "bob", "role": "read"}]}}, "admin": {"allowPlaintext": True}}
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmRenderError, match="bob"):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_existing_secret_replaces_the_chart_secret(helm: ModuleType) -> None:
    """With existingSecret no Secret is rendered and every reference points at the given one."""
    values = {
        "existingSecret": "creds",
        "secretKeys": {"mongodbUri": "uri", "adminToken": "token"},
        "config": {"admin": {"tokens": [{"name": "ops", "role": "write"}]}},
        "admin": {"allowPlaintext": True},
    }
    docs = render(helm, values)
    assert of_kind(docs, "Secret") == []
    env = _env(container(docs))
    assert env["SESSION_POOL_EXPORTER_MONGODB__URI"]["valueFrom"]["secretKeyRef"] == {
        "name": "creds",
        "key": "uri",
    }
    admin = env["SESSION_POOL_EXPORTER_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert admin == {"name": "creds", "key": "token", "optional": True}
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    tokens = next(v for v in pod["volumes"] if v["name"] == "admin-tokens")
    assert tokens["secret"]["secretName"] == "creds"
    assert "WARNING: no MongoDB URI" not in notes(helm, values)


def test_existing_secret_without_an_admin_token_key_turns_the_admin_api_off(helm: ModuleType) -> None:
    """existingSecret may hold an admin token, so it needs a TLS choice; secretKeys.adminToken "" says it has none."""
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmRenderError, match="plain HTTP"):
        chart.render({"existingSecret": "creds"}, name=RELEASE, namespace=NAMESPACE)
    docs = render(helm, {"existingSecret": "creds", "secretKeys": {"adminToken": ""}})
    box = container(docs)
    assert set(_env(box)) == {"SESSION_POOL_EXPORTER_MONGODB__URI"}
    assert [port["name"] for port in box["ports"]] == ["metrics"]
    assert [port["name"] for port in one(docs, "Service")["spec"]["ports"]] == ["metrics"]
    assert "listen" not in config_of(docs)["admin"]
    assert "admin API" not in notes(helm, {"existingSecret": "creds", "secretKeys": {"adminToken": ""}})


def test_defaults_warn_about_what_must_be_set(helm: ModuleType) -> None:
    """With no user values there is no Secret, no secret env, and NOTES says what is missing."""
    docs = render(helm, {})
    assert of_kind(docs, "Secret") == []
    assert "env" not in container(docs)
    text = notes(helm, {})
    assert "secret.mongodbUri" in text
    assert "config.pools" in text


def test_tls_mounts_the_certificate_and_configures_the_exporter(helm: ModuleType) -> None:
    """tls.enabled mounts the kubernetes.io/tls Secret and points the config at its files."""
    docs = render(helm, {"tls": {"enabled": True, "secretName": "spe-tls"}})
    config = config_of(docs)
    assert config["tls"] == {
        "cert_file": "/etc/session-pool-exporter/tls/tls.crt",
        "key_file": "/etc/session-pool-exporter/tls/tls.key",
    }
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    tls = next(v for v in pod["volumes"] if v["name"] == "tls")
    assert tls["secret"]["secretName"] == "spe-tls"
    mounts = {m["name"]: m["mountPath"] for m in container(docs)["volumeMounts"]}
    assert mounts["tls"] == "/etc/session-pool-exporter/tls"
    assert "tls" not in config_of(render(helm, {}))
    assert "tls" not in config["admin"], "no admin listener without a token"


# ---- the admin API's listener -----------------------------------------------------------------


def test_admin_api_without_tls_needs_an_explicit_plaintext_choice(helm: ModuleType) -> None:
    """An admin token without TLS fails to render, naming the ways out; admin.allowPlaintext renders allow_plaintext."""
    values: dict[str, Any] = {"secret": {"adminToken": ADMIN_TOKEN}}
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmRenderError) as refused:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    for hint in ("plain HTTP", "tls.enabled=true", "admin.allowPlaintext=true"):
        assert hint in str(refused.value)
    admin = config_of(render(helm, {**values, "admin": {"allowPlaintext": True}}))["admin"]
    assert admin["listen"] == f"0.0.0.0:{ADMIN_PORT}"
    assert admin["allow_plaintext"] is True
    assert "tls" not in admin
    assert "over plain HTTP (admin.allowPlaintext)" in notes(helm, {**values, "admin": {"allowPlaintext": True}})


def test_admin_api_with_tls_serves_the_chart_certificate(helm: ModuleType) -> None:
    """With tls.enabled the admin listener gets the same certificate, and plain HTTP stays off even if allowed."""
    values: dict[str, Any] = {"secret": {"adminToken": ADMIN_TOKEN}, "tls": {"enabled": True, "secretName": "t"}}
    for admin_values in ({}, {"admin": {"allowPlaintext": True}}):
        config = config_of(render(helm, {**values, **admin_values}))
        assert config["admin"]["listen"] == f"0.0.0.0:{ADMIN_PORT}"
        files = {
            "cert_file": "/etc/session-pool-exporter/tls/tls.crt",
            "key_file": "/etc/session-pool-exporter/tls/tls.key",
        }
        assert config["admin"]["tls"] == config["tls"] == files
        assert config["admin"]["allow_plaintext"] is False
    assert "over HTTPS" in notes(helm, values)


def test_admin_ports_are_configurable_and_must_not_clash(helm: ModuleType) -> None:
    """admin.containerPort and service.adminPort move the admin port; the metrics ports' numbers are refused."""
    base: dict[str, Any] = {"secret": {"adminToken": ADMIN_TOKEN}}
    moved: dict[str, Any] = {
        **base,
        "admin": {"containerPort": 9900, "allowPlaintext": True},
        "service": {"adminPort": 443},
    }
    docs = render(helm, moved)
    assert {"name": "admin", "containerPort": 9900, "protocol": "TCP"} in container(docs)["ports"]
    service_ports = one(docs, "Service")["spec"]["ports"]
    assert {"name": "admin", "port": 443, "targetPort": "admin", "protocol": "TCP"} in service_ports
    assert config_of(docs)["admin"]["listen"] == "0.0.0.0:9900"
    clashes: list[tuple[dict[str, Any], str]] = [
        ({"admin": {"containerPort": PORT, "allowPlaintext": True}}, "admin.containerPort"),
        ({"admin": {"allowPlaintext": True}, "service": {"adminPort": PORT}}, "service.adminPort"),
    ]
    with helm.Chart.load(str(CHART)) as chart:
        for extra, match in clashes:
            with pytest.raises(helm.HelmRenderError, match=match):
                chart.render({**base, **extra}, name=RELEASE, namespace=NAMESPACE)


# ---- the helm test hook -----------------------------------------------------------------------


def _test_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The `helm test` pod."""
    return one(docs, "Pod")


def test_helm_test_pod_scrapes_the_service(helm: ModuleType) -> None:
    """A test hook pod of the exporter's image that scrapes the Service's metrics port; not one of its endpoints."""
    image = {"repository": "reg/spe", "tag": "1.2.3"}
    values = {**SECRET_VALUES, "tls": {"enabled": True, "secretName": "t"}, "image": image}
    docs = render(helm, values)
    pod = _test_pod(docs)
    assert pod["__template__"].endswith("templates/tests/test-metrics.yaml")
    annotations = pod["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "test"
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    service = one(docs, "Service")
    assert not _selects({"matchLabels": service["spec"]["selector"]}, pod["metadata"]["labels"])
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"] == one(docs, "Deployment")["spec"]["template"]["spec"]["securityContext"]
    (box,) = spec["containers"]
    assert box["image"] == container(docs)["image"] == "reg/spe:1.2.3"
    assert box["command"][:2] == ["python", "-c"]
    assert box["securityContext"] == container(docs)["securityContext"]
    env = {entry["name"]: entry["value"] for entry in box["env"]}
    metrics_port = next(port["port"] for port in service["spec"]["ports"] if port["name"] == "metrics")
    meta = service["metadata"]
    assert env["METRICS_URL"] == f"https://{meta['name']}.{meta['namespace']}.svc:{metrics_port}/metrics"
    assert env["EXPECTED_POOLS"] == "telegram"
    assert of_kind(render(helm, {"tests": {"enabled": False}}), "Pod") == []
    assert _test_pod(render(helm, {}))["spec"]["containers"][0]["env"][0]["value"].startswith("http://")


# ---- config and its checksum ------------------------------------------------------------------


def test_config_is_rendered_from_values(helm: ModuleType) -> None:
    """pools, defaults, mongodb options and admin settings reach the config file unchanged."""
    pools = [
        {"name": "telegram", "database": "sessions", "collection": "telegram"},
        {
            "name": "mail",
            "database": "sessions",
            "collection": "mail",
            "interval": 30,
            "min_active_sessions": 5,
            "stored_timezone": "Europe/Moscow",
            "fields": {"active": "enabled"},
        },
    ]
    values = {
        "config": {
            "pools": pools,
            "defaults": {"interval": 20, "max_age": 90},
            "log": {"level": "debug"},
        }
    }
    config = config_of(render(helm, values))
    assert config["pools"] == pools
    assert config["defaults"]["interval"] == 20
    assert config["defaults"]["max_age"] == 90
    assert config["defaults"]["lock_time"] == 600
    assert config["log"] == {"level": "debug", "format": "json"}
    assert config["mongodb"]["write_concern"]["w"] == "majority"
    assert config["admin"]["max_period"] == 604800
    assert config["admin"]["audit"]["collection"] == "audit"


def _checksums(helm: ModuleType, values: dict[str, Any]) -> dict[str, str]:
    """The pod template's checksum/* annotations."""
    docs = render(helm, values)
    annotations = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    return {k: v for k, v in annotations.items() if k.startswith("checksum/")}


def test_checksum_annotation_follows_the_config(helm: ModuleType) -> None:
    """Same values, same checksum; any config or Secret change, a new one (the pods roll)."""
    base: dict[str, Any] = {
        "secret": {"mongodbUri": "mongodb://a/"},
        "config": {"pools": [{"name": "p", "database": "d", "collection": "c"}]},
    }
    first = _checksums(helm, base)
    assert set(first) == {"checksum/config", "checksum/secret"}
    assert _checksums(helm, base) == first
    assert re.fullmatch(r"[0-9a-f]{64}", first["checksum/config"])
    changed_pool = {**base, "config": {"pools": [{"name": "p", "database": "d", "collection": "x"}]}}
    assert _checksums(helm, changed_pool)["checksum/config"] != first["checksum/config"]
    changed_interval = {**base, "config": {**base["config"], "defaults": {"interval": 60}}}
    assert _checksums(helm, changed_interval)["checksum/config"] != first["checksum/config"]
    changed_uri = {**base, "secret": {"mongodbUri": "mongodb://b/"}}
    after = _checksums(helm, changed_uri)
    assert after["checksum/secret"] != first["checksum/secret"]
    assert after["checksum/config"] == first["checksum/config"]
    assert hashlib.sha256(b"").hexdigest() != first["checksum/secret"]


# ---- optional parts ---------------------------------------------------------------------------


def test_optional_parts_are_off_by_default(helm: ModuleType) -> None:
    """Defaults render no CRDs, no dashboards, no PodDisruptionBudget; the NetworkPolicy and the test pod are on."""
    kinds = sorted(doc["kind"] for doc in render(helm, {}))
    assert kinds == sorted(["Deployment", "Service", "ServiceAccount", "ConfigMap", "NetworkPolicy", "Pod"])


def test_service_monitor_scrapes_the_service(helm: ModuleType) -> None:
    """ServiceMonitor: our Service's port, /metrics, https + tlsConfig with TLS, extra labels."""
    values = {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}, "interval": "15s"}}
    docs = render(helm, values)
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kps"
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "http"
    assert endpoint["interval"] == "15s"
    assert "tlsConfig" not in endpoint
    # Prometheus Operator sets `job` to the Service's value of the jobLabel label; the alerts'
    # `job=~"..."` matchers (absent/up alerts) must select that job, or they never fire.
    job = one(docs, "Service")["metadata"]["labels"][monitor["spec"]["jobLabel"]]
    matchers = set()
    for path in rule_sources().values():
        matchers |= set(re.findall(r'job=~?"([^"]+)"', path.read_text(encoding="utf-8")))
    for pattern in matchers:
        assert re.fullmatch(pattern, job), f"job {job!r} escapes the alerts' matcher {pattern!r}"
    values["tls"] = {"enabled": True, "secretName": "t"}
    docs = render(helm, values)
    endpoint = one(docs, "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "https"
    # The certificate is checked by default, against the name clients use: the Service's.
    service = one(docs, "Service")["metadata"]
    server_name = f"{service['name']}.{service['namespace']}.svc"
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": False, "serverName": server_name}
    ca = {"secret": {"name": "t", "key": "ca.crt"}}
    values["serviceMonitor"]["tlsConfig"] = {"ca": ca, "serverName": "exporter.example.internal"}
    endpoint = one(render(helm, values), "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": False, "serverName": "exporter.example.internal", "ca": ca}
    assert "insecureSkipVerify is true" not in notes(helm, values)
    values["serviceMonitor"]["tlsConfig"] = {"insecureSkipVerify": True}
    assert "insecureSkipVerify is true" in notes(helm, values)


def test_prometheus_rules_equal_the_alert_files(helm: ModuleType) -> None:
    """One PrometheusRule per alerts/*.yml rule file, spec.groups equal to the file's groups."""
    sources = rule_sources()
    assert sources, "alerts/ has no rule file"
    rules = of_kind(render(helm, {"prometheusRule": {"enabled": True, "labels": {"r": "x"}}}), "PrometheusRule")
    by_source = {rule["metadata"]["annotations"]["session-pool-exporter/source"]: rule for rule in rules}
    assert set(by_source) == {f"alerts/{name}" for name in sources}
    for name, path in sources.items():
        rule = by_source[f"alerts/{name}"]
        assert rule["spec"]["groups"] == yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        assert rule["metadata"]["labels"]["r"] == "x"


@pytest.mark.integration
def test_prometheus_rules_pass_promtool(helm: ModuleType, tmp_path: Path) -> None:
    """What the PrometheusRule deploys is a rule file Prometheus itself accepts."""
    promtool = shutil.which("promtool")
    if promtool is None:
        _missing("promtool (Debian package prometheus)")
    assert promtool is not None
    rules = of_kind(render(helm, {"prometheusRule": {"enabled": True}}), "PrometheusRule")
    assert rules
    for index, rule in enumerate(rules):
        target = tmp_path / f"rules-{index}.yml"
        target.write_text(yaml.safe_dump(rule["spec"]), encoding="utf-8")
        proc = subprocess.run(
            [promtool, "check", "rules", str(target)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dashboard_configmap_equals_the_dashboard_files(helm: ModuleType) -> None:
    """The sidecar ConfigMap holds each dashboards/*.json byte for byte, labelled for Grafana."""
    values = {"grafanaDashboards": {"enabled": True, "namespace": "grafana", "folder": "Pools"}}
    docs = render(helm, values)
    dashboards = [doc for doc in of_kind(docs, "ConfigMap") if doc["metadata"]["name"].endswith("-dashboards")]
    sources = dashboard_sources()
    if not sources:
        assert dashboards == [], "no dashboards/*.json, so no dashboard ConfigMap"
        return
    assert len(dashboards) == 1
    configmap = dashboards[0]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == "grafana"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Pools"}
    expected = {name: path.read_text(encoding="utf-8") for name, path in sources.items()}
    assert configmap["data"] == expected
    for name, text in configmap["data"].items():
        assert isinstance(json.loads(text), dict), name
    assert len(json.dumps(configmap["data"])) < 1_000_000, "over the ConfigMap size limit"


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a matchLabels selector selects an object with these labels."""
    wanted: dict[str, str] = selector.get("matchLabels", {})
    return wanted.items() <= labels.items()


def test_network_policy_is_on_and_admits_the_metrics_port_only(helm: ModuleType) -> None:
    """By default the NetworkPolicy selects our pods and admits any source to the metrics port, nobody to admin."""
    docs = render(helm, {**SECRET_VALUES})
    policy = one(docs, "NetworkPolicy")
    deployment = one(docs, "Deployment")
    assert policy["spec"]["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert {port["name"] for port in container(docs)["ports"]} == {"metrics", "admin"}
    # One rule, for the metrics port, with no `from` (any source); the admin port has none, so it is closed.
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "metrics", "protocol": "TCP"}]}]
    assert "admits nobody to the admin port" in notes(helm, SECRET_VALUES)
    # An empty admin list is the same: nobody (an empty `from` would have meant everyone).
    values = {**SECRET_VALUES, "networkPolicy": {"admin": {"from": []}}}
    assert one(render(helm, values), "NetworkPolicy")["spec"]["ingress"] == policy["spec"]["ingress"]
    assert of_kind(render(helm, {"networkPolicy": {"enabled": False}}), "NetworkPolicy") == []


def test_network_policy_gives_each_port_its_own_peers(helm: ModuleType) -> None:
    """metrics.from and admin.from make separate rules; the helm test pod still reaches /metrics; egress if asked."""
    prometheus = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    operators = [{"podSelector": {"matchLabels": {"app": "console"}}}, {"ipBlock": {"cidr": "10.1.2.0/24"}}]
    egress = [{"ports": [{"port": 27017, "protocol": "TCP"}]}]
    network = {"metrics": {"from": prometheus}, "admin": {"from": operators}, "egress": egress}
    docs = render(helm, {**SECRET_VALUES, "networkPolicy": network})
    policy = one(docs, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["egress"] == egress
    metrics_rule, admin_rule = policy["spec"]["ingress"]
    assert metrics_rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert admin_rule == {"ports": [{"port": "admin", "protocol": "TCP"}], "from": operators}
    assert metrics_rule["from"][: len(prometheus)] == prometheus
    # The only extra peer is the release's test pod, in the release's namespace (no namespaceSelector).
    extra = metrics_rule["from"][len(prometheus) :]
    assert len(extra) == 1
    assert set(extra[0]) == {"podSelector"}
    test_pod = one(docs, "Pod")
    assert _selects(extra[0]["podSelector"], test_pod["metadata"]["labels"])
    assert not _selects(extra[0]["podSelector"], one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"])
    no_tests = {**SECRET_VALUES, "networkPolicy": network, "tests": {"enabled": False}}
    assert one(render(helm, no_tests), "NetworkPolicy")["spec"]["ingress"][0]["from"] == prometheus
    # Admin peers without an admin API: no rule for a port that does not exist.
    policy = one(render(helm, {"networkPolicy": network}), "NetworkPolicy")
    assert [rule["ports"][0]["port"] for rule in policy["spec"]["ingress"]] == ["metrics"]


def test_pod_disruption_budget(helm: ModuleType) -> None:
    """PodDisruptionBudget selects our pods with maxUnavailable by default, or minAvailable."""
    docs = render(helm, {"podDisruptionBudget": {"enabled": True}})
    budget = one(docs, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in budget["spec"]
    assert budget["spec"]["selector"]["matchLabels"] == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    values = {"replicaCount": 3, "podDisruptionBudget": {"enabled": True, "minAvailable": 2}}
    budget = one(render(helm, values), "PodDisruptionBudget")
    assert budget["spec"] == {
        "minAvailable": 2,
        "selector": budget["spec"]["selector"],
    }


def test_sharding_runs_a_stateful_set_whose_pods_split_the_pools(
    helm: ModuleType, kubernetes_validate: ModuleType, tmp_path: Path
) -> None:
    """`sharding.enabled`: a StatefulSet instead of the Deployment, the very same pod plus its index from the
    pod's ordinal, and `shard` in the config; each pod's config loads and names its own index."""
    models = _module("exporter.config", "session-pool-exporter")
    plain = render(helm, SECRET_VALUES)
    values = {**SECRET_VALUES, "replicaCount": 4, "sharding": {"enabled": True, "replicas": 2}}
    docs = render(helm, values)
    assert of_kind(docs, "Deployment") == []
    sts = one(docs, "StatefulSet")
    kubernetes_validate.validate({k: v for k, v in sts.items() if k != "__template__"}, KUBE_VERSION, strict=True)
    assert sts["spec"]["replicas"] == 4
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["minReadySeconds"] == 30  # a scrape interval between one pod's restart and the next
    assert sts["spec"]["serviceName"] == one(docs, "Service")["metadata"]["name"]
    pod, plain_pod = sts["spec"]["template"], one(plain, "Deployment")["spec"]["template"]
    box = pod["spec"]["containers"][0]
    index = _env(box).pop("SESSION_POOL_EXPORTER_SHARD__INDEX")
    assert index["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    box["env"] = [e for e in box["env"] if e["name"] != "SESSION_POOL_EXPORTER_SHARD__INDEX"]
    for meta in (pod["metadata"], plain_pod["metadata"]):
        meta["annotations"].pop("checksum/config")
    assert pod == plain_pod
    assert config_of(docs)["shard"] == {"count": 4, "replicas": 2}
    assert "shard" not in config_of(plain)
    config_file = _pod_files(docs, tmp_path)
    env = {"SESSION_POOL_EXPORTER_MONGODB__URI": "mongodb://127.0.0.1:27017/"}
    for ordinal in range(4):
        shard = models.load_config(config_file, {**env, "SESSION_POOL_EXPORTER_SHARD__INDEX": str(ordinal)}).shard
        assert (shard.index, shard.count, shard.replicas) == (ordinal, 4, 2)
    with pytest.raises(Exception, match=r"sharding.replicas \(2\) is more than replicaCount \(1\)"):
        render(helm, {**values, "replicaCount": 1})


# ---- one source of truth ----------------------------------------------------------------------


def test_chart_copies_have_not_drifted_from_alerts_and_dashboards() -> None:
    """files/alerts and files/dashboards hold exactly alerts/*.yml rule files and dashboards/*.json."""
    chart_files = CHART / "files"
    pairs = [
        (rule_sources(), {p.name: p for p in (chart_files / "alerts").glob("*.yml")}),
        (dashboard_sources(), {p.name: p for p in (chart_files / "dashboards").glob("*.json")}),
    ]
    hint = "run `python scripts/sync_chart.py` and commit the chart copies"
    for sources, copies in pairs:
        assert set(copies) == set(sources), f"{sorted(copies)} != {sorted(sources)}: {hint}"
        for name, source in sources.items():
            assert copies[name].read_bytes() == source.read_bytes(), f"{name} drifted: {hint}"


@pytest.mark.integration
def test_sync_script_check_mode_agrees() -> None:
    """`scripts/sync_chart.py --check` exits 0 on the committed tree."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "sync_chart.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.integration
def test_sync_script_detects_and_repairs_drift(tmp_path: Path) -> None:
    """On a scratch tree: a changed, a new and a removed source are reported, then synced away."""
    tree = tmp_path / "repo"
    shutil.copytree(ROOT / "alerts", tree / "alerts")
    shutil.copytree(ROOT / "dashboards", tree / "dashboards")
    shutil.copytree(ROOT / "scripts", tree / "scripts")
    (tree / "helm" / "session-pool-exporter" / "files").mkdir(parents=True)
    shutil.copy(CHART / "Chart.yaml", tree / "helm" / "session-pool-exporter" / "Chart.yaml")
    (tree / "exporter").mkdir()
    shutil.copy(ROOT / "exporter" / "_version.py", tree / "exporter" / "_version.py")
    script = [sys.executable, str(tree / "scripts" / "sync_chart.py")]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        """Run the copied script against the scratch tree."""
        return subprocess.run([*script, *args], capture_output=True, text=True, check=False, timeout=60)

    assert run().returncode == 0
    assert run("--check").returncode == 0
    (tree / "alerts" / "extra.yml").write_text("groups: []\n", encoding="utf-8")
    (tree / "dashboards" / "new.json").write_text('{"title": "x"}\n', encoding="utf-8")
    proc = run("--check")
    assert proc.returncode == 1
    assert "extra.yml" in proc.stderr
    assert "new.json" in proc.stderr
    assert run().returncode == 0
    assert run("--check").returncode == 0
    (tree / "dashboards" / "new.json").unlink()
    (tree / "alerts" / "extra.yml").write_text("groups: [{name: g, rules: []}]\n", encoding="utf-8")
    proc = run("--check")
    assert proc.returncode == 1
    assert "new.json: no source" in proc.stderr
    assert "extra.yml: differs" in proc.stderr
    assert run().returncode == 0
    assert run("--check").returncode == 0
    # The version has one source: the chart follows exporter/_version.py.
    (tree / "exporter" / "_version.py").write_text('__version__ = "9.8.7"\n', encoding="utf-8")
    proc = run("--check")
    assert proc.returncode == 1 and "Chart.yaml: version/appVersion differ" in proc.stderr
    assert run().returncode == 0
    chart = yaml.safe_load((tree / "helm" / "session-pool-exporter" / "Chart.yaml").read_text(encoding="utf-8"))
    assert (chart["version"], chart["appVersion"]) == ("9.8.7", "9.8.7")


def _chart_readme_script() -> ModuleType:
    """scripts/chart_readme.py as a module."""
    return load_script("scripts/chart_readme.py", "chart_readme")


def test_chart_readme_is_generated_from_the_values() -> None:
    """The committed chart README is exactly what scripts/chart_readme.py writes from values.yaml."""
    wanted: str = _chart_readme_script().render(ROOT)
    committed = (CHART / "README.md").read_text(encoding="utf-8")
    assert committed == wanted, "run `python scripts/chart_readme.py` and commit helm/session-pool-exporter/README.md"


def _leaves(node: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of every value of a values tree that is not itself a non-empty map."""
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_chart_readme_lists_every_value_with_its_default() -> None:
    """Each value of values.yaml has a described row in the README (its own or its map's) showing its default."""
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    rows: dict[str, tuple[str, str]] = {}
    for line in (CHART / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 3 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = (cells[1], cells[2])
    leaves = list(_leaves(values))
    assert len(leaves) > 80
    for leaf in leaves:
        covering = [key for key in rows if leaf == key or leaf.startswith(key + ".")]
        with_default = [key for key in covering if rows[key][0]]
        assert len(with_default) == 1, f"{leaf}: rows {covering} in the chart README"
        key = with_default[0]
        default, description = rows[key]
        assert json.loads(default.strip("`")) == _get(values, key), key
        assert description, key
    assert set(rows) <= {leaf.rsplit(".", n)[0] for leaf in leaves for n in range(leaf.count(".") + 1)}


@pytest.mark.integration
def test_chart_readme_check_mode_reports_drift_and_undocumented_values(tmp_path: Path) -> None:
    """On a scratch tree: --check exits 1 after a comment changes or a value lacks one; a run repairs drift."""
    tree = tmp_path / "repo"
    shutil.copytree(ROOT / "scripts", tree / "scripts")
    chart = tree / "helm" / "session-pool-exporter"
    chart.mkdir(parents=True)
    for name in ("Chart.yaml", "values.yaml", "README.md"):
        shutil.copy(CHART / name, chart / name)
    script = [sys.executable, str(tree / "scripts" / "chart_readme.py")]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        """Run the copied script against the scratch tree."""
        return subprocess.run([*script, *args], capture_output=True, text=True, check=False, timeout=60)

    assert run("--check").returncode == 0
    values = chart / "values.yaml"
    original = values.read_text(encoding="utf-8")
    values.write_text(original.replace("# Scrape interval.", "# How often Prometheus scrapes."), encoding="utf-8")
    proc = run("--check")
    assert proc.returncode == 1
    assert "README.md: differs from" in proc.stderr
    assert run().returncode == 0
    assert run("--check").returncode == 0
    row = '| `serviceMonitor.interval` | `"30s"` | How often Prometheus scrapes. |'
    assert row in (chart / "README.md").read_text(encoding="utf-8")
    # A value nobody described is an error in both modes, and the README is left alone.
    before = (chart / "README.md").read_text(encoding="utf-8")
    values.write_text(values.read_text(encoding="utf-8") + "\nundocumentedValue: 1\n", encoding="utf-8")
    for args in ((), ("--check",)):
        proc = run(*args)
        assert proc.returncode == 1
        assert "undocumentedValue" in proc.stderr
    assert (chart / "README.md").read_text(encoding="utf-8") == before


# ---- the exporter accepts what the chart deploys ----------------------------------------------


# Keys of the exporter's config that `config` may not hold: the chart sets them itself (from
# containerPort, tls and admin), or they are secrets (from `secret` / existingSecret).
SET_BY_CHART = {"": {"listen", "tls", "shard"}, "admin": {"listen", "tls", "allow_plaintext"}}
SECRETS = {"mongodb": {"uri", "uri_file"}, "admin.tokens[]": {"token", "token_file"}}


def _schema_model_pairs() -> list[tuple[str, str, set[str]]]:
    """(schema path under config, exporter.config model, fields the chart deliberately leaves out)."""
    pairs = [
        ("", "Config"),
        ("mongodb", "MongoConfig"),
        ("mongodb.write_concern", "WriteConcernConfig"),
        ("log", "LogConfig"),
        ("http", "HTTPConfig"),
        ("defaults", "PoolOptions"),
        ("defaults.underperforming", "UnderperformingConfig"),
        ("pools[]", "PoolDefinition"),
        ("pools[].fields", "FieldsConfig"),
        ("discovery[]", "DiscoveryConfig"),
        ("discovery[].options", "DiscoveredOptions"),
        ("discovery[].options.fields", "FieldsConfig"),
        ("discovery[].options.underperforming", "UnderperformingConfig"),
        ("discovery[].options.session_fields", "SessionFieldsConfig"),
        ("pools[].underperforming", "UnderperformingConfig"),
        ("pools[].session_fields", "SessionFieldsConfig"),
        ("admin", "AdminConfig"),
        ("admin.tokens[]", "AdminToken"),
        ("admin.audit", "AuditConfig"),
        ("admin.write_concern", "WriteConcernConfig"),
    ]
    return [(path, model, SET_BY_CHART.get(path, set()) | SECRETS.get(path, set())) for path, model in pairs]


def _schema_node(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local $ref (or the non-null branch of a oneOf) to the object schema it names."""
    while True:
        if "$ref" in node:
            target: Any = schema
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        elif "oneOf" in node:
            node = next(branch for branch in node["oneOf"] if branch.get("type") != "null")
        else:
            return node


def test_values_schema_mirrors_the_exporter_config_models() -> None:
    """Every config key the schema allows exists in exporter.config, and none is missing from it."""
    models = _module("exporter.config", "session-pool-exporter")
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    for path, model_name, left_out in _schema_model_pairs():
        node = _schema_node(schema, schema["properties"]["config"])
        for part in [p for p in path.split(".") if p]:
            node = _schema_node(schema, node["properties"][part.removesuffix("[]")])
            if part.endswith("[]"):
                node = _schema_node(schema, node["items"])
        assert node.get("additionalProperties") is False, f"config.{path}: unknown keys must be refused"
        fields = set(getattr(models, model_name).model_fields)
        allowed = set(node["properties"])
        assert allowed <= fields, f"config.{path}: {allowed - fields} unknown to {model_name}"
        assert fields - left_out <= allowed, f"config.{path}: {fields - left_out - allowed} not allowed"
        assert not allowed & left_out, f"config.{path}: {allowed & left_out} must not be set here"


def test_the_chart_sets_every_key_it_keeps_out_of_config(helm: ModuleType) -> None:
    """What `config` may not hold because the chart sets it is in the rendered config (admin API, TLS, sharding on).

    (The secrets it may not hold are covered by test_chart_secret_carries_the_secrets_and_nothing_else_does.)
    """
    values = {**SECRET_VALUES, "tls": {"enabled": True, "secretName": "t"}, "sharding": {"enabled": True}}
    config = config_of(render(helm, values))
    for path, keys in SET_BY_CHART.items():
        section = config
        for part in [p for p in path.split(".") if p]:
            section = section[part]
        assert keys <= set(section), f"config.{path}: the chart does not set {keys - set(section)}"


@pytest.mark.parametrize("values_file", CI_VALUES, ids=[p.name.removesuffix("-values.yaml") for p in CI_VALUES])
def test_exporter_loads_the_rendered_config(helm: ModuleType, values_file: Path, tmp_path: Path) -> None:
    """exporter.config.load_config accepts the ConfigMap with the env and files the pod gets."""
    models = _module("exporter.config", "session-pool-exporter")
    values = _values_file(values_file)
    # What a user must set (the defaults case leaves it out): a pool and the URI.
    if not _get(values, "config.pools"):
        values = {**values, "config": {**values.get("config", {}), "pools": [SECRET_VALUES["config"]["pools"][0]]}}
    if not values.get("existingSecret") and not _get(values, "secret.mongodbUri"):
        values = {**values, "secret": {**values.get("secret", {}), "mongodbUri": "mongodb://mongo:27017/"}}
    docs = render(helm, values)
    config_file = _pod_files(docs, tmp_path)
    # The pod's environment: every variable the container takes from the Secret, with a valid value.
    fake = {
        "SESSION_POOL_EXPORTER_MONGODB__URI": "mongodb://127.0.0.1:27017/?replicaSet=rs0",
        "SESSION_POOL_EXPORTER_ADMIN_TOKEN": "token-from-env-0123456789abcdef",
    }
    env = {name: fake[name] for name in _env(container(docs))}
    config = models.load_config(config_file, env)
    assert config.listen == f"0.0.0.0:{PORT}"
    assert [pool.name for pool in config.pools] == [pool["name"] for pool in config_of(docs)["pools"]]
    assert (config.tls is not None) == bool(_get(values, "tls.enabled"))
    assert config.admin.enabled == _admin_on(values)
    if config.admin.enabled:
        listen, tls = config.admin_listener()
        assert listen == f"0.0.0.0:{ADMIN_PORT}"
        assert (tls is not None) == bool(_get(values, "tls.enabled"))
        assert config.admin.allow_plaintext == (tls is None)


def _pod_files(docs: list[dict[str, Any]], tmp_path: Path) -> Path:
    """The rendered config under tmp_path, with the token and TLS files the pod would have mounted."""
    text = config_of_text(docs)
    # The pod sees Secret keys as files under these directories; recreate them under tmp_path.
    mount = "/etc/session-pool-exporter"
    for mounted in ("tokens", "tls"):
        (tmp_path / mounted).mkdir()
    for token in yaml.safe_load(text)["admin"]["tokens"]:
        path = tmp_path / "tokens" / Path(token["token_file"]).name
        path.write_text(f"token-of-{token['name']}-0123456789abcdef\n")
        path.chmod(0o600)
    for name in ("tls.crt", "tls.key"):
        (tmp_path / "tls" / name).write_text("placeholder\n")
    config_file = tmp_path / "config.yaml"
    config_file.write_text(text.replace(mount, str(tmp_path)), encoding="utf-8")
    return config_file


def test_the_exporter_refuses_what_the_chart_refuses(helm: ModuleType, tmp_path: Path) -> None:
    """Why the chart insists on allowPlaintext: without allow_plaintext the exporter refuses the rendered config."""
    models = _module("exporter.config", "session-pool-exporter")
    docs = render(helm, SECRET_VALUES)
    config_file = _pod_files(docs, tmp_path)
    env = {"SESSION_POOL_EXPORTER_MONGODB__URI": "mongodb://127.0.0.1:27017/"}
    assert models.load_config(config_file, env).admin.allow_plaintext is True
    data = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    del data["admin"]["allow_plaintext"]
    config_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(models.ConfigError) as refused:
        models.load_config(config_file, env)
    assert [loc for loc, _ in refused.value.problems] == ["admin.listen"]
    assert "plain HTTP" in str(refused.value)


def _healthcheck_argv() -> list[str]:
    """The Dockerfile's HEALTHCHECK command (exec form), continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith("HEALTHCHECK "))
    argv: list[str] = json.loads(line[line.index("CMD") + 3 :].strip())
    return argv


def _wait_for_status(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll a URL until it answers 200; fail with the daemon's log if it exits or never does."""
    last = "no answer"
    for _ in range(240):
        if process.poll() is not None:
            pytest.fail(f"the exporter exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:300]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.25)
    pytest.fail(f"{url} never answered 200 (last: {last}):\n{log.read_text(errors='replace')}")


def test_rendered_pod_answers_its_probes(helm: ModuleType, mongo_uri: str, tmp_path: Path) -> None:
    """The rendered pod's command, env and config serve its probes and admin port; HEALTHCHECK and `helm test` pass."""
    port, admin_port = free_port(), free_port()
    token = "pod-contract-token-0123456789abcdef"
    values = {
        "containerPort": port,
        "admin": {"containerPort": admin_port, "allowPlaintext": True},
        "secret": {"mongodbUri": mongo_uri, "adminToken": token},
        "config": {"pools": [{"name": "podcheck", "database": "spe_helm_podcheck", "collection": "sessions"}]},
    }
    docs = render(helm, values)
    secret = {k: base64.b64decode(v).decode() for k, v in one(docs, "Secret")["data"].items()}
    box = container(docs)
    env = {**os.environ}
    for entry in box["env"]:
        env[entry["name"]] = secret[entry["valueFrom"]["secretKeyRef"]["key"]]
    config_file = tmp_path / "config.yaml"
    config_file.write_text(config_of_text(docs), encoding="utf-8")
    create_pools(
        yaml.safe_load(config_file.read_text(encoding="utf-8")), {"SESSION_POOL_EXPORTER_MONGODB__URI": mongo_uri}
    )
    entrypoint = Path(sys.executable).with_name("session-pool-exporter")
    if not entrypoint.exists():
        _missing("the session-pool-exporter console script (pip install -e '.[daemon]')")
    args = [str(config_file) if arg == CONFIG_PATH else arg for arg in box["args"]]
    log = tmp_path / "exporter.log"
    with log.open("wb") as handle:
        process = subprocess.Popen([str(entrypoint), *args], stdout=handle, stderr=subprocess.STDOUT, env=env)
    try:
        for probe in ("livenessProbe", "readinessProbe"):
            get = box[probe]["httpGet"]
            assert get["port"] == box["ports"][0]["name"]
            _wait_for_status(f"{get['scheme'].lower()}://127.0.0.1:{port}{get['path']}", process, log)
        argv = _healthcheck_argv()
        argv[0] = sys.executable if argv[0] == "python" else argv[0]
        check_env = {**os.environ, "HEALTHCHECK_URL": f"http://127.0.0.1:{port}/healthz"}
        result = subprocess.run(argv, env=check_env, capture_output=True, text=True, check=False, timeout=30)
        assert result.returncode == 0, result.stderr
        check_env["HEALTHCHECK_URL"] = f"http://127.0.0.1:{port}/no-such-path"
        result = subprocess.run(argv, env=check_env, capture_output=True, text=True, check=False, timeout=30)
        assert result.returncode != 0, "the HEALTHCHECK must fail when /healthz does not answer 200"
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0).text
        assert 'session_pool_up{pool="podcheck"} 1.0' in metrics
        # The admin API answers on the port named admin, and only there.
        admin = next(p["containerPort"] for p in box["ports"] if p["name"] == "admin")
        auth = {"Authorization": f"Bearer {token}"}
        pools = httpx.get(f"http://127.0.0.1:{admin}/admin/pools", headers=auth, timeout=5.0)
        assert pools.status_code == 200, pools.text
        assert "podcheck" in pools.text
        assert httpx.get(f"http://127.0.0.1:{port}/admin/pools", headers=auth, timeout=5.0).status_code == 404
        # The `helm test` pod's script, pointed at this exporter instead of the Service.
        scrape = _test_pod(docs)["spec"]["containers"][0]
        test_env = {entry["name"]: entry["value"] for entry in scrape["env"]}
        assert test_env["EXPECTED_POOLS"] == "podcheck"
        test_env["METRICS_URL"] = f"http://127.0.0.1:{port}/metrics"
        argv = [sys.executable, *scrape["command"][1:]]
        result = subprocess.run(argv, env=test_env, capture_output=True, text=True, check=False, timeout=90)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "ok, pools up: ['podcheck']" in result.stdout
        test_env.update(EXPECTED_POOLS="podcheck absent", TIMEOUT_SECONDS="1")
        result = subprocess.run(argv, env=test_env, capture_output=True, text=True, check=False, timeout=90)
        assert result.returncode == 1
        assert 'session_pool_up{pool="absent"} 1.0' in result.stdout
        assert token not in log.read_text(errors="replace")
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)


def config_of_text(docs: list[dict[str, Any]]) -> str:
    """The raw config.yaml text of the config ConfigMap."""
    configmaps = [cm for cm in of_kind(docs, "ConfigMap") if "config.yaml" in cm.get("data", {})]
    assert len(configmaps) == 1
    text: str = configmaps[0]["data"]["config.yaml"]
    return text
