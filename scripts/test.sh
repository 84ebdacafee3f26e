#!/usr/bin/env bash
# The whole test suite: starts or reuses PostgreSQL, checks formatting, vet
# and staticcheck, runs every test with the race detector, then runs every
# benchmark once at its small size so none of them rots.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/pg.sh

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt would change: $unformatted"; exit 1; fi
echo "== go vet"
go vet ./...
echo "== staticcheck"
if command -v staticcheck >/dev/null 2>&1; then
  staticcheck ./...
else
  go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
fi
echo "== benchmarks, one iteration each at their small size (they must not rot)"
go test -run '^$' -bench . -benchtime 1x -count=1 -timeout 20m ./...
echo "== go test -race"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
go test -race -count=1 -timeout 20m -v ./... 2>&1 | tee "$log" || status=$?
passed=$(grep -cE '^\s*--- PASS' "$log" || true)
failed=$(grep -cE '^\s*--- FAIL' "$log" || true)
skipped=$(grep -cE '^\s*--- SKIP' "$log" || true)
echo
grep -E '^\s*--- FAIL' "$log" || true
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit "$status"
