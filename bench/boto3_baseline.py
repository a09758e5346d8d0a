#!/usr/bin/env python3
"""The benchmark's hand-written baseline: a plain boto3 thread-pool poller, as users write it.

It describes every resource once per round with a pool of threads, the way a cron script or a
small exporter does, against a running `fargate-health-monitor simulate`, and prints the CPU
time per describe of this process (user + system) and its peak RSS, in the same key=value form
as examples/bare_sdk.rs.

    bench/boto3_baseline.py http://127.0.0.1:9878 CLUSTERS PROFILES [ROUNDS] [THREADS] [RATE] [NODEGROUPS] [ADDONS]

Per cluster and round: the cluster (when there are node groups or add-ons), PROFILES Fargate
profiles, NODEGROUPS node groups and ADDONS add-ons, named as `simulate` names them.

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
    nodegroups = int(sys.argv[7]) if len(sys.argv) > 7 else 0
    addons = int(sys.argv[8]) if len(sys.argv) > 8 else 0

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
    first_addons = ["coredns", "kube-proxy", "vpc-cni", "aws-ebs-csi-driver", "eks-pod-identity-agent"]
    addon_names = [first_addons[n] if n < len(first_addons) else f"addon-{n:02}" for n in range(addons)]
    names = []
    for c in range(clusters):
        cluster = f"cluster-{c:04}"
        if nodegroups + addons > 0:
            names.append(("cluster", cluster, cluster))
        names += [("profile", cluster, f"profile-{p:02}") for p in range(per_cluster)]
        names += [("nodegroup", cluster, f"ng-{n:02}") for n in range(nodegroups)]
        names += [("addon", cluster, name) for name in addon_names]

    calls = {
        "cluster": lambda cluster, name: eks.describe_cluster(name=cluster),
        "profile": lambda cluster, name: eks.describe_fargate_profile(
            clusterName=cluster, fargateProfileName=name
        ),
        "nodegroup": lambda cluster, name: eks.describe_nodegroup(
            clusterName=cluster, nodegroupName=name
        ),
        "addon": lambda cluster, name: eks.describe_addon(clusterName=cluster, addonName=name),
    }

    def describe(numbered):
        index, (kind, cluster, name) = numbered
        if rate > 0:
            time.sleep(max(0.0, start + index / rate - time.monotonic()))
        try:
            calls[kind](cluster, name)
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
