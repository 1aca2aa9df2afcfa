#!/usr/bin/env python3
"""Validates Hangar's Kubernetes manifests offline (run it through scripts/validate-k8s).

What is checked, for every document of every manifest under k8s/ (the kustomization's resources
and the files applied otherwise: secret.example.yaml; nats-values.yaml is Helm values):
  - core kinds against Kubernetes' own schemas (PyPI kubernetes-validate), strictly: an unknown
    field fails, as `kubectl apply` with server-side field validation fails;
  - custom resources (Gateway API, CloudNativePG, EMQX Operator) against the openAPIV3Schema of
    their CRDs, vendored in k8s/schemas/ (where each came from is written in it), made strict the
    same way; a kind with no schema at all fails;
  - what no schema can see: every HANGAR_* variable is one the code reads; references between
    objects resolve (ConfigMaps and Secrets of envFrom and keyRefs, Services' selectors and target
    ports, HTTPRoute backends, PDB and HPA targets, probe ports); workload selectors match their
    pod labels; every Hangar container has the /readyz and /healthz probes;
  - the kustomization builds (`kubectl kustomize`, when kubectl is on the machine) and lists every
    manifest in k8s/ but those applied otherwise;
  - nats-values.yaml sets only keys the NATS chart has (its default values, vendored).

  validate_k8s.py                   validate k8s/, exit 1 on any problem
  validate_k8s.py --dir DIR         validate another copy
  validate_k8s.py --self-test       each fixture in k8s/tests/broken/ dropped into a copy of k8s/
                                    must make the validator exit non-zero, naming the problem
  validate_k8s.py --vendor-crd CRD.yaml --source "<repo> <tag> <path>"
                                    write k8s/schemas/<group>_<plural>.json from a CRD
  validate_k8s.py --vendor-chart-values values.yaml --source "<repo> <tag> <path>"
                                    write k8s/schemas/chart-nats-values.json from the chart's values
"""

import argparse
import concurrent.futures
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import jsonschema
import yaml
from kubernetes_validate import utils as kv

# kubernetes-validate reads its schema files (megabytes of JSON) on every call: read each once.
kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The oldest Kubernetes the manifests claim to support, and the newest the validator knows.
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]
# Files in k8s/ that are not kustomize resources, and how they are applied.
NOT_KUSTOMIZED = {
    "kustomization.yaml": "kustomize itself",
    "secret.example.yaml": "kubectl apply -f (after filling in)",
    "nats-values.yaml": "helm install ... -f (values of the NATS chart)",
}
# Objects that exist without a manifest here: CloudNativePG writes `<cluster>-app` for each Cluster.
GENERATED_SECRETS = {("Cluster", "postgresql.cnpg.io/v1"): ["{name}-app"]}
GENERATED_SECRET_KEYS = ["username", "password", "host", "port", "dbname", "uri", "jdbc-uri", "pgpass"]
# Hangar's own containers (by command) and the probes every one must have.
HANGAR_BINARIES = ("/usr/local/bin/command-api", "/usr/local/bin/query-api", "/usr/local/bin/projectors",
                   "/usr/local/bin/mqtt-bridge", "/usr/local/bin/hangar")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


class Problems:
    def __init__(self):
        self.items = []

    def add(self, where, message):
        self.items.append(f"{where}: {message}")


# ---------------------------------------------------------------------------------------------
# Loading


def load_documents(path, problems):
    """The documents of one YAML file, each with a label for messages."""
    try:
        with open(path) as f:
            docs = list(yaml.safe_load_all(f))
    except yaml.YAMLError as e:
        problems.add(os.path.basename(path), f"not valid YAML: {e}")
        return []
    out = []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        label = f"{os.path.basename(path)}#{i + 1}"
        if not isinstance(doc, dict):
            problems.add(label, "a manifest must be a mapping")
            continue
        out.append((label, doc))
    return out


