#!/usr/bin/env bash
# Checks what deploys the monitor on Kubernetes: the Helm chart (deploy/helm/fargate-health-monitor)
# and the kustomization of the plain manifests (deploy/kubernetes). Run it from the repository's
# root (or anywhere: it changes there): bash tests/deploy/check-kubernetes.sh
#
#   - yamllint on the chart's values, the plain manifests and the test values;
#   - helm lint --strict (Helm 4's SDK through helm-python-sdk; no helm binary needed), with the
#     default values and with the test values;
#   - helm template with the defaults, with tests/deploy/all-toggles.yaml (ServiceMonitor, IRSA,
#     an existing Secret, a PVC, PrometheusRule, dashboard, PDB) and with tests/deploy/podmonitor.yaml
#     (PodMonitor, emptyDir, an existing ConfigMap, a Secret from the chart), and with two
#     variations of the job label; guards that must refuse values do refuse them;
#   - every rendered document: the built-in kinds with kubernetes-validate --strict, the
#     monitoring.coreos.com kinds against the CRDs' openAPIV3Schema with unknown fields refused
#     (validate_crd.py); selectors, ports and references agree (check_rendered.py consistency);
#   - the rendered config.toml with `fargate-health-monitor check` (FHM_BIN);
#   - the PrometheusRule is dashboards/alerts.yml with only the job label replaced (and the
#     additional rule labels added), the dashboard ConfigMap holds dashboards/fargate-health-monitor.json;
#   - `kubectl kustomize deploy/kubernetes/`: the same validation and config check, the Namespace
#     first, no IAM policy among the applied objects;
#   - that the validators do reject a misspelled field (a copy of a rendered document with one).
#
# Environment: FHM_BIN (default target/release/fargate-health-monitor), KUBE_VERSION (the
# Kubernetes version to validate against, default 1.32.0), CRD_DIR (default deploy/crds/v0.93.0),
# KEEP=1 keeps the rendered files (their directory is printed).
# Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/../.."

CHART=deploy/helm/fargate-health-monitor
HERE=tests/deploy
ALERTS=dashboards/alerts.yml
DASHBOARD=dashboards/fargate-health-monitor.json
FHM_BIN=${FHM_BIN:-target/release/fargate-health-monitor}
KUBE_VERSION=${KUBE_VERSION:-1.32.0}
CRD_DIR=${CRD_DIR:-deploy/crds/v0.93.0}

step() { printf '\n==> %s\n' "$*"; }
die() {
    printf '\nFAIL: %s\n' "$*" >&2
    exit 1
}
need_command() { command -v "$1" >/dev/null 2>&1 || die "$1 is missing: $2"; }
need_module() { python3 -c "import $1" 2>/dev/null || die "the Python module $1 is missing: $2"; }

step "tools"
need_command python3 "apt-get install python3 (3.11 or later)"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "python3 is $(python3 --version 2>&1): 3.11 or later is needed (tomllib)"
need_command yamllint "pip install yamllint (PyPI), or apt-get install yamllint"
need_command kubernetes-validate "pip install kubernetes-validate (PyPI)"
need_command kubectl "apt-get install kubectl, a kubectl with kustomize built in (1.27 or later)"
need_module helm_python "pip install helm-python-sdk (PyPI): Helm 4 as a library"
need_module jsonschema "pip install jsonschema (PyPI; check-jsonschema brings it)"
need_module referencing "pip install jsonschema (PyPI; it brings referencing)"
need_module yaml "pip install pyyaml (PyPI), or apt-get install python3-yaml"
[ -x "$FHM_BIN" ] || die "$FHM_BIN is missing: cargo build --release, or set FHM_BIN to the binary"
for crd in servicemonitors podmonitors prometheusrules; do
    [ -f "$CRD_DIR/monitoring.coreos.com_$crd.yaml" ] \
        || die "$CRD_DIR/monitoring.coreos.com_$crd.yaml is missing (prometheus-operator's CRDs, see deploy/crds/README.md)"
done
for link in alerts.yml fargate-health-monitor.json; do
    [ -L "$CHART/files/$link" ] || die "$CHART/files/$link is not a symbolic link (to dashboards/$link)"
    [ -s "$CHART/files/$link" ] || die "$CHART/files/$link does not lead to a file"
done
python3 -c 'import helm_python as h; print("helm-python-sdk", h.__version__, "Helm", h.helm_sdk_version())'
kubernetes-validate --version
yamllint --version
kubectl version --client 2>/dev/null | head -2
"$FHM_BIN" --version

