#!/usr/bin/env bash
# Runs the polls example end to end: starts or reuses PostgreSQL, migrates,
# creates the demo tenants thor and potter if missing, starts the server and
# shows with curl that the two tenants do not see each other's polls.
# The server keeps running until Ctrl-C (DEMO_ONCE=1: stop after the show).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/pg.sh
command -v curl >/dev/null 2>&1 || { sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd=sudo;
  $sudo_cmd apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq curl >/dev/null; }

ADDR="${ADDR:-127.0.0.1:8080}"
mkdir -p bin
go build -o bin/polls ./examples/polls
./bin/polls migrate
for t in thor potter; do
  ./bin/polls tenants list | grep -qx "$t" || ./bin/polls tenants create "$t" --domain "polls.$t.com"
done

./bin/polls serve --addr "$ADDR" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
  curl -s -o /dev/null "http://$ADDR/" && break
  sleep 0.2
done

show() {
  printf '$'
  for a in "$@"; do
    case "$a" in *[\ \"\{\}\!\;\%]*) printf " '%s'" "$a" ;; *) printf ' %s' "$a" ;; esac
  done
  echo
  "$@"
  echo
  echo
}
echo
echo "== thor creates a poll; potter creates another"
show curl -s -H "Host: thor.polls.localhost" -X POST "http://$ADDR/api/polls" \
  -d '{"question":"Mjolnir or Stormbreaker?","choices":["Mjolnir","Stormbreaker"]}'
show curl -s -H "Host: potter.polls.localhost" -X POST "http://$ADDR/api/polls" \
  -d '{"question":"Best house?","choices":["Gryffindor","Ravenclaw","Hufflepuff","Slytherin"]}'
echo "== each tenant sees only its own polls"
show curl -s -H "Host: thor.polls.localhost" "http://$ADDR/api/polls"
show curl -s -H "Host: potter.polls.localhost" "http://$ADDR/api/polls"
echo "== a registered domain works too; an unknown host is 404, a malformed one 400"
show curl -s -H "Host: polls.thor.com" "http://$ADDR/api/polls"
show curl -s -w ' HTTP %{http_code}' -H "Host: nobody.polls.localhost" "http://$ADDR/api/polls"
show curl -s -w ' HTTP %{http_code}' -H "Host: bad_host!" "http://$ADDR/api/polls"
echo "Try it yourself:"
echo "  curl -H 'Host: thor.polls.localhost' http://$ADDR/api/polls"
echo "  curl -H 'Host: thor.polls.localhost' -X POST http://$ADDR/api/polls/1/votes -d '{\"choice_id\": 1}'"
echo "  ./bin/polls report      # a job run once for every tenant"
if [ "${DEMO_ONCE:-}" = 1 ]; then exit 0; fi
echo "Serving on $ADDR; Ctrl-C stops."
wait "$pid"