def kustomize_build(directory, problems):
    """Documents of `kubectl kustomize`, or None when kubectl is not installed."""
    if shutil.which("kubectl") is None:
        return None
    r = subprocess.run(["kubectl", "kustomize", directory], capture_output=True, text=True)
    if r.returncode != 0:
        problems.add("kustomization.yaml", f"kubectl kustomize failed: {r.stderr.strip()}")
        return []
    try:
        docs = [d for d in yaml.safe_load_all(r.stdout) if d is not None]
    except yaml.YAMLError as e:
        problems.add("kustomization.yaml", f"kustomize output is not YAML: {e}")
        return []
    return [(f"kustomize:{d.get('kind')}/{(d.get('metadata') or {}).get('name')}", d) for d in docs]


def manifests(directory, problems):
    """Every document to validate: the kustomization's output (or its resources, with its namespace
    applied, when kubectl is missing) and the files applied otherwise."""
    kpath = os.path.join(directory, "kustomization.yaml")
    try:
        with open(kpath) as f:
            kustomization = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        problems.add("kustomization.yaml", f"cannot read: {e}")
        return []
    resources = kustomization.get("resources") or []
    on_disk = sorted(f for f in os.listdir(directory) if f.endswith((".yaml", ".yml")))
    for f in on_disk:
        if f not in resources and f not in NOT_KUSTOMIZED:
            problems.add(f, "not in kustomization.yaml's resources (nor a file applied otherwise)")
    for r in resources:
        if not os.path.isfile(os.path.join(directory, r)):
            problems.add("kustomization.yaml", f"resource {r} does not exist")

    docs = []
    built = kustomize_build(directory, problems)
    print("k8s: kustomization built with kubectl kustomize" if built is not None
          else "k8s: kubectl not found: kustomization resources read directly, its namespace applied")
    if built is None:
        namespace = kustomization.get("namespace")
        for r in resources:
            for label, doc in load_documents(os.path.join(directory, r), problems):
                if namespace and doc.get("kind") != "Namespace":
                    doc.setdefault("metadata", {})["namespace"] = namespace
                docs.append((label, doc))
    else:
        # Parse each file too, so that messages can name it and YAML errors are reported per file.
        for r in resources:
            load_documents(os.path.join(directory, r), problems)
        docs.extend(built)
    for f in NOT_KUSTOMIZED:
        if f in ("kustomization.yaml", "nats-values.yaml"):
            continue
        path = os.path.join(directory, f)
        if os.path.isfile(path):
            docs.extend(load_documents(path, problems))
    return docs


# ---------------------------------------------------------------------------------------------
# Schemas


def strip_descriptions(node):
    """A schema without its prose (most of a CRD's size); a property named "description" stays."""
    if isinstance(node, dict):
        return {k: strip_descriptions(v) for k, v in node.items()
                if not (k == "description" and isinstance(v, str))}
    if isinstance(node, list):
        return [strip_descriptions(v) for v in node]
    return node


def strict(node):
    """A CRD schema that rejects unknown fields (the API server prunes them silently, or refuses
    them with strict field validation): every object with `properties` gets
    `additionalProperties: false`, unless it keeps unknown fields on purpose."""
    if isinstance(node, dict):
        node = {k: strict(v) for k, v in node.items()}
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [strict(v) for v in node]
    return node


def load_crd_schemas(directory, problems):
    """(apiVersion, kind) -> schema, from the vendored CRDs."""
    schemas = {}
    sdir = os.path.join(directory, "schemas")
    if not os.path.isdir(sdir):
        return schemas
    for f in sorted(os.listdir(sdir)):
        if not f.endswith(".json") or f.startswith("chart-"):
            continue
        with open(os.path.join(sdir, f)) as fh:
            crd = json.load(fh)
        for version, schema in crd["versions"].items():
            schemas[(f"{crd['group']}/{version}", crd["kind"])] = strict(schema)
    return schemas


