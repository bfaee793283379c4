#!/usr/bin/env bash
# Runs the benchmarks recorded in BENCHMARKS.md. Long: about an hour.
# SHOAL_BENCH_WORKERS, SHOAL_BENCH_REPLICAS and SHOAL_BENCH_HOLD scale the
# cluster scenario down for a quick look (see kernel/clustertest).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "# machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr), $(go version | cut -d' ' -f3)"
go test -run '^$' -bench . -benchmem -count 1 ./kernel/state/ ./kernel/presence/
go test -run '^$' -bench . -benchtime 1x -count 5 -timeout 30m ./kernel/raftstore/
go test -run '^$' -bench Place -count 5 -timeout 30m ./plugins/scheduler-spread/
SHOAL_BENCH_FAILOVER=20 go test -run '^$' -bench Failover -benchtime 1x -timeout 30m ./kernel/clustertest/
# Linearizability under faults, longer than make test's run: 4 minutes,
# about 22 leader kills, 11 pauses and 11 partitions; and what a
# linearizable read costs.
SHOAL_LIN_DURATION=4m go test -count 1 -run '^TestLinearizable$' -v -timeout 20m ./kernel/clustertest/ | grep -E '^(---|ok|FAIL)|linearizable:'
go test -run '^$' -bench ReadLatency -benchtime 1x -count 3 -timeout 10m ./kernel/clustertest/ | grep -E 'Benchmark|read_bench'
for i in 1 2 3 4 5; do go test -run "^$" -bench StatusFlood -benchtime 1x -timeout 10m ./kernel/clustertest/ | grep Benchmark; done
go test -run '^$' -bench Scale -benchtime 1x -timeout 40m ./kernel/clustertest/
go test -run '^$' -bench TaskLogs -benchtime 10x -count 3 -timeout 10m ./kernel/clustertest/
go test -run '^$' -bench Allocate -count 5 -timeout 10m ./plugins/ipam/ ./kernel/allocator/
go test -run '^$' -bench Attach100 -benchtime 1x -count 5 -timeout 10m ./kernel/tasknet/
go test -run '^$' -bench 'EndpointPropagation50|BackendDown50' -count 5 -timeout 20m ./kernel/gossip/
go test -run '^$' -bench . -benchtime 1x -count 5 -timeout 30m ./kernel/e2etest/
go test -run '^$' -bench CreateToRunning -benchtime 50x -count 2 ./plugins/executor-containerd/ctrexec/
# The layers of a node's many-replica start (BENCHMARKS.md, "Where a
# node's time goes"): the container runtime alone, then this executor.
for n in 100 300; do
	SHOAL_BENCH_FLOOR_N=$n go test -run '^$' -bench 'RuntimeFloor|ExecutorMany' -benchtime 1x -count 3 -timeout 30m ./plugins/executor-containerd/ctrexec/
done
# Service discovery building blocks (issue 12): DNS answers, a 1,000-backend VIP.
go test -run '^$' -bench . -benchtime 2s -count 1 ./kernel/dns/
go test -run '^$' -bench Sync1000 -benchtime 20x -count 3 ./kernel/lb/
# Service discovery in tasks (issue 12): DNS latency in a task, and from a
# backend's death to its removal from every node's VIP backends (3 workers).
SHOAL_BENCH_DISCOVERY=20 go test -count 1 -run '^TestDiscoveryFigures$' -v -timeout 20m ./kernel/netnstest/ | grep -E '^(---|ok|FAIL)|lookupbench|death to removal'
# The web dashboard (issue 14): page weight and time to first paint with
# 1,000 tasks, in headless Chromium.
SHOAL_DASHBOARD_PAINT=9 go test -count 1 -run '^(TestPageWeight1000|TestFirstPaint1000)$' -v -timeout 10m ./kernel/dashboard/ | grep -E '^(---|ok|FAIL)|page weight: assets|first paint'
