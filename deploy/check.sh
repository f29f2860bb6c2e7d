#!/usr/bin/env bash
# Validates everything under deploy/ offline, installing the tools it needs when missing:
#
#   * Prometheus rules: `promtool check rules` and `promtool test rules` (unit tests).
#     promtool comes from Debian's `prometheus` package; if it is not on PATH the .deb is
#     downloaded with apt and only promtool is extracted (no service is installed/started).
#   * Kubernetes manifests (deploy/k8s, and `kubectl kustomize` of it, with and without the
#     backup component, when kubectl exists): `kubernetes-validate --strict` against each
#     version in K8S_VERSIONS.
#   * Helm chart: rendered offline with helm-python-sdk (Helm's own engine, no helm binary)
#     with the default values and with every optional branch switched on (backup volume,
#     encryption key Secret, backup CronJob, existing claims, ...), linted (strict),
#     and the output validated with kubernetes-validate --strict. Mode kafka too: coordinator
#     Deployment (replicas, PDB, probes, config mounted, no PVC/volumeClaimTemplates, only
#     configMap/emptyDir volumes), one agent Deployment per server; bad values refused.
#   * deploy/k8s/kafka (the kustomize overlay for mode kafka): the same structural checks.
#   * The example configs (ConfigMap, chart values): TOML parses, sources/targets name
#     servers, every password_env has a Secret key; their commented [backup]/[health]
#     sections (and fleetsync.example.toml's, which must list every key) parse when
#     uncommented and use only keys of config/src/backup.rs and health.rs.
#   * Grafana dashboard: valid JSON, unique panel ids, every query on ${DS_PROMETHEUS}.
#
# The Python tools go into a venv (CHECK_VENV, default /tmp/fleetsync-deploy-venv).
# Exits non-zero on the first failure. Usage: bash deploy/check.sh
set -euo pipefail

DEPLOY="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${CHECK_VENV:-/tmp/fleetsync-deploy-venv}"
K8S_VERSIONS="${K8S_VERSIONS:-1.33.0 1.37.0}"
TOOLS="${CHECK_TOOLS:-/tmp/fleetsync-deploy-tools}"
KUBERNETES_VALIDATE_VERSION="1.37.0"
HELM_PYTHON_SDK_VERSION="0.2.2"

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'check.sh: %s\n' "$*" >&2; exit 1; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# --- tools ------------------------------------------------------------------------------

ensure_promtool() {
    if command -v promtool >/dev/null 2>&1; then
        PROMTOOL="$(command -v promtool)"
        return
    fi
    PROMTOOL="$TOOLS/usr/bin/promtool"
    [ -x "$PROMTOOL" ] && return
    step "installing promtool (extracted from Debian's prometheus package) into $TOOLS"
    mkdir -p "$TOOLS"
    local dl="$WORK/deb"
    mkdir -p "$dl"
    if ! (cd "$dl" && apt-get download prometheus >/dev/null 2>&1); then
        [ "$(id -u)" = 0 ] || die "promtool missing and 'apt-get download prometheus' failed (run 'apt-get update' as root first)"
        apt-get update -qq >/dev/null
        (cd "$dl" && apt-get download prometheus >/dev/null) || die "cannot download Debian's prometheus package"
    fi
    dpkg-deb -x "$dl"/prometheus_*.deb "$TOOLS"
    [ -x "$PROMTOOL" ] || die "promtool not found in the prometheus package"
}

ensure_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        step "creating venv $VENV"
        python3 -m venv "$VENV"
    fi
    if ! "$VENV/bin/pip" show kubernetes-validate helm-python-sdk >/dev/null 2>&1; then
        step "installing kubernetes-validate and helm-python-sdk into $VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check \
            "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
            "helm-python-sdk==$HELM_PYTHON_SDK_VERSION"
    fi
}

kvalidate() {
    local v
    for v in $K8S_VERSIONS; do
        "$VENV/bin/kubernetes-validate" --strict -k "$v" "$@"
    done
}

ensure_promtool
ensure_venv
PY="$VENV/bin/python"

# --- Prometheus rules ---------------------------------------------------------------------

