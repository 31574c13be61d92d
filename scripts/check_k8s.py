#!/usr/bin/env python3
"""Checks the example Kubernetes manifests under deploy/k8s: every document parses, has the
fields the API server requires, and the pieces refer to each other (the probes hit the admin
port's /healthz and /readyz, the secrets and the config map exist, the node config turns the
admin listener on). Exits non-zero naming the first problem."""
import pathlib
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent / "deploy" / "k8s"


def fail(message):
    print("k8s manifests: " + message, file=sys.stderr)
    sys.exit(1)


docs = []
for path in sorted(ROOT.glob("*.yaml")):
    try:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path.name, doc))
    except yaml.YAMLError as e:
        fail(f"{path.name} does not parse: {e}")
if not docs:
    fail(f"no manifests in {ROOT}")

by_kind = {}
for name, doc in docs:
    for key in ("apiVersion", "kind", "metadata"):
        if key not in doc:
            fail(f"{name}: a document has no {key}")
    if "name" not in doc["metadata"]:
        fail(f"{name}: {doc['kind']} has no metadata.name")
    by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc

for kind in ("StatefulSet", "Service", "Secret", "ConfigMap"):
    if kind not in by_kind:
        fail(f"no {kind}")

secret = by_kind["Secret"].get("ember")
if secret is None:
    fail("no Secret named ember")
config = by_kind["ConfigMap"].get("ember-node")
if config is None or "node.yaml" not in config.get("data", {}):
    fail("no ConfigMap ember-node with a node.yaml")
node_yaml = yaml.safe_load(config["data"]["node.yaml"])
if "AdminConf" not in node_yaml:
    fail("node.yaml has no AdminConf: the probes would have nothing to ask")
admin_port = int(str(node_yaml["AdminConf"]["ListenAddr"]).rsplit(":", 1)[1])

nodes = by_kind["StatefulSet"].get("ember")
if nodes is None:
    fail("no StatefulSet named ember")
spec = nodes["spec"]
if spec["selector"]["matchLabels"] != spec["template"]["metadata"]["labels"]:
    fail("the ember StatefulSet's selector does not match its pod labels")
container = spec["template"]["spec"]["containers"][0]
ports = {p["name"]: p["containerPort"] for p in container["ports"]}
if ports.get("admin") != admin_port:
    fail(f"container port admin is {ports.get('admin')}, AdminConf listens on {admin_port}")
for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
    get = container.get(probe, {}).get("httpGet", {})
    if get.get("path") != path or get.get("port") not in ("admin", admin_port):
        fail(f"{probe} must GET {path} on the admin port")
for env in container["env"]:
    ref = env.get("valueFrom", {}).get("secretKeyRef")
    if ref is not None:
        if ref["name"] not in by_kind["Secret"]:
            fail(f"env {env['name']} names Secret {ref['name']}, which is not defined")
        if ref["key"] not in by_kind["Secret"][ref["name"]].get("stringData", {}):
            fail(f"env {env['name']} names key {ref['key']}, which Secret {ref['name']} lacks")
volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
if volumes.get("config", {}).get("configMap", {}).get("name") != "ember-node":
    fail("the config volume must mount ConfigMap ember-node")
print(f"k8s manifests: {len(docs)} documents in {ROOT.name}/ check out")
