#!/usr/bin/env bash
# Runs the benchmarks recorded in BENCHMARKS.md. Long: minutes, not seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "# machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr), $(go version | cut -d' ' -f3)"
go test -run '^$' -bench . -benchmem -count 1 ./kernel/state/
go test -run '^$' -bench . -benchtime 1x -count 5 -timeout 30m ./kernel/raftstore/
SHOAL_BENCH_FAILOVER=20 go test -run '^$' -bench Failover -benchtime 1x -timeout 30m ./kernel/clustertest/
