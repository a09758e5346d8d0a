#!/usr/bin/env python3
"""Checks of rendered manifests (the chart's or the kustomization's) for
tests/deploy/check-kubernetes.sh. Each subcommand exits 0 when its check passes, 1 when it
fails (saying why), 2 on bad input.

    split MANIFEST BUILTIN CUSTOM      built-in kinds to BUILTIN, custom resources to CUSTOM
    config MANIFEST DIR BINARY         `BINARY check` on the config.toml the Deployment mounts
                                       (exit 3: that ConfigMap is not rendered)
    rules MANIFEST ALERTS VALUES_JSON  the PrometheusRule is ALERTS but for the job label
    dashboard MANIFEST JSON            the dashboard ConfigMap holds JSON, byte for byte
    consistency MANIFEST               selectors, ports and references agree
    kustomize MANIFEST                 Namespace first, everything in it, no IAM policy
    mutate MANIFEST OUT KIND PATH=VALUE  a copy with one field set (for negative checks)
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import tomllib
from typing import Any

try:
    import yaml
except ImportError:
    sys.exit("the Python module yaml is missing: pip install pyyaml")

CONFIG_PATH = "/etc/fargate-health-monitor/config.toml"
SECRETS_DIR = "/etc/fargate-health-monitor/secrets"
STATE_DIR = "/var/lib/fargate-health-monitor"
# The job in dashboards/alerts.yml's selectors, replaced by the chart.
DEFAULT_JOB = "fargate-health-monitor"


def fail(message: str) -> None:
    print(f"FAIL: {message}")
    sys.exit(1)


def load(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def dump(documents: list[dict[str, Any]], path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump_all(documents, f, sort_keys=False, explicit_start=True)


def of_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in documents if d.get("kind") == kind]


def one(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(documents, kind)
    if len(found) != 1:
        fail(f"expected one {kind}, found {len(found)}")
    return found[0]


def name(document: dict[str, Any]) -> str:
    return f"{document['kind']}/{document['metadata']['name']}"


def builtin(document: dict[str, Any]) -> bool:
    """A kind of Kubernetes itself: the core group, a group without a dot, or *.k8s.io."""
    group = document.get("apiVersion", "").rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


def split(manifest: str, builtin_out: str, custom_out: str) -> None:
    documents = load(manifest)
    dump([d for d in documents if builtin(d)], builtin_out)
    dump([d for d in documents if not builtin(d)], custom_out)
    kinds = ", ".join(sorted(name(d) for d in documents))
    print(f"{len(documents)} documents: {kinds}")


def deployment_pod(documents: list[dict[str, Any]]) -> dict[str, Any]:
    return one(documents, "Deployment")["spec"]["template"]


def volume(pod: dict[str, Any], volume_name: str) -> dict[str, Any]:
    for v in pod["spec"].get("volumes", []):
        if v["name"] == volume_name:
            return v
    fail(f"the Deployment has no volume {volume_name}")
    raise AssertionError


def placeholder(key: str) -> str:
    """A value a `_file` key accepts, for a Secret that is not rendered."""
    if key == "url_file":
        return "https://hooks.slack.com/services/T0000/B0000/placeholder\n"
    return "placeholder-value-0123456789abcdef\n"


def config(manifest: str, directory: str, binary: str) -> None:
    """Runs `BINARY check` on the config.toml the Deployment mounts, with the container's
    environment. The config is written to DIR/config.toml with the secrets directory moved to
    DIR/secrets, which holds the rendered Secret's values or, for a Secret from outside the chart,
    placeholders for every file the config names. Before that, listen and the state path are
    checked against the Deployment."""
    documents = load(manifest)
    pod = deployment_pod(documents)
    container = pod["spec"]["containers"][0]
    args = container.get("args", [])
    if args[:3] != ["run", "--config", CONFIG_PATH]:
        fail(f"the container's args do not start with run --config {CONFIG_PATH}: {args}")
    mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
    if CONFIG_PATH not in mounts:
        fail(f"nothing is mounted at {CONFIG_PATH}")
    mount = mounts[CONFIG_PATH]
    source = volume(pod, mount["name"]).get("configMap")
    if not source:
        fail(f"{CONFIG_PATH} is not from a ConfigMap")
    key = mount.get("subPath", "config.toml")
    configmaps = [c for c in of_kind(documents, "ConfigMap") if c["metadata"]["name"] == source["name"]]
    if not configmaps:
        print(f"the ConfigMap {source['name']} is not rendered (config.existingConfigMap): nothing to check")
        sys.exit(3)
    text = (configmaps[0].get("data") or {}).get(key)
    if text is None:
        fail(f"ConfigMap/{source['name']} has no key {key}")

    parsed = tomllib.loads(text)
    listen = parsed.get("server", {}).get("listen", "127.0.0.1:9877")
    ports = {p["containerPort"] for p in container.get("ports", [])}
    host, _, port = listen.rpartition(":")
    if host not in ("0.0.0.0", "[::]") or int(port) not in ports:
        fail(f"[server] listen = {listen!r}: the probes and Prometheus reach port(s) {sorted(ports)} on the pod IP")
    state = parsed.get("state", {}).get("path", f"{STATE_DIR}/state.json")
    state_mounts = [m for m in container.get("volumeMounts", []) if state.startswith(m["mountPath"].rstrip("/") + "/")]
    if not state_mounts or state_mounts[0].get("readOnly"):
        fail(f"[state] path = {state!r} is not on a writable volume of the pod")

    # The files the config names under the secrets directory, with the key that names each.
    wanted: dict[str, str] = {}

    def walk(node: Any, file_key: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, k if k.endswith("_file") else file_key)
        elif isinstance(node, list):
            for v in node:
                walk(v, file_key)
        elif isinstance(node, str) and node.startswith(SECRETS_DIR + "/"):
            wanted[node[len(SECRETS_DIR) + 1:]] = file_key

    walk(parsed)
    secret_mount = mounts.get(SECRETS_DIR)
    rendered_secret: dict[str, str] | None = None
    if wanted:
        if not secret_mount:
            fail(f"the config reads {sorted(wanted)} from {SECRETS_DIR}, but no Secret is mounted there")
        secret_name = volume(pod, secret_mount["name"])["secret"]["secretName"]
        for s in of_kind(documents, "Secret"):
            if s["metadata"]["name"] == secret_name:
                rendered_secret = dict(s.get("stringData") or {})
        if rendered_secret is not None:
            missing = sorted(set(wanted) - set(rendered_secret))
            if missing:
                fail(f"Secret/{secret_name} has no key {', '.join(missing)}, which the config reads")

    os.makedirs(os.path.join(directory, "secrets"), exist_ok=True)
    for file_name, file_key in wanted.items():
        value = rendered_secret[file_name] if rendered_secret is not None else placeholder(file_key)
        with open(os.path.join(directory, "secrets", file_name), "w", encoding="utf-8") as f:
            f.write(value)
    checkable = text.replace(SECRETS_DIR + "/", os.path.join(os.path.abspath(directory), "secrets") + "/")
    with open(os.path.join(directory, "config.toml"), "w", encoding="utf-8") as f:
        f.write(checkable)
    origin = "the rendered Secret's" if rendered_secret is not None else "placeholder"
    print(f"ConfigMap/{source['name']} {key}: listen {listen}, state {state}, "
          f"secret files {', '.join(sorted(wanted)) or 'none'}{f' ({origin} values)' if wanted else ''}")

    # As in the pod: the container's literal env (valueFrom and envFrom cannot be resolved here),
    # nothing from this shell but PATH.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = str(variable["value"])
    command = [binary, "check", "--config", os.path.join(directory, "config.toml")]
    shown = " ".join(f"{k}={v}" for k, v in env.items() if k != "PATH")
    print(f"$ {shown + ' ' if shown else ''}{' '.join(command)}", flush=True)
    result = subprocess.run(command, env=env, check=False)
    if result.returncode != 0:
        fail(f"{binary} check exited {result.returncode} on ConfigMap/{source['name']}'s {key}")


def expected_job(documents: list[dict[str, Any]], values: dict[str, Any]) -> str:
    """The job label Prometheus will give the monitor, modelled on prometheus-operator from the
    rendered objects (not from the chart's helper): the value of the monitor's jobLabel on the
    pod or Service when that label is there and not empty (the operator's regex is `(.+)`),
    else "<namespace>/<name>" for a PodMonitor or the Service's name; then the endpoint's
    relabelings that replace `job`. Without a monitor in the chart, prometheusRule.job."""
    podmonitors = of_kind(documents, "PodMonitor")
    servicemonitors = of_kind(documents, "ServiceMonitor")
    if podmonitors:
        monitor = podmonitors[0]
        labels = deployment_pod(documents)["metadata"].get("labels", {})
        job = f"{monitor['metadata']['namespace']}/{monitor['metadata']['name']}"
        endpoints = monitor["spec"].get("podMetricsEndpoints", [])
    elif servicemonitors:
        monitor = servicemonitors[0]
        service = one(documents, "Service")
        labels = service["metadata"].get("labels", {})
        job = service["metadata"]["name"]
        endpoints = monitor["spec"].get("endpoints", [])
    else:
        return values.get("prometheusRule", {}).get("job") or one(documents, "Service")["metadata"]["name"]
    job_label = monitor["spec"].get("jobLabel")
    if job_label and labels.get(job_label):
        job = str(labels[job_label])
    for relabeling in (endpoints[0].get("relabelings") or []) if endpoints else []:
        if relabeling.get("targetLabel") == "job" and relabeling.get("action", "replace") == "replace":
            replacement = relabeling.get("replacement", "$1")
            assert "$" not in replacement, f"a job relabeling this check cannot model: {relabeling}"
            job = replacement
    return job


def rules(manifest: str, alerts_path: str, values_path: str) -> None:
    documents = load(manifest)
    with open(values_path, encoding="utf-8") as f:
        values = json.load(f)
    with open(alerts_path, encoding="utf-8") as f:
        alerts = yaml.safe_load(f)
    rule = one(documents, "PrometheusRule")
    job = expected_job(documents, values)
    extra = values.get("prometheusRule", {}).get("additionalRuleLabels") or {}

    selector = f'job="{DEFAULT_JOB}"'
    expected = copy.deepcopy(alerts["groups"])
    substituted = 0
    for group in expected:
        for r in group["rules"]:
            if isinstance(r.get("expr"), str) and selector in r["expr"]:
                substituted += 1
                r["expr"] = r["expr"].replace(selector, f'job="{job}"')
            if "alert" in r and extra:
                r["labels"] = {**extra, **(r.get("labels") or {})}
    if not substituted:
        fail(f"no rule of {alerts_path} selects {selector}: nothing for prometheusRule.job to replace")
    actual = rule["spec"]["groups"]
    if actual != expected:
        for g_actual, g_expected in zip(actual, expected):
            for r_actual, r_expected in zip(g_actual.get("rules", []), g_expected.get("rules", [])):
                if r_actual != r_expected:
                    print(f"rendered: {json.dumps(r_actual, sort_keys=True)}")
                    print(f"expected: {json.dumps(r_expected, sort_keys=True)}")
                    break
        fail(f"{name(rule)}'s groups are not {alerts_path}'s with job {job!r}")
    count = sum(len(g["rules"]) for g in actual)
    print(f"{name(rule)}: {len(actual)} group(s), {count} rules = {alerts_path}, "
          f"job=\"{job}\" in {substituted} rule(s), additional labels {extra or 'none'}")


def dashboard(manifest: str, path: str) -> None:
    """The dashboard ConfigMap holds the file itself, byte for byte."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    key = os.path.basename(path)
    found = [c for c in of_kind(load(manifest), "ConfigMap") if key in (c.get("data") or {})]
    if len(found) != 1:
        fail(f"expected one ConfigMap with {key}, found {len(found)}")
    if found[0]["data"][key] != text:
        fail(f"{name(found[0])}'s {key} is not {path}")
    labels = ", ".join(f"{k}={v}" for k, v in found[0]["metadata"].get("labels", {}).items()
                       if not k.startswith(("app.kubernetes.io/", "helm.sh/")))
    print(f"{name(found[0])} in {found[0]['metadata']['namespace']}: {path} ({len(text)} bytes), labels {labels}")


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def consistency(manifest: str) -> None:
    documents = load(manifest)
    deployment = one(documents, "Deployment")
    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"].get("labels", {})
    container_ports = {p.get("name") for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    checked = []

    def require(condition: bool, message: str) -> None:
        if not condition:
            fail(message)

    require(selects(deployment["spec"]["selector"]["matchLabels"], pod_labels),
            "the Deployment's selector does not match its pod labels")
    checked.append("Deployment selector")
    services = of_kind(documents, "Service")
    for service in services:
        require(selects(service["spec"]["selector"], pod_labels), f"{name(service)} does not select the pod")
        for port in service["spec"]["ports"]:
            require(port.get("targetPort") in container_ports, f"{name(service)} targets port {port.get('targetPort')}, not a container port")
        checked.append(name(service))
    for sm in of_kind(documents, "ServiceMonitor"):
        matched = [s for s in services if selects(sm["spec"]["selector"]["matchLabels"], s["metadata"].get("labels", {}))]
        require(len(matched) == 1, f"{name(sm)} selects {len(matched)} Services, not 1")
        service_ns = matched[0]["metadata"]["namespace"]
        if sm["metadata"]["namespace"] != service_ns:
            require(service_ns in sm["spec"].get("namespaceSelector", {}).get("matchNames", []),
                    f"{name(sm)} is in {sm['metadata']['namespace']} without a namespaceSelector for {service_ns}")
        ports = {p.get("name") for p in matched[0]["spec"]["ports"]}
        for endpoint in sm["spec"]["endpoints"]:
            require(endpoint.get("port") in ports, f"{name(sm)} scrapes port {endpoint.get('port')}, not a port of the Service")
        checked.append(name(sm))
    for pm in of_kind(documents, "PodMonitor"):
        require(selects(pm["spec"]["selector"]["matchLabels"], pod_labels), f"{name(pm)} does not select the pod")
        if pm["metadata"]["namespace"] != deployment["metadata"]["namespace"]:
            require(deployment["metadata"]["namespace"] in pm["spec"].get("namespaceSelector", {}).get("matchNames", []),
                    f"{name(pm)} has no namespaceSelector for the pod's namespace")
        for endpoint in pm["spec"]["podMetricsEndpoints"]:
            require(endpoint.get("port") in container_ports, f"{name(pm)} scrapes port {endpoint.get('port')}, not a container port")
        checked.append(name(pm))
    for pdb in of_kind(documents, "PodDisruptionBudget"):
        require(selects(pdb["spec"]["selector"]["matchLabels"], pod_labels), f"{name(pdb)} does not select the pod")
        checked.append(name(pdb))
    rendered = {(d["kind"], d["metadata"]["name"]) for d in documents}
    account = pod["spec"].get("serviceAccountName", "default")
    accounts = of_kind(documents, "ServiceAccount")
    if accounts:
        require(("ServiceAccount", account) in rendered, f"the pod runs as {account}, which is not rendered")
        checked.append("ServiceAccount")
    require(pod["spec"].get("automountServiceAccountToken") is False, "the pod mounts a Kubernetes API token")
    for v in pod["spec"].get("volumes", []):
        if "persistentVolumeClaim" in v and of_kind(documents, "PersistentVolumeClaim"):
            claim = v["persistentVolumeClaim"]["claimName"]
            require(("PersistentVolumeClaim", claim) in rendered, f"the claim {claim} is not rendered")
            checked.append("PersistentVolumeClaim")
    print(f"consistent: {', '.join(checked)}")


def kustomize(manifest: str) -> None:
    documents = load(manifest)
    if not documents or documents[0].get("kind") != "Namespace":
        fail(f"the first document is {name(documents[0]) if documents else 'nothing'}, not the Namespace")
    namespace = documents[0]["metadata"]["name"]
    for d in documents[1:]:
        if d.get("kind") == "Namespace":
            fail(f"a second Namespace: {name(d)}")
        if d["metadata"].get("namespace") != namespace:
            fail(f"{name(d)} is not in the namespace {namespace}")
    with open(manifest, encoding="utf-8") as f:
        text = f.read()
    if re.search(r"2012-10-17|\"?Statement\"?\s*:|eks:DescribeFargateProfile", text):
        fail("an IAM policy is in the applied manifests (it belongs in deploy/iam-policy.json)")
    print(f"Namespace/{namespace} first, then {len(documents) - 1} objects in it; no IAM policy")


def mutate(manifest: str, out: str, kind: str, assignment: str) -> None:
    documents = load(manifest)
    target = one(documents, kind)
    path, _, value = assignment.partition("=")
    keys = path.split(".")
    node: Any = target
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[keys[-1]] = yaml.safe_load(value)
    dump([target], out)
    print(f"{name(target)} with {path} = {value!r} -> {out}")


def main() -> None:
    commands = {
        "split": (split, 3),
        "config": (config, 3),
        "rules": (rules, 3),
        "dashboard": (dashboard, 2),
        "consistency": (consistency, 1),
        "kustomize": (kustomize, 1),
        "mutate": (mutate, 4),
    }
    if len(sys.argv) < 2 or sys.argv[1] not in commands or len(sys.argv) - 2 != commands[sys.argv[1]][1]:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    function, _ = commands[sys.argv[1]]
    function(*sys.argv[2:])


if __name__ == "__main__":
    main()
