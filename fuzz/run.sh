#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: `fuzz/run.sh [SECONDS] [TARGET...]` (default 60 s
# each, every target). Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# The corpus grows under fuzz/corpus/<target> (kept between runs, not committed), seeded from
# fuzz/seeds/<target>; a crash leaves its input under fuzz/artifacts/<target> and fails the run.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config eks_describe state_file admin_request)

for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    cp -n seeds/"$target"/* "corpus/$target/" 2>/dev/null || true
    echo "==> fuzz $target for ${seconds}s"
    log="artifacts/$target/last-run.log"
    status=0
    cargo +nightly fuzz run --sanitizer none "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="artifacts/$target/" >"$log" 2>&1 || status=$?
    grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 40 "$log" >&2
        echo "fuzz $target: failed (exit $status); the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
