#!/usr/bin/env bash
# Runs the benchmark suite against PostgreSQL and prints a markdown table.
#   ./scripts/bench.sh                      # published sizes: 1, 100, 1000 tenants
#   TENANTPLUGIN_BENCH_TENANTS=1,10000 ./scripts/bench.sh   # large, slow
#   BENCH='RoundRobin' ./scripts/bench.sh   # a subset
#   BENCH=Fleet TENANTPLUGIN_BENCH_TENANTS=1,1000 ./scripts/bench.sh
#       # the README's fleet table: design card's path, Open, reference, shared
#       # table, force_generic_plan, serial and 8 connections, plus the shift
#       # (BenchmarkFleetShift: 2 x N tenants); 10,000: TENANTPLUGIN_BENCH_TENANTS=10000
#   BENCH=RawSQL BENCHTIME=3000x ./scripts/bench.sh
#       # the README's raw SQL table: routed against hand-qualified, outside and
#       # inside a transaction, postgres.Open and Open, and the streamed read
#       # of TENANTPLUGIN_BENCH_ROWS rows (200,000 here, 20,000 in test.sh)
# Driver settings to compare: TENANTPLUGIN_BENCH_DRIVER=pgx-default (gorm's
# postgres.Open instead of tenantplugin.Open), TENANTPLUGIN_BENCH_DSN_PARAMS.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/pg.sh
export TENANTPLUGIN_BENCH_TENANTS="${TENANTPLUGIN_BENCH_TENANTS:-1,100,1000}"
export TENANTPLUGIN_BENCH_ROWS="${TENANTPLUGIN_BENCH_ROWS:-200000}"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
go test -run '^$' -bench "${BENCH:-.}" -benchtime "${BENCHTIME:-1x}" -count "${COUNT:-1}" -timeout 120m \
  ./integration_test/ | tee "$out" >&2
pgver=$(psql "${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}" -XAtc 'SHOW server_version' 2>/dev/null || echo '?')
echo
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); PostgreSQL $pgver on loopback; $(go version | cut -d' ' -f3)"
echo
echo "| benchmark | µs/op | allocs/op | other |"
echo "|---|---:|---:|---|"
awk '/^Benchmark/ {
  name=$1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
  us="-"; allocs="-"; other=""
  for (i=3; i<=NF; i++) {
    if ($(i+1) == "ns/op") us=sprintf("%.0f", $i/1000)
    else if ($(i+1) == "allocs/op") allocs=$i
    else if ($i ~ /^[0-9.]+$/ && $(i+1) != "B/op" && $(i+1) != "ns/op") other=other $i " " $(i+1) " "
  }
  printf "| %s | %s | %s | %s|\n", name, us, allocs, other
}' "$out"
