#!/usr/bin/env python3
"""The benchmark's hand-written baseline: a plain boto3 thread-pool poller, as users write it.

It describes every profile once per round with a pool of threads, the way a cron script or a
small exporter does, against a running `fargate-health-monitor simulate`, and prints the CPU
time per describe of this process (user + system) and its peak RSS, in the same key=value form
as examples/bare_sdk.rs.

    bench/boto3_baseline.py http://127.0.0.1:9878 CLUSTERS PER_CLUSTER [ROUNDS] [THREADS] [RATE]

With RATE (describes per second) each describe waits for its own slot, 1/RATE apart, as the
daemon paces its calls; without it the pool goes as fast as it can, as such scripts do.
"""

import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import botocore.config


def main():
    endpoint = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:9878"
    clusters = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    per_cluster = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else 16
    rate = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0

    eks = boto3.client(
        "eks",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="AKIASIMULATEDEXAMPLE",
        aws_secret_access_key="simulated-secret-access-key",
        config=botocore.config.Config(
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=10,
            max_pool_connections=threads,
        ),
    )
    names = [
        (f"cluster-{c:04}", f"profile-{p:02}")
        for c in range(clusters)
        for p in range(per_cluster)
    ]

    def describe(numbered):
        index, (cluster, profile) = numbered
        if rate > 0:
            time.sleep(max(0.0, start + index / rate - time.monotonic()))
        try:
            eks.describe_fargate_profile(clusterName=cluster, fargateProfileName=profile)
            return 0
        except Exception:  # counted, as the daemon counts its failures
            return 1

    before, wall = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    start = wall
    failures = 0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        failures += sum(pool.map(describe, enumerate(names * rounds)))
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    total = len(names) * rounds
    print(
        f"describes={total} failures={failures} wall_s={time.monotonic() - wall:.2f} "
        f"cpu_s={cpu:.2f} cpu_us_per_describe={cpu * 1e6 / total:.0f} "
        f"peak_rss_mb={after.ru_maxrss // 1024}"
    )


if __name__ == "__main__":
    main()
