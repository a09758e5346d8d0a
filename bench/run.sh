#!/usr/bin/env bash
# The benchmark: the daemon (release build) side by side with a bare aws-sdk-eks describe loop
# (examples/bare_sdk.rs: the same SDK set-up, nothing else) and, where python3 has boto3, a plain
# boto3 thread-pool poller (bench/boto3_baseline.py), all against one simulator process.
#
#   bench/run.sh [CLUSTERS] [PROFILES_PER_CLUSTER] [SECONDS]
#
# Defaults: 1000 clusters, each with 5 Fargate profiles, NODEGROUPS (default 2) managed node
# groups and ADDONS (default 2) add-ons, and the cluster itself: 10,000 resources of every kind
# the simulated fleet has, a tenth of the profiles, node groups and add-ons with issues; a 20 s
# interval and 80 s of steady-state polling. NODEGROUPS=0 ADDONS=0 gives a fleet of Fargate
# profiles alone (the daemon is then told kinds = ["fargate_profile"]). LATENCY_MS (default 30)
# delays every describe in the simulator, as a real EKS endpoint takes tens of milliseconds; it
# is not applied while the simulator's own capacity is measured.
#
# Steps, one after another: the simulator's capacity (the bare loop as fast as 32 calls in
# flight allow, with the simulator's CPU per describe); the daemon from start to ready and then
# for SECONDS; the bare loop and boto3 paced at the daemon's own describe rate (like for like:
# the same requests at the same pace), then both unpaced.
set -euo pipefail
cd "$(dirname "$0")/.."

clusters=${1:-1000}
per_cluster=${2:-5}
seconds=${3:-80}
latency=${LATENCY_MS:-30}
nodegroups=${NODEGROUPS:-2}
addons=${ADDONS:-2}
interval=20
mixed=$((nodegroups + addons > 0 ? 1 : 0))
# What the daemon describes per cluster: the cluster (when it watches every kind), its profiles,
# node groups and add-ons.
per_cluster_all=$((mixed + per_cluster + nodegroups + addons))
profiles=$((clusters * per_cluster_all))
rate=$((profiles / interval * 2 + 100))
if [ "$mixed" = 1 ]; then kinds=''; else kinds='kinds = ["fargate_profile"]'; fi

cargo build --release --locked --quiet --bins --examples
bin=target/release/fargate-health-monitor
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
export AWS_ACCESS_KEY_ID=AKIASIMULATEDEXAMPLE AWS_SECRET_ACCESS_KEY=simulated-secret-access-key
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null