def vendor_crd(path, source):
    with open(path) as f:
        crd = yaml.safe_load(f)
    spec = crd["spec"]
    out = {
        "source": source,
        "note": "openAPIV3Schema of each served version, descriptions removed; "
                "written by scripts/validate_k8s.py --vendor-crd",
        "group": spec["group"],
        "kind": spec["names"]["kind"],
        "versions": {v["name"]: strip_descriptions(v["schema"]["openAPIV3Schema"])
                     for v in spec["versions"] if v.get("served", True)},
    }
    target = os.path.join(ROOT, "k8s", "schemas", f"{spec['group']}_{spec['names']['plural']}.json")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "w") as f:
        json.dump(out, f, separators=(",", ":"), sort_keys=True)
        f.write("\n")
    print(f"wrote {os.path.relpath(target, ROOT)}")


def vendor_chart_values(path, source):
    with open(path) as f:
        values = yaml.safe_load(f)
    out = {"source": source, "note": "the chart's default values; written by scripts/validate_k8s.py "
                                     "--vendor-chart-values", "values": values}
    target = os.path.join(ROOT, "k8s", "schemas", "chart-nats-values.json")
    with open(target, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {os.path.relpath(target, ROOT)}")


def where(error):
    path = "/".join(str(p) for p in error.absolute_path)
    return f"at {path or '(top)'}: {error.message}"


def validate_schema(label, doc, crds, problems):
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not api_version or not kind:
        problems.add(label, "apiVersion and kind are required")
        return
    name = f"{kind} {(doc.get('metadata') or {}).get('name')}"
    if (api_version, kind) in crds:
        validator = jsonschema.Draft4Validator(crds[(api_version, kind)])
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
            problems.add(f"{label} ({name})", f"{api_version} {kind} schema {where(e)}")
        # CRD schemas leave metadata open: hold it to the core ObjectMeta schema.
        doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc.get("metadata")}
    for version in KUBERNETES_VERSIONS:
        try:
            kv.validate(doc, version, strict=True)
        except kv.SchemaNotFoundError:
            problems.add(f"{label} ({name})", f"no schema for {api_version} {kind} "
                                              f"(Kubernetes {version}, nor a CRD in k8s/schemas/)")
            return
        except kv.ValidationError as e:
            problems.add(f"{label} ({name})", f"Kubernetes {version} schema {where(e)}")
            return


# ---------------------------------------------------------------------------------------------
# What no schema sees


def env_names_in_code():
    names = set()
    pattern = re.compile(r'env\s*=\s*"(HANGAR_[A-Z0-9_]+)"')
    for top in os.listdir(ROOT):
        src = os.path.join(ROOT, top, "src")
        if not os.path.isdir(src):
            continue
        for dirpath, _, files in os.walk(src):
            for f in files:
                if f.endswith(".rs"):
                    with open(os.path.join(dirpath, f)) as fh:
                        names.update(pattern.findall(fh.read()))
    return names


def pod_spec(doc):
    spec = doc.get("spec") or {}
    if doc.get("kind") in WORKLOAD_KINDS:
        return (spec.get("template") or {}).get("spec") or {}
    return None