step "promtool check rules"
"$PROMTOOL" check rules "$DEPLOY/prometheus/fleetsync-rules.yml"
step "promtool test rules"
"$PROMTOOL" test rules "$DEPLOY/prometheus/fleetsync-rules.test.yml"

# --- Kubernetes manifests -----------------------------------------------------------------

step "kubernetes-validate --strict deploy/k8s (k8s $K8S_VERSIONS)"
kvalidate "$DEPLOY"/k8s/configmap.yaml "$DEPLOY"/k8s/secret.yaml \
    "$DEPLOY"/k8s/service.yaml "$DEPLOY"/k8s/statefulset.yaml "$DEPLOY"/k8s/backup/pvc.yaml \
    "$DEPLOY"/k8s-kafka/coordinator.yaml "$DEPLOY"/k8s-kafka/agent-eu1.yaml

if command -v kubectl >/dev/null 2>&1; then
    step "kubectl kustomize deploy/k8s | kubernetes-validate --strict"
    kubectl kustomize "$DEPLOY/k8s" >"$WORK/kustomized.yaml"
    kvalidate "$WORK/kustomized.yaml"
    step "kubectl kustomize deploy/k8s with the backup component | kubernetes-validate --strict"
    cp -r "$DEPLOY/k8s" "$WORK/k8s-backup"
    printf 'components:\n  - backup\n' >>"$WORK/k8s-backup/kustomization.yaml"
    kubectl kustomize "$WORK/k8s-backup" >"$WORK/kustomized-backup.yaml"
    kvalidate "$WORK/kustomized-backup.yaml"
    "$PY" - "$WORK/kustomized-backup.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