ticks=$(getconf CLK_TCK)
cpu_of() { awk -v t="$ticks" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }
div() { echo "scale=${3:-0}; ($1) / ($2)" | bc; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
aws=$(port); control=$(port); admin=$(port)
endpoint="http://127.0.0.1:$aws"

"$bin" simulate --listen "127.0.0.1:$aws" --control-listen "127.0.0.1:$control" \
    --clusters "$clusters" --profiles-per-cluster "$per_cluster" --unhealthy-share 0.1 \
    --nodegroups-per-cluster "$nodegroups" --addons-per-cluster "$addons" \
    >"$work/simulate.out" 2>&1 &
sim=$!
until curl -sf "http://127.0.0.1:$control/v1/stats" >/dev/null; do sleep 0.2; done

echo "== simulator: $profiles resources ($clusters clusters, each itself and $per_cluster profiles, $nodegroups node groups, $addons add-ons), 10% with issues"
# The same mix of describes as the daemon's, for every baseline.
mix() { target/release/examples/bare_sdk "$endpoint" "$clusters" "$per_cluster" "$1" "${2:-0}" "$nodegroups" "$addons"; }
sim_cpu=$(cpu_of "$sim")
capacity=$(mix 3)
sim_cpu=$(echo "$(cpu_of "$sim") - $sim_cpu" | bc)
n=$(echo "$capacity" | field describes)
echo "capacity:                 $(div "$n" "$(echo "$capacity" | field wall_s)") describes/s with 32 in flight; $(div "$sim_cpu * 1000000" "$n") us of simulator CPU per describe"
[ "$latency" -gt 0 ] && curl -sf "http://127.0.0.1:$control/v1/commands" -d "{\"op\": \"add_fault\",
    \"fault\": {\"scope\": {\"operations\": [\"DescribeFargateProfile\", \"DescribeNodegroup\", \"DescribeAddon\", \"DescribeCluster\"]},
    \"kind\": {\"type\": \"delay\", \"millis\": $latency}}}" >/dev/null
echo "latency from here on:     ${latency} ms per describe"

cat >"$work/config.toml" <<TOML
[server]
listen = "127.0.0.1:$admin"
[state]
path = "$work/state.json"
[poll]
interval = "${interval}s"
discovery_interval = "10m"
timeout = "5s"
concurrency = 32
max_requests_per_second = $rate
[[targets]]
region = "us-east-1"
cluster = "*"
$kinds
endpoint_url = "$endpoint"
sts_endpoint_url = "$endpoint"
TOML

echo "== daemon: interval ${interval}s, max_requests_per_second $rate, concurrency 32"
started=$(date +%s.%N)
RUST_LOG=info,fargate_health_monitor::store=debug \
    "$bin" run --config "$work/config.toml" 2>"$work/daemon.log" &
pid=$!
until curl -sf "http://127.0.0.1:$admin/healthz" >/dev/null; do sleep 0.1; done
idle_rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
describes() {
    curl -s "http://127.0.0.1:$admin/metrics" |
        awk '/^fargate_health_monitor_api_requests_total\{.*operation="Describe(FargateProfile|Nodegroup|Addon|Cluster)"/ {n += $2} END {print n + 0}'
}
until curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null; do sleep 0.1; done
first_cycle=$(echo "$(date +%s.%N) - $started" | bc)
ready_rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
writes_before=$(grep -c 'state file written' "$work/daemon.log" || true)
# Measure whole cycles: from 2 s into the next cycle (they start every interval from the
# start) for SECONDS rounded up to whole intervals.
cycles=$(( (seconds + interval - 1) / interval ))
seconds=$((cycles * interval))
since=$(echo "$(date +%s.%N) - $started" | bc)
sleep "$(echo "($since / $interval + 1) * $interval + 2 - $since" | bc)"
ready_cpu=$(cpu_of "$pid"); ready_describes=$(describes)
sleep "$seconds"
end_cpu=$(cpu_of "$pid"); end_describes=$(describes)
scrape() {
    local start; start=$(date +%s.%N)
    curl -s "$@" "http://127.0.0.1:$admin/metrics" | wc -c
    echo "$(date +%s.%N) - $start" | bc
}
plain=$(scrape); gzipped=$(scrape -H 'Accept-Encoding: gzip')
overruns=$(curl -s "http://127.0.0.1:$admin/metrics" | awk '/^fargate_health_monitor_poll_cycle_overruns_total/ {print $2}')
peak_rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
kill -TERM "$pid"; wait "$pid"

n=$((end_describes - ready_describes))
daemon_us=$(div "($end_cpu - $ready_cpu) * 1000000" "$n")
daemon_rate=$(div "$n" "$seconds")
writes=$(grep -c 'state file written' "$work/daemon.log" || true)
slowest=$(grep 'state file written' "$work/daemon.log" | sed -n 's/.*took_ms=\([0-9]*\) fsync_ms=\([0-9]*\).*/\1 \2/p' |
    awk '{ if ($1 > t) t = $1; if ($1 - $2 > w) w = $1 - $2 } END {print t + 0, w + 0}')
echo "first cycle:              ${first_cycle}s from start to ready (discovery and one describe of each resource)"
echo "steady state:             $n describes in $cycles cycles of ${interval}s: $daemon_rate/s, $(div "$n" "$cycles * $profiles" 3) describes per resource per cycle; overruns $overruns (all time)"
echo "CPU per describe:         $daemon_us us (user + sys, steady state, all of the daemon's work)"
echo "RSS:                      $((idle_rss / 1024)) MB at start, $((ready_rss / 1024)) MB when ready, $((peak_rss / 1024)) MB peak"
echo "/metrics:                 $(echo "$plain" | head -1) bytes in $(echo "$plain" | tail -1)s; gzip $(echo "$gzipped" | head -1) bytes in $(echo "$gzipped" | tail -1)s"
echo "state file:               $(stat -c %s "$work/state.json") bytes; $writes_before writes until ready, $((writes - writes_before)) after; the slowest ${slowest% *} ms, ${slowest#* } ms without fsync"

echo "== baselines against the same simulator"
paced=$(mix 1 "$daemon_rate")
echo "bare SDK, paced:          $paced"
unpaced=$(mix 1)
echo "bare SDK, 32 in flight:   $unpaced"
if python3 -c 'import boto3' 2>/dev/null; then
    boto3_paced=$(python3 bench/boto3_baseline.py "$endpoint" "$clusters" "$per_cluster" 1 16 "$daemon_rate" "$nodegroups" "$addons")
    echo "boto3, paced:             $boto3_paced"
    boto3=$(python3 bench/boto3_baseline.py "$endpoint" "$clusters" "$per_cluster" 1 16 0 "$nodegroups" "$addons")
    echo "boto3, 16 threads:        $boto3"
else
    boto3="" boto3_paced=""
    echo "boto3:                    skipped (python3 -c 'import boto3' fails; pip install boto3)"
fi

echo "== summary: CPU per describe (user + sys of that process alone) and peak RSS"
row() { printf '%-24s %8s us %8s MB %10s\n' "$@"; }
printf '%-24s %11s %11s %10s\n' "" "CPU" "peak RSS" "vs daemon"
row daemon "$daemon_us" "$((peak_rss / 1024))" 1.00
for line in "bare SDK, paced|$paced" "bare SDK, 32 in flight|$unpaced" \
    "boto3, paced|$boto3_paced" "boto3, 16 threads|$boto3"; do
    name=${line%%|*}; out=${line#*|}
    [ -n "$out" ] || continue
    us=$(echo "$out" | field cpu_us_per_describe)
    row "$name" "$us" "$(echo "$out" | field peak_rss_mb)" "$(div "$us" "$daemon_us" 2)"
done
echo "daemon / bare SDK paced:  $(div "$daemon_us" "$(echo "$paced" | field cpu_us_per_describe)" 2) (target <= 1.3)"
[ -n "$boto3" ] && echo "boto3 / daemon:           $(div "$(echo "$boto3_paced" | field cpu_us_per_describe)" "$daemon_us" 1) paced, $(div "$(echo "$boto3" | field cpu_us_per_describe)" "$daemon_us" 1) unpaced (target >= 5)"
exit 0
