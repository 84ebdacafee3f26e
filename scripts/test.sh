#!/usr/bin/env bash
# The whole test suite: starts or reuses PostgreSQL, checks formatting, vet
# and staticcheck, runs every test with the race detector, then runs every
# benchmark once at its small size so none of them rots.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/pg.sh
# PgBouncer (transaction pooling) is started by its own test; install it.
if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then
  echo "installing pgbouncer from Debian's packages" >&2
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd=sudo
  $sudo_cmd apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq pgbouncer >/dev/null
fi
export TENANTPLUGIN_REQUIRE_PGBOUNCER=1

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt would change: $unformatted"; exit 1; fi
# examples/frameworks is a module of its own (chi, gin, echo adapters), so
# that the library depends on no framework: ./... at the root does not reach
# it, and each step below runs there too.
frameworks=examples/frameworks
echo "== go vet"
go vet ./...
(cd "$frameworks" && go vet ./...)
echo "== staticcheck"
if command -v staticcheck >/dev/null 2>&1; then
  staticcheck ./...
  (cd "$frameworks" && staticcheck ./...)
else
  go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
  (cd "$frameworks" && go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...)
fi
echo "== benchmarks, one iteration each at their small size (they must not rot)"
go test -run '^$' -bench . -benchtime 1x -count=1 -timeout 20m ./...
echo "== go test -race"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
go test -race -count=1 -timeout 20m -v ./... 2>&1 | tee "$log" || status=$?
(cd "$frameworks" && go test -race -count=1 -timeout 10m -v ./...) 2>&1 | tee -a "$log" || status=$?
passed=$(grep -cE '^\s*--- PASS' "$log" || true)
failed=$(grep -cE '^\s*--- FAIL' "$log" || true)
skipped=$(grep -cE '^\s*--- SKIP' "$log" || true)
echo
grep -E '^\s*--- FAIL' "$log" || true
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit "$status"