work=$(mktemp -d)
if [ "${KEEP:-}" = 1 ]; then
    trap 'echo "rendered files kept in $work"' EXIT
else
    trap 'rm -rf "$work"' EXIT
fi

step "yamllint"
yamllint --strict -c "$HERE/.yamllint" \
    "$CHART/Chart.yaml" "$CHART/values.yaml" deploy/kubernetes/*.yaml "$HERE"/*.yaml
echo "ok"

step "helm lint --strict"
python3 "$HERE/helm_chart.py" lint "$CHART" --namespace fargate-health-monitor --kube-version "v$KUBE_VERSION"
python3 "$HERE/helm_chart.py" lint "$CHART" --namespace fhm-system --kube-version "v$KUBE_VERSION" \
    -f "$HERE/all-toggles.yaml"
python3 "$HERE/helm_chart.py" lint "$CHART" --namespace ops --kube-version "v$KUBE_VERSION" \
    -f "$HERE/podmonitor.yaml"

# validate OUT: the built-in kinds with kubernetes-validate --strict (a warning, such as a kind it
# has no schema for, fails too), the custom resources against the CRDs.
validate() {
    local manifest=$1 builtin=$1.builtin.yaml custom=$1.custom.yaml output
    python3 "$HERE/check_rendered.py" split "$manifest" "$builtin" "$custom"
    output=$(kubernetes-validate --strict --kubernetes-version "$KUBE_VERSION" "$builtin" 2>&1) \
        || die "kubernetes-validate --strict rejected $manifest:"$'\n'"$output"
    echo "$output"
    if grep -qv '^INFO ' <<<"$output"; then
        die "kubernetes-validate did not pass everything in $manifest:"$'\n'"$output"
    fi
    if grep -q '^kind:' "$custom"; then
        python3 "$HERE/validate_crd.py" --crds "$CRD_DIR" --kube-version "$KUBE_VERSION" "$custom" \
            || die "the custom resources in $manifest do not match the CRDs in $CRD_DIR"
    fi
}

# check_config OUT: the config the Deployment mounts, with `fargate-health-monitor check`.
check_config() {
    local status=0
    python3 "$HERE/check_rendered.py" config "$1" "$1.config" "$FHM_BIN" || status=$?
    case $status in
        0) ;;
        3) [ "${2:-}" = existing-configmap ] || die "$1 has no ConfigMap with the config" ;;
        *) die "the config in $1 does not pass check" ;;
    esac
}

# render NAME NAMESPACE OUT [helm_chart.py template options]: helm template, then every check.
render() {
    local name=$1 namespace=$2 out=$work/$3
    shift 3
    step "helm template $name --namespace $namespace $*"
    python3 "$HERE/helm_chart.py" template "$CHART" --name "$name" --namespace "$namespace" --out "$out" "$@"
    validate "$out"
    python3 "$HERE/check_rendered.py" consistency "$out"
    if grep -q '^kind: PrometheusRule' "$out"; then
        python3 "$HERE/check_rendered.py" rules "$out" "$ALERTS" "$out.values.json"
    fi
    if grep -q '^  fargate-health-monitor.json:' "$out"; then
        python3 "$HERE/check_rendered.py" dashboard "$out" "$DASHBOARD"
    fi
}

render fargate-health-monitor fargate-health-monitor default.yaml
check_config "$work/default.yaml"
grep -q '^kind: ServiceMonitor\|^kind: PodMonitor\|^kind: PrometheusRule\|^kind: PodDisruptionBudget' \
    "$work/default.yaml" && die "the default values render an optional object"

render fhm fhm-system all-toggles.yaml -f "$HERE/all-toggles.yaml"
check_config "$work/all-toggles.yaml"
grep -q '^  fargate-health-monitor.json:' "$work/all-toggles.yaml" || die "all-toggles.yaml renders no dashboard"
for kind in ServiceMonitor PrometheusRule PodDisruptionBudget PersistentVolumeClaim; do
    grep -q "^kind: $kind" "$work/all-toggles.yaml" || die "all-toggles.yaml renders no $kind"
done
grep -q 'eks.amazonaws.com/role-arn: arn:aws:iam::111122223333:role/' "$work/all-toggles.yaml" \
    || die "serviceAccount.irsaRoleArn did not annotate the service account"

render fhm ops podmonitor.yaml -f "$HERE/podmonitor.yaml"
check_config "$work/podmonitor.yaml" existing-configmap
grep -q '^kind: PodMonitor' "$work/podmonitor.yaml" || die "podmonitor.yaml renders no PodMonitor"
grep -q 'emptyDir:' "$work/podmonitor.yaml" || die "podmonitor.yaml renders no emptyDir"

# The job label in FargateHealthMonitorDown, from the ServiceMonitor's jobLabel and set outright.
render fhm fhm-system joblabel.yaml -f "$HERE/all-toggles.yaml" --set serviceMonitor.jobLabel=app.kubernetes.io/name
render fhm fhm-system job.yaml -f "$HERE/all-toggles.yaml" --set prometheusRule.job=fhm-prod
grep -q 'targetLabel: job' "$work/job.yaml" || die "prometheusRule.job is not the ServiceMonitor's job too"
# A jobLabel whose value is empty: prometheus-operator falls back to <namespace>/<name>.
printf 'podMonitor:\n  jobLabel: team\npodLabels:\n  team: ""\n' >"$work/emptyjoblabel.values.yaml"
render fhm ops emptyjoblabel.yaml -f "$HERE/podmonitor.yaml" -f "$work/emptyjoblabel.values.yaml"
grep -q 'up{job="ops/fhm-fargate-health-monitor"}' "$work/emptyjoblabel.yaml" \
    || die "an empty jobLabel value does not fall back to <namespace>/<name>"

step "values the chart must refuse"
refuse() {
    local pattern=$1
    shift
    python3 "$HERE/helm_chart.py" template "$CHART" --name fhm --namespace fhm-system \
        --out "$work/refused.yaml" --expect-error "$pattern" "$@"
}
refuse "additional properties 'enabeld' not allowed" --set serviceMonitor.enabeld=true
refuse "additional properties 'resource' not allowed" --set resource.limits.cpu=1
refuse "enable one of them, not both" -f "$HERE/all-toggles.yaml" --set podMonitor.enabled=true
refuse "irsaRoleArn" --set serviceAccount.irsaRoleArn=not-an-arn
refuse "secrets.create and secrets.existingSecret" -f "$HERE/podmonitor.yaml" --set secrets.existingSecret=x

step "kubectl kustomize deploy/kubernetes/"
kubectl kustomize deploy/kubernetes/ >"$work/kustomize.yaml"
validate "$work/kustomize.yaml"
python3 "$HERE/check_rendered.py" kustomize "$work/kustomize.yaml"
python3 "$HERE/check_rendered.py" consistency "$work/kustomize.yaml"
check_config "$work/kustomize.yaml"
[ -f deploy/iam-policy.json ] && python3 -m json.tool deploy/iam-policy.json >/dev/null \
    || die "deploy/iam-policy.json is missing or not JSON"
if ls deploy/kubernetes/*.json >/dev/null 2>&1; then
    die "a JSON file is in deploy/kubernetes/ (the IAM policy belongs in deploy/iam-policy.json)"
fi

step "the validators reject a misspelled field"
# mutant KIND PATH=VALUE VALIDATOR...: a copy of one rendered document with the field set must fail.
mutant() {
    local kind=$1 assignment=$2
    shift 2
    python3 "$HERE/check_rendered.py" mutate "$work/all-toggles.yaml" "$work/mutant.yaml" "$kind" "$assignment"
    if "$@" "$work/mutant.yaml" >"$work/mutant.out" 2>&1; then
        cat "$work/mutant.out"
        die "$* accepted $kind with $assignment"
    fi
    grep -E 'ERROR' "$work/mutant.out" | head -1
}
strict_k8s=(kubernetes-validate --strict --kubernetes-version "$KUBE_VERSION")
crd=(python3 "$HERE/validate_crd.py" --crds "$CRD_DIR" --kube-version "$KUBE_VERSION")
mutant Deployment 'spec.template.spec.containers.0.securityContext.readOnlyRootFilesytem=true' "${strict_k8s[@]}"
mutant ServiceMonitor 'spec.endpoints.0.intervall=30s' "${crd[@]}"
mutant ServiceMonitor 'metadata.lables={team: platform}' "${crd[@]}"
mutant PrometheusRule 'spec.groups.0.rules.0.fore=5m' "${crd[@]}"

printf '\nall Kubernetes deployment checks passed\n'