def pod_labels(doc):
    return ((doc.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}


def check_references(docs, problems):
    ns = lambda d: (d.get("metadata") or {}).get("namespace")  # noqa: E731
    name = lambda d: (d.get("metadata") or {}).get("name")  # noqa: E731
    by_kind = {}
    for label, d in docs:
        by_kind.setdefault(d.get("kind"), []).append((label, d))

    config_maps = {(ns(d), name(d)): set((d.get("data") or {}).keys()) for _, d in by_kind.get("ConfigMap", [])}
    secrets = {(ns(d), name(d)): set((d.get("stringData") or {}).keys()) | set((d.get("data") or {}).keys())
               for _, d in by_kind.get("Secret", [])}
    for _, d in docs:
        for pattern in GENERATED_SECRETS.get((d.get("kind"), d.get("apiVersion")), []):
            secrets[(ns(d), pattern.format(name=name(d)))] = set(GENERATED_SECRET_KEYS)

    known_env = env_names_in_code()
    for label, d in by_kind.get("ConfigMap", []) + by_kind.get("Secret", []):
        keys = list((d.get("data") or {}).keys()) + list((d.get("stringData") or {}).keys())
        for key in keys:
            if key.startswith("HANGAR_") and key not in known_env:
                problems.add(label, f"{key} is not a setting Hangar reads (shared/src/config.rs)")

    workloads = [(label, d) for label, d in docs if d.get("kind") in WORKLOAD_KINDS]
    for label, d in workloads:
        spec = d.get("spec") or {}
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        labels = pod_labels(d)
        if d.get("kind") != "Job" and not selector:
            problems.add(label, "no spec.selector.matchLabels")
        if any(labels.get(k) != v for k, v in selector.items()):
            problems.add(label, f"selector {selector} does not match the pod labels {labels}")
        pod = pod_spec(d) or {}
        volumes = {v.get("name"): v for v in pod.get("volumes") or []}
        for v in volumes.values():
            if "configMap" in v and (ns(d), v["configMap"].get("name")) not in config_maps:
                problems.add(label, f"volume {v.get('name')}: no ConfigMap {v['configMap'].get('name')}")
        for c in (pod.get("containers") or []) + (pod.get("initContainers") or []):
            where_c = f"{label} container {c.get('name')}"
            ports = {p.get("name") for p in c.get("ports") or []}
            for ref in c.get("envFrom") or []:
                if "configMapRef" in ref and (ns(d), ref["configMapRef"].get("name")) not in config_maps:
                    problems.add(where_c, f"envFrom: no ConfigMap {ref['configMapRef'].get('name')}")
                if "secretRef" in ref and (ns(d), ref["secretRef"].get("name")) not in secrets:
                    problems.add(where_c, f"envFrom: no Secret {ref['secretRef'].get('name')}")
            for e in c.get("env") or []:
                n = e.get("name", "")
                if n.startswith("HANGAR_") and n not in known_env:
                    problems.add(where_c, f"{n} is not a setting Hangar reads (shared/src/config.rs)")
                vf = e.get("valueFrom") or {}
                for kind, table in (("secretKeyRef", secrets), ("configMapKeyRef", config_maps)):
                    if kind in vf:
                        key = (ns(d), vf[kind].get("name"))
                        if key not in table:
                            problems.add(where_c, f"env {n}: no {kind[:-6]} {vf[kind].get('name')}")
                        elif vf[kind].get("key") not in table[key]:
                            problems.add(where_c, f"env {n}: {vf[kind].get('name')} has no key {vf[kind].get('key')}")
            for m in c.get("volumeMounts") or []:
                if m.get("name") not in volumes and m.get("name") not in {
                        t.get("metadata", {}).get("name") for t in spec.get("volumeClaimTemplates") or []}:
                    problems.add(where_c, f"volumeMount {m.get('name')}: no such volume")
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                port = ((c.get(probe) or {}).get("httpGet") or {}).get("port")
                if isinstance(port, str) and port not in ports:
                    problems.add(where_c, f"{probe} uses port {port!r}, which the container does not name")
            command = (c.get("command") or [""])[0]
            if command in HANGAR_BINARIES:
                paths = {p: ((c.get(p) or {}).get("httpGet") or {}).get("path")
                         for p in ("readinessProbe", "livenessProbe")}
                if paths != {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}:
                    problems.add(where_c, f"Hangar's probes are readiness /readyz and liveness /healthz, not {paths}")

    services = {}
    for label, s in by_kind.get("Service", []):
        spec = s.get("spec") or {}
        services[(ns(s), name(s))] = {p.get("port") for p in spec.get("ports") or []}
        selector = spec.get("selector") or {}
        if not selector:
            continue
        matched = [d for _, d in workloads if ns(d) == ns(s)
                   and all(pod_labels(d).get(k) == v for k, v in selector.items())]
        if not matched:
            problems.add(label, f"Service {name(s)} selects no pods ({selector})")
        for p in spec.get("ports") or []:
            target = p.get("targetPort")
            if isinstance(target, str) and matched and not any(
                    target in {cp.get("name") for c in (pod_spec(d) or {}).get("containers") or []
                               for cp in c.get("ports") or []} for d in matched):
                problems.add(label, f"Service {name(s)} targets port {target!r}, which its pods do not name")
    # Services that operators create for their custom resources.
    for _, d in docs:
        if d.get("kind") == "EMQX":
            services[(ns(d), f"{name(d)}-listeners")] = {1883}
        if d.get("kind") == "Cluster" and d.get("apiVersion", "").startswith("postgresql.cnpg.io/"):
            for suffix in ("rw", "ro", "r"):
                services[(ns(d), f"{name(d)}-{suffix}")] = {5432}

    gateways = {(ns(d), name(d)): {lst.get("name") for lst in (d.get("spec") or {}).get("listeners") or []}
                for _, d in by_kind.get("Gateway", [])}
    for label, r in by_kind.get("HTTPRoute", []):
        spec = r.get("spec") or {}
        for parent in spec.get("parentRefs") or []:
            key = (parent.get("namespace", ns(r)), parent.get("name"))
            if key not in gateways:
                problems.add(label, f"HTTPRoute {name(r)}: no Gateway {parent.get('name')}")
            elif parent.get("sectionName") and parent["sectionName"] not in gateways[key]:
                problems.add(label, f"HTTPRoute {name(r)}: Gateway {parent.get('name')} has no listener "
                                    f"{parent['sectionName']}")
        for rule in spec.get("rules") or []:
            for b in rule.get("backendRefs") or []:
                key = (b.get("namespace", ns(r)), b.get("name"))
                if key not in services:
                    problems.add(label, f"HTTPRoute {name(r)}: no Service {b.get('name')}")
                elif b.get("port") not in services[key]:
                    problems.add(label, f"HTTPRoute {name(r)}: Service {b.get('name')} has no port {b.get('port')}")

    for label, p in by_kind.get("PodDisruptionBudget", []):
        selector = ((p.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        if not any(ns(d) == ns(p) and all(pod_labels(d).get(k) == v for k, v in selector.items())
                   for _, d in workloads):
            problems.add(label, f"PodDisruptionBudget {name(p)} covers no pods ({selector})")
    for label, h in by_kind.get("HorizontalPodAutoscaler", []):
        target = (h.get("spec") or {}).get("scaleTargetRef") or {}
        if not any(ns(d) == ns(h) and d.get("kind") == target.get("kind") and name(d) == target.get("name")
                   for _, d in workloads):
            problems.add(label, f"HorizontalPodAutoscaler {name(h)}: no {target.get('kind')} {target.get('name')}")


def check_helm_values(directory, problems):
    """Every key of nats-values.yaml is one the NATS chart has, with a value of the same shape.
    Below `merge`, and below keys whose default is an empty map or null, the chart takes anything."""
    values_path = os.path.join(directory, "nats-values.yaml")
    defaults_path = os.path.join(directory, "schemas", "chart-nats-values.json")
    if not os.path.isfile(values_path):
        return
    with open(defaults_path) as f:
        defaults = json.load(f)["values"]
    try:
        with open(values_path) as f:
            values = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        problems.add("nats-values.yaml", f"not valid YAML: {e}")
        return

    def walk(ours, theirs, path):
        for k, v in ours.items():
            here = f"{path}.{k}" if path else k
            if k not in theirs:
                problems.add("nats-values.yaml", f"{here} is not a value of the NATS chart")
                continue
            d = theirs[k]
            if k == "merge" or d is None or d == {}:
                continue
            if isinstance(d, dict):
                if not isinstance(v, dict):
                    problems.add("nats-values.yaml", f"{here} must be a map")
                else:
                    walk(v, d, here)
            elif isinstance(d, bool) and not isinstance(v, bool):
                problems.add("nats-values.yaml", f"{here} must be true or false")
            elif isinstance(d, list) and not isinstance(v, list):
                problems.add("nats-values.yaml", f"{here} must be a list")

    if not isinstance(values, dict):
        problems.add("nats-values.yaml", "must be a map")
    else:
        walk(values, defaults, "")


# ---------------------------------------------------------------------------------------------


def validate(directory):
    problems = Problems()
    crds = load_crd_schemas(directory, problems)
    docs = manifests(directory, problems)
    for label, doc in docs:
        validate_schema(label, doc, crds, problems)
    check_references(docs, problems)
    check_helm_values(directory, problems)
    return docs, problems.items


def run_fixture(fixtures_dir, f):
    """(fixture, None) when the validator rejects it as the fixture's first line expects, else
    (fixture, what went wrong)."""
    with open(os.path.join(fixtures_dir, f)) as fh:
        text = fh.read()
    m = re.match(r"#\s*expect:\s*(.+)", text)
    if not m:
        return f, "first line must be '# expect: <part of the message>'"
    expected = m.group(1).strip()
    # `# mode: unlisted`: dropped into k8s/ but not into kustomization.yaml;
    # `# mode: replace=<file>`: takes the place of a real file; otherwise added as a resource.
    mode = re.search(r"^#\s*mode:\s*(\S+)", text, re.M)
    mode = mode.group(1) if mode else "resource"
    with tempfile.TemporaryDirectory() as tmp:
        copy_dir = os.path.join(tmp, "k8s")
        shutil.copytree(os.path.join(ROOT, "k8s"), copy_dir, ignore=shutil.ignore_patterns("tests"))
        target = mode[len("replace="):] if mode.startswith("replace=") else f"zz-{f}"
        with open(os.path.join(copy_dir, target), "w") as out:
            out.write(text)
        if mode == "resource":
            kpath = os.path.join(copy_dir, "kustomization.yaml")
            with open(kpath) as kf:
                k = yaml.safe_load(kf)
            k["resources"].append(target)
            with open(kpath, "w") as kf:
                yaml.safe_dump(k, kf)
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--dir", copy_dir],
                           capture_output=True, text=True)
    output = r.stdout + r.stderr
    if r.returncode == 0:
        return f, "the validator accepted it"
    if expected not in output:
        return f, f"rejected, but without {expected!r}:\n{output}"
    return f, None


def self_test():
    """Every fixture must make the validator (the real entry point, in a separate process) exit
    non-zero with the message its first line expects."""
    fixtures_dir = os.path.join(ROOT, "k8s", "tests", "broken")
    fixtures = sorted(f for f in os.listdir(fixtures_dir) if f.endswith(".yaml"))
    if not fixtures:
        print("self-test: no fixtures in k8s/tests/broken/")
        return 1
    failures = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for f, problem in pool.map(lambda f: run_fixture(fixtures_dir, f), fixtures):
            if problem:
                failures += 1
                print(f"self-test {f}: FAILED, {problem}")
            else:
                print(f"self-test {f}: rejected as expected")
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=os.path.join(ROOT, "k8s"))
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--vendor-crd")
    ap.add_argument("--vendor-chart-values")
    ap.add_argument("--source")
    args = ap.parse_args()
    if args.vendor_crd or args.vendor_chart_values:
        if not args.source:
            ap.error("vendoring needs --source '<repository> <tag> <path>'")
        if args.vendor_crd:
            vendor_crd(args.vendor_crd, args.source)
        else:
            vendor_chart_values(args.vendor_chart_values, args.source)
        return 0
    if args.self_test:
        failures = self_test()
        if failures:
            print(f"self-test: {failures} fixture(s) not rejected as expected")
            return 1
        print("self-test: every broken fixture was rejected")
        return 0
    docs, problems = validate(args.dir)
    for p in problems:
        print(p)
    kinds = sorted({f"{d.get('kind')}" for _, d in docs})
    if problems:
        print(f"k8s: {len(problems)} problem(s) in {len(docs)} documents")
        return 1
    print(f"k8s: {len(docs)} documents valid against Kubernetes {', '.join(KUBERNETES_VERSIONS)} "
          f"and the vendored CRDs ({', '.join(kinds)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