pvc = next(d for d in docs if d["kind"] == "PersistentVolumeClaim")
sts = next(d for d in docs if d["kind"] == "StatefulSet")
pod = sts["spec"]["template"]["spec"]
c = pod["containers"][0]
vols = {v["name"]: v for v in pod["volumes"]}
mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
assert mounts["backups"] == "/var/backups/fleetsync", mounts
assert vols["backups"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
key = next(e for e in c["env"] if e["name"] == "FLEETSYNC_BACKUP_KEY")
assert "secretKeyRef" in key["valueFrom"] and "value" not in key
assert {e["name"] for e in c["env"]} >= {"FLEETSYNC_STATE_DIR", "FLEETSYNC_METRICS_LISTEN"}
print("  backup component: volume, mount and key variable ok")
PY
    step "kubectl kustomize deploy/k8s-kafka (mode kafka) | kubernetes-validate --strict"
    kubectl kustomize "$DEPLOY/k8s-kafka" >"$WORK/kustomized-kafka.yaml"
    kvalidate "$WORK/kustomized-kafka.yaml"
    "$PY" - "$WORK/kustomized-kafka.yaml" "$DEPLOY" <<'PY'
import sys, tomllib, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kinds = [d["kind"] for d in docs]
assert "StatefulSet" not in kinds and "PersistentVolumeClaim" not in kinds, kinds
cm = next(d for d in docs if d["kind"] == "ConfigMap")
cfg = tomllib.loads(cm["data"]["fleetsync.toml"])
assert cfg["bus"]["kind"] == "kafka", "the overlay's config is not on the Kafka bus"
base = yaml.safe_load(open(f"{sys.argv[2]}/k8s/configmap.yaml"))["data"]["fleetsync.toml"]
assert {k: v for k, v in cfg.items() if k != "bus"} == tomllib.loads(base), "overlay and base configs differ beyond [bus]"
svc = next(d for d in docs if d["kind"] == "Service")
deps = [d for d in docs if d["kind"] == "Deployment"]
comp = lambda d: d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
coord = [d for d in deps if comp(d) == "coordinator"]
agents = [d for d in deps if comp(d) == "agent"]
assert len(coord) == 1 and agents, [d["metadata"]["name"] for d in deps]
coord = coord[0]
assert coord["spec"]["replicas"] >= 2 and coord["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
for d in deps:
    assert "volumeClaimTemplates" not in d["spec"]
    pod, labels = d["spec"]["template"]["spec"], d["spec"]["template"]["metadata"]["labels"]
    assert d["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert svc["spec"]["selector"].items() <= labels.items(), "the Service misses a pod"
    vols = {v["name"]: v for v in pod["volumes"]}
    assert all(set(v) <= {"name", "configMap", "emptyDir"} for v in vols.values()), f"a volume in mode kafka: {vols}"
    c = pod["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert set(mounts) <= set(vols) and mounts["config"] == "/etc/fleetsync"
    assert vols["config"]["configMap"]["name"] == cm["metadata"]["name"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    assert c["livenessProbe"]["httpGet"]["path"] == "/metrics"
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["FLEETSYNC_STATE_DIR"] == mounts["state"]
assert coord["spec"]["template"]["spec"]["containers"][0]["args"][0] == "coordinator"
cenv = {e["name"]: e for e in coord["spec"]["template"]["spec"]["containers"][0]["env"]}
assert cenv["FLEETSYNC_REPLICA"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
servers = {s["name"] for s in cfg["servers"]}
for a in agents:
    args = a["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "agent" and args[-2] == "--server" and args[-1] in servers, args
    assert a["spec"]["replicas"] == 1 and a["spec"]["strategy"]["type"] == "Recreate"
pdb = next(d for d in docs if d["kind"] == "PodDisruptionBudget")
assert pdb["spec"]["selector"]["matchLabels"] == coord["spec"]["selector"]["matchLabels"]
assert pdb["spec"]["maxUnavailable"] == 1
print(f"  k8s-kafka: {coord['spec']['replicas']} coordinators + PDB, {len(agents)} agent Deployment(s), no volume")
PY
else
    step "kubectl not found: skipping the kustomization check"
fi

# --- Helm chart: lint, render, validate ---------------------------------------------------

step "helm lint + render (helm-python-sdk)"
"$PY" - "$DEPLOY/helm/fleetsync" "$WORK" <<'PY'
import sys, yaml, helm_python as helm

chart_dir, out = sys.argv[1], sys.argv[2]
failed = False

report = helm.lint(chart_dir, strict=True, kube_version="v1.33.0")
for m in report.get("messages", []):
    level = {1: "INFO", 2: "WARNING", 3: "ERROR"}.get(m.get("severity"), "UNKNOWN")
    print(f"  lint {level} {m.get('path')}: {m.get('error')}")
    failed |= m.get("severity", 0) >= 2
for e in report.get("errors", []) or []:
    print(f"  lint ERROR {e}")
    failed = True

def check_backup(values, docs, c, pod, sts):
    """The backup volume, key variable and CronJob, as the values ask."""
    b = values.get("backup", {})
    pvcs = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    crons = [d for d in docs if d["kind"] == "CronJob"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    if not b.get("enabled"):
        assert not pvcs and not crons and "backups" not in mounts
        assert all("valueFrom" not in e for e in c["env"]), "no key variable without a Secret"
        return
    claim = b.get("existingClaim") or f"{sts['metadata']['name']}-backups"
    assert mounts["backups"] == b.get("mountPath", "/var/backups/fleetsync"), mounts
    assert vols["backups"]["persistentVolumeClaim"]["claimName"] == claim
    if b.get("existingClaim"):
        assert not pvcs
    else:
        assert [p["metadata"]["name"] for p in pvcs] == [claim]
        assert pvcs[0]["spec"].get("storageClassName") == (b.get("storageClass") or None)
        assert pvcs[0]["spec"]["accessModes"] == b.get("accessModes", ["ReadWriteOnce"])
        keep = pvcs[0]["metadata"].get("annotations", {}).get("helm.sh/resource-policy")
        assert (keep == "keep") == b.get("keepOnUninstall", True)
    key = b.get("encryptionKey", {})
    env = {e["name"]: e for e in c["env"]}
    if key.get("secretName"):
        ref = env[key.get("env", "FLEETSYNC_BACKUP_KEY")]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": key["secretName"], "key": key.get("secretKey", "backup.key")}
    cj = b.get("cronJob", {})
    if not cj.get("enabled"):
        assert not crons
        return
    assert len(crons) == 1
    jpod = crons[0]["spec"]["jobTemplate"]["spec"]["template"]
    svc = next(d for d in docs if d["kind"] == "Service")
    sel = svc["spec"]["selector"]
    assert not sel.items() <= jpod["metadata"]["labels"].items(), "the Service would select the backup Job"
    inits = jpod["spec"]["initContainers"]
    assert [i["args"][-1] for i in inits] == cj["servers"]
    assert all(i["args"][:2] == ["backup", "create"] for i in inits)
    main = jpod["spec"]["containers"]
    assert [m["args"][1] for m in main] == ["prune" if cj.get("prune", True) else "list"]
    jvols = {v["name"]: v for v in jpod["spec"]["volumes"]}
    assert jvols["backups"]["persistentVolumeClaim"]["claimName"] == claim
    for ct in inits + main:
        assert {m["name"] for m in ct["volumeMounts"]} <= set(jvols)
        assert ct["securityContext"]["readOnlyRootFilesystem"] is True
        assert ct["envFrom"] == c["envFrom"]
        if key.get("secretName"):
            assert any(e.get("valueFrom", {}).get("secretKeyRef") for e in ct["env"])
    same = cj.get("sameNode", True)
    assert ("affinity" in jpod["spec"]) == same


KAFKA_CONFIG = """state_dir = "/var/lib/fleetsync"

[[servers]]
name = "eu1"
url = "mysql://sync@db-eu1:3306"
password_env = "EU1_PASSWORD"

[[servers]]
name = "eu2"
url = "mysql://sync@db-eu2:3306"
password_env = "EU2_PASSWORD"

[[syncs]]
name = "world"
source = "eu1"
targets = ["eu2"]

[bus]
kind = "kafka"
brokers = "kafka-0.kafka:9092"
"""

def check_kafka(values, docs):
    """Mode kafka: Deployments without volumes, a PDB, one agent Deployment per server."""
    kinds = [d["kind"] for d in docs]
    assert "StatefulSet" not in kinds and "PersistentVolumeClaim" not in kinds, kinds
    co = values.get("coordinator", {})
    ag = values.get("agent", {})
    deps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    coord = [d for d in deps.values() if d["metadata"]["labels"].get("app.kubernetes.io/component") == "coordinator"]
    agents = [d for d in deps.values() if d["metadata"]["labels"].get("app.kubernetes.io/component") == "agent"]
    assert len(coord) == 1, list(deps)
    coord = coord[0]
    assert coord["spec"]["replicas"] == co.get("replicas", 2), coord["spec"]["replicas"]
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    svc = next(d for d in docs if d["kind"] == "Service")
    for d in [coord] + agents:
        assert "volumeClaimTemplates" not in d["spec"]
        pod = d["spec"]["template"]["spec"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert d["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert svc["spec"]["selector"].items() <= labels.items(), "the Service misses a pod"
        for v in pod["volumes"]:
            assert set(v) <= {"name", "configMap", "emptyDir"}, f"a volume in mode kafka: {v}"
        vols = {v["name"]: v for v in pod["volumes"]}
        c = pod["containers"][0]
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        assert set(mounts) <= set(vols), "a volumeMount has no volume"
        assert mounts["config"] == "/etc/fleetsync"
        assert vols["config"]["configMap"]["name"] == cm["metadata"]["name"]
        assert c["args"][1:3] == ["--config", "/etc/fleetsync/fleetsync.toml"], c["args"]
        assert c["readinessProbe"]["httpGet"]["path"] == "/health"
        assert c["livenessProbe"]["httpGet"]["path"] == "/metrics"
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["FLEETSYNC_STATE_DIR"] == mounts["state"], "state_dir is not the scratch dir"
    assert coord["spec"]["template"]["spec"]["containers"][0]["args"][0] == "coordinator"
    assert coord["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    cenv = {e["name"]: e for e in coord["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert cenv["FLEETSYNC_REPLICA"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    assert len(pdbs) == 1, "one PodDisruptionBudget (the coordinators')"
    pdb = pdbs[0]["spec"]
    assert pdb["maxUnavailable"] == co.get("pdb", {}).get("maxUnavailable", 1)
    assert pdb["selector"]["matchLabels"] == coord["spec"]["selector"]["matchLabels"]
    servers = ag.get("servers", [])
    assert sorted(a["spec"]["template"]["spec"]["containers"][0]["args"][-1] for a in agents) == sorted(servers)
    for a in agents:
        args = a["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[0] == "agent" and args[-2] == "--server", args
        assert a["spec"]["replicas"] == 1 + ag.get("standby", 0)
        assert a["spec"]["strategy"]["type"] == "Recreate", "two agents of one server must not overlap"
        assert not a["spec"]["selector"]["matchLabels"].items() <= coord["spec"]["template"]["metadata"]["labels"].items()
    print(f"  mode kafka: {coord['spec']['replicas']} coordinators, PDB maxUnavailable {pdb['maxUnavailable']}, agents {servers}, no volume")

cases = {
    "defaults": None,
    "everything": {
        "fullnameOverride": "fs-eu",
        "image": {"repository": "registry.example/fleetsync", "tag": "1.2.3"},
        "imagePullSecrets": [{"name": "regcred"}],
        "existingSecret": "my-passwords",
        "persistence": {"enabled": False},
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "service": {"annotations": {"a": "b"}},
        "extraEnv": [{"name": "FLEETSYNC_SERVER_EU1_URL", "value": "mysql://sync@other:3306"}],
        "podAnnotations": {"x": "y"},
        "podLabels": {"team": "db"},
        "metrics": {"port": 9999},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "db", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {}},
        "backup": {
            "enabled": True, "mountPath": "/backups", "size": "50Gi", "storageClass": "slow",
            "accessModes": ["ReadWriteMany"], "keepOnUninstall": False,
            "encryptionKey": {"secretName": "fleetsync-backup-key", "secretKey": "key",
                              "env": "FS_BACKUP_KEY"},
            "cronJob": {"enabled": True, "servers": ["eu1", "eu2"], "prune": False,
                        "timeZone": "Etc/UTC", "sameNode": False,
                        "resources": {"limits": {"memory": "1Gi"}}},
        },
    },
    "storageclass": {"persistence": {"storageClass": "fast", "size": "5Gi"}, "secrets": {},
                     "backup": {"enabled": True, "storageClass": "fast"}},
    "backup-existing-claim": {
        "backup": {"enabled": True, "existingClaim": "my-backups",
                   "encryptionKey": {"secretName": "k"},
                   "cronJob": {"enabled": True, "servers": ["eu1"]}},
    },
    "kafka": {"mode": "kafka", "config": KAFKA_CONFIG, "agent": {"servers": ["eu1"]}},
    "kafka-everything": {
        "mode": "kafka", "config": KAFKA_CONFIG, "fullnameOverride": "fs-eu",
        "coordinator": {"replicas": 3, "pdb": {"maxUnavailable": 2},
                        "affinity": {"podAntiAffinity": {}}},
        "agent": {"servers": ["eu1", "eu2"], "standby": 1},
        "existingSecret": "my-passwords", "metrics": {"port": 9999},
        "serviceMonitor": {"enabled": True}, "persistence": {"enabled": False},
        "podLabels": {"team": "db"}, "extraEnv": [{"name": "X", "value": "y"}],
    },
}
for case, values in cases.items():
    rendered = helm.Chart.load(chart_dir).render(values, name="fleetsync", namespace="sync", is_install=True)
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append(doc)
    kinds = sorted(d["kind"] for d in docs)
    print(f"  {case}: {', '.join(kinds)}")
    if (values or {}).get("mode") == "kafka":
        check_kafka(values, docs)
        with open(f"{out}/helm-{case}.yaml", "w") as f:
            yaml.safe_dump_all([d for d in docs if d["kind"] != "ServiceMonitor"], f, sort_keys=False)
        continue
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    assert sts["spec"]["replicas"] == 1, "StatefulSet must have exactly one replica"
    pod = sts["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    port = (values or {}).get("metrics", {}).get("port", 9187)
    assert env["FLEETSYNC_METRICS_LISTEN"] == f"0.0.0.0:{port}", env
    assert c["ports"][0]["containerPort"] == port
    assert c["livenessProbe"]["httpGet"]["path"] == "/metrics"
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = {v["name"] for v in pod["volumes"]}
    claims = {t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])}
    assert {m["name"] for m in c["volumeMounts"]} <= volumes | claims, "a volumeMount has no volume"
    secret_name = c["envFrom"][0]["secretRef"]["name"]
    secrets = [d for d in docs if d["kind"] == "Secret"]
    if values and values.get("existingSecret"):
        assert not secrets and secret_name == values["existingSecret"]
    else:
        assert [s["metadata"]["name"] for s in secrets] == [secret_name]
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    if values and values.get("serviceMonitor", {}).get("enabled"):
        assert len(monitors) == 1 and monitors[0]["spec"]["endpoints"][0]["port"] == "metrics"
        svc = next(d for d in docs if d["kind"] == "Service")
        assert monitors[0]["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    else:
        assert not monitors
    check_backup(values or {}, docs, c, pod, sts)
    # kubernetes-validate has no schema for the ServiceMonitor CRD: checked above instead.
    with open(f"{out}/helm-{case}.yaml", "w") as f:
        yaml.safe_dump_all([d for d in docs if d["kind"] != "ServiceMonitor"], f, sort_keys=False)
# Values the chart must refuse with a message (helm's `fail`), rendering nothing.
refused = {
    "cronJob without the backup volume": {"backup": {"cronJob": {"enabled": True, "servers": ["eu1"]}}},
    "cronJob without servers": {"backup": {"enabled": True, "cronJob": {"enabled": True}}},
    "an unknown mode": {"mode": "cluster"},
    "mode kafka on the embedded bus": {"mode": "kafka", "agent": {"servers": ["eu1"]}},
    "mode kafka without agent servers": {"mode": "kafka", "config": KAFKA_CONFIG},
    "mode kafka with a backup volume": {"mode": "kafka", "config": KAFKA_CONFIG,
                                        "agent": {"servers": ["eu1"]}, "backup": {"enabled": True}},
    "a server name that is no DNS label": {"mode": "kafka", "config": KAFKA_CONFIG,
                                           "agent": {"servers": ["EU_1"]}},
}
for case, values in refused.items():
    try:
        helm.Chart.load(chart_dir).render(values, name="fleetsync", namespace="sync", is_install=True)
    except Exception as e:  # helm-python-sdk raises the template error
        print(f"  refused as expected ({case}): {str(e).splitlines()[0][:160]}")
    else:
        print(f"  ERROR: {case}: rendered without an error")
        failed = True
sys.exit(1 if failed else 0)
PY

step "kubernetes-validate --strict of the rendered chart (k8s $K8S_VERSIONS)"
kvalidate "$WORK"/helm-*.yaml

# --- example configs ----------------------------------------------------------------------

step "example configs: TOML parses, names resolve, every password_env has a Secret key"
"$PY" - "$DEPLOY" <<'PY'
import sys, tomllib, yaml
deploy = sys.argv[1]

def check(label, text, secret_keys):
    cfg = tomllib.loads(text)
    servers = {s["name"] for s in cfg.get("servers", [])}
    assert servers, f"{label}: no [[servers]]"
    for sync in cfg.get("syncs", []):
        assert sync["source"] in servers, f"{label}: sync {sync['name']}: unknown source"
        for t in sync["targets"]:
            assert t in servers, f"{label}: sync {sync['name']}: unknown target {t}"
    for s in cfg["servers"]:
        if "password_env" in s:
            assert s["password_env"] in secret_keys, f"{label}: {s['password_env']} is not a Secret key"
    print(f"  {label}: ok ({len(servers)} servers, {len(cfg.get('syncs', []))} syncs)")
    return cfg

cm = yaml.safe_load(open(f"{deploy}/k8s/configmap.yaml"))
secret = yaml.safe_load(open(f"{deploy}/k8s/secret.yaml"))
a = check("k8s/configmap.yaml", cm["data"]["fleetsync.toml"], set(secret["stringData"]))
values = yaml.safe_load(open(f"{deploy}/helm/fleetsync/values.yaml"))
b = check("helm values.yaml", values["config"], set(values["secrets"]))
assert a == b, "the k8s and Helm example configs differ"
PY

step "commented [backup]/[health] sections of the example configs: valid TOML, known keys"
"$PY" - "$DEPLOY" <<'PY'
import re, sys, tomllib, yaml
deploy = sys.argv[1]
root = f"{deploy}/.."

def fields(path, struct):
    """Field names of a config struct, read from its Rust source (never out of date)."""
    src = open(f"{root}/config/src/{path}").read()
    body = re.search(r"pub struct %s \{(.*?)\n\}" % struct, src, re.S).group(1)
    return set(re.findall(r"^\s*pub (\w+):", body, re.M))

known = {"backup": fields("backup.rs", "BackupConfig"), "health": fields("health.rs", "HealthConfig")}

def uncommented(text):
    """The `# [backup]` / `# [health]` blocks with their `# key = value` lines uncommented.
    Of the two encryption keys only the first is kept (they exclude each other)."""
    out, inside, key_seen = [], False, False
    for line in text.splitlines():
        m = re.match(r"^\s*# (\[(backup|health)\])\s*$", line)
        if m:
            inside = True
            out.append(m.group(1))
            continue
        m = re.match(r"^\s*# (\w+ = .*)$", line)
        if inside and m:
            if m.group(1).startswith("encryption_key_"):
                if key_seen:
                    continue
                key_seen = True
            out.append(m.group(1))
        elif inside and not line.strip().startswith("#"):
            inside = False
    return "\n".join(out)

def check(label, text, backup_dir=None):
    cfg = tomllib.loads(uncommented(text))
    assert set(cfg) == {"backup", "health"}, f"{label}: sections {set(cfg)}"
    for section, keys in cfg.items():
        unknown = set(keys) - known[section]
        assert not unknown, f"{label}: unknown [{section}] keys {unknown}"
    if backup_dir:
        assert cfg["backup"]["dir"] == backup_dir, f"{label}: [backup] dir is not {backup_dir}"
    print(f"  {label}: ok ({', '.join(f'{k}: {len(v)} keys' for k, v in cfg.items())})")
    return cfg

text = open(f"{root}/fleetsync.example.toml").read()
check("fleetsync.example.toml", text)
listed = set(re.findall(r"^# (\w+) = ", text, re.M))
missing = (known["backup"] | known["health"]) - listed
assert not missing, f"fleetsync.example.toml: keys not shown: {missing}"
cm = yaml.safe_load(open(f"{deploy}/k8s/configmap.yaml"))["data"]["fleetsync.toml"]
check("k8s/configmap.yaml", cm, "/var/backups/fleetsync")
values = yaml.safe_load(open(f"{deploy}/helm/fleetsync/values.yaml"))
check("helm values.yaml", values["config"], values["backup"]["mountPath"])
PY

# --- Grafana ------------------------------------------------------------------------------

step "grafana dashboard"
"$PY" -m json.tool "$DEPLOY/grafana/fleetsync-dashboard.json" >/dev/null
"$PY" - "$DEPLOY/grafana/fleetsync-dashboard.json" <<'PY'
import json, re, sys
d = json.load(open(sys.argv[1]))
ids = [p["id"] for p in d["panels"]]
assert len(ids) == len(set(ids)), "duplicate panel ids"
names = {v["name"] for v in d["templating"]["list"]}
assert {"DS_PROMETHEUS", "sync", "target", "server"} <= names, names
known = {
    "fleetsync_binlog_events_total", "fleetsync_source_transactions_total",
    "fleetsync_snapshot_rows_total", "fleetsync_apply_rows_total",
    "fleetsync_apply_transactions_total", "fleetsync_apply_errors_total",
    "fleetsync_apply_batch_seconds_bucket", "fleetsync_replication_lag_seconds",
    "fleetsync_pipeline_up", "fleetsync_pipeline_restarts_total",
    "fleetsync_backup_last_success_timestamp_seconds", "fleetsync_backup_duration_seconds",
    "fleetsync_backup_bytes", "fleetsync_backup_rows", "fleetsync_backup_failures_total",
    "fleetsync_pitr_archive_lag_seconds", "fleetsync_pitr_archived_transactions_total",
    "fleetsync_pitr_archived_bytes_total", "fleetsync_health_check_status",
}
queries = 0
for p in d["panels"]:
    if p["type"] == "row":
        continue
    assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
    for t in p["targets"]:
        assert t["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
        for m in re.findall(r"fleetsync_[a-z_]+", t["expr"]):
            assert m in known, f"{p['title']}: unknown metric {m}"
        queries += 1
print(f"  ok: {len(ids)} panels, {queries} queries")
PY

printf '\nAll deploy checks passed.\n'
