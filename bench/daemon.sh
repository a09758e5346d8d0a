#!/usr/bin/env bash
# Measures the daemon (release build) against the simulator run as its own process: idle RSS
# at start, then CPU per describe and peak RSS over a few cycles; then a bare aws-sdk-eks
# describe loop (examples/bare_sdk.rs, same SDK set-up, nothing else) against the same
# simulator, for the ratio.
#
#   bench/daemon.sh [CLUSTERS] [PROFILES_PER_CLUSTER] [SECONDS]
#
# Defaults: 1000 clusters x 10 profiles (10,000), 20 s interval, 80 s of polling.
set -euo pipefail
cd "$(dirname "$0")/.."

clusters=${1:-1000}
per_cluster=${2:-10}
seconds=${3:-80}
interval=20
profiles=$((clusters * per_cluster))
rate=$((profiles / interval * 2 + 100))

cargo build --release --locked --quiet --bins --examples
bin=target/release/fargate-health-monitor
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
aws=$(port); control=$(port); admin=$(port)
"$bin" simulate --listen "127.0.0.1:$aws" --control-listen "127.0.0.1:$control" \
    --clusters "$clusters" --profiles-per-cluster "$per_cluster" --unhealthy-share 0.1 \
    >"$work/simulate.out" 2>&1 &
until curl -sf "http://127.0.0.1:$control/v1/stats" >/dev/null; do sleep 0.2; done

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
endpoint_url = "http://127.0.0.1:$aws"
sts_endpoint_url = "http://127.0.0.1:$aws"
TOML

export AWS_ACCESS_KEY_ID=AKIASIMULATEDEXAMPLE AWS_SECRET_ACCESS_KEY=simulated-secret-access-key
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null
RUST_LOG=info,fargate_health_monitor::store=debug \
    "$bin" run --config "$work/config.toml" 2>"$work/daemon.log" &
pid=$!
until curl -sf "http://127.0.0.1:$admin/healthz" >/dev/null; do sleep 0.1; done
idle_rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")

ticks=$(getconf CLK_TCK)
cpu() { awk -v t="$ticks" '{print ($14 + $15) / t}' "/proc/$pid/stat"; }
describes() {
    curl -s "http://127.0.0.1:$admin/metrics" |
        awk '/^fargate_health_monitor_api_requests_total\{.*DescribeFargateProfile/ {n += $2} END {print n + 0}'
}
until curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null; do sleep 0.5; done
ready_cpu=$(cpu); ready_describes=$(describes)
sleep "$seconds"
end_cpu=$(cpu); end_describes=$(describes)
peak_rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
start=$(date +%s.%N)
size=$(curl -s "http://127.0.0.1:$admin/metrics" | wc -c)
render=$(echo "$(date +%s.%N) - $start" | bc)
gzip_size=$(curl -s -H 'Accept-Encoding: gzip' "http://127.0.0.1:$admin/metrics" | wc -c)
overruns=$(curl -s "http://127.0.0.1:$admin/metrics" | awk '/^fargate_health_monitor_poll_cycle_overruns_total/ {print $2}')
kill -TERM "$pid"; wait "$pid"

n=$((end_describes - ready_describes))
echo "profiles:                 $profiles (interval ${interval}s, rate ${rate}/s)"
echo "idle RSS at start:        $((idle_rss / 1024)) MB"
echo "describes measured:       $n in ${seconds}s ($(echo "scale=0; $n / $seconds" | bc)/s; overruns $overruns)"
echo "CPU per describe:         $(echo "scale=0; ($end_cpu - $ready_cpu) * 1000000 / $n" | bc) us (user + sys, steady state)"
echo "peak RSS:                 $((peak_rss / 1024)) MB"
echo "/metrics:                 $size bytes plain, $gzip_size gzip, scraped in ${render}s"
writes=$(grep -c 'state file written' "$work/daemon.log" || true)
slowest=$(grep 'state file written' "$work/daemon.log" | sed -n 's/.*took_ms=\([0-9]*\).*/\1/p' | sort -n | tail -1)
echo "state file:               $(stat -c %s "$work/state.json") bytes; $writes writes, the slowest ${slowest} ms (fsync included)"

bare=$(target/release/examples/bare_sdk "http://127.0.0.1:$aws" "$clusters" "$per_cluster" 3)
bare_us=$(echo "$bare" | sed -n 's/.*cpu_us_per_describe=\([0-9]*\).*/\1/p')
daemon_us=$(echo "scale=0; ($end_cpu - $ready_cpu) * 1000000 / $n" | bc)
echo "bare aws-sdk-eks loop:    $bare"
echo "daemon / bare SDK:        $(echo "scale=2; $daemon_us / $bare_us" | bc) (CPU per describe)"
