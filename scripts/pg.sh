#!/usr/bin/env bash
# Makes sure a PostgreSQL server is reachable for the tests and the example.
#
# With DATABASE_URL set, that server is used as it is (it is waited for, never
# started). Without it, the local server on 127.0.0.1:5432 is used: started
# when it is stopped, installed from Debian's packages when it is missing
# (then configured for password-less loopback access, for development only).
set -euo pipefail

DEFAULT_URL="postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
URL="${DATABASE_URL:-$DEFAULT_URL}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

redacted() { sed -E 's#(://[^:/@]+):[^@]*@#\1:xxxxx@#; s#password=[^& ]*#password=xxxxx#' <<<"$1"; }

apt_install() {
  echo "pg.sh: installing $* from Debian's packages" >&2
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

can_query() { psql "$URL" -XAtqc 'SELECT 1' >/dev/null 2>&1; }

wait_ready() {
  for _ in $(seq 1 60); do
    if can_query; then return 0; fi
    sleep 1
  done
  return 1
}

command -v psql >/dev/null 2>&1 || apt_install postgresql-client

if can_query; then exit 0; fi

if [ -n "${DATABASE_URL:-}" ]; then
  if wait_ready; then exit 0; fi
  echo "pg.sh: cannot query the server in DATABASE_URL ($(redacted "$URL"))" >&2
  exit 1
fi

installed_now=0
if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
  apt_install postgresql
  installed_now=1
fi
version=$(ls /etc/postgresql | sort -V | tail -n 1)
if [ "$installed_now" = 1 ]; then
  # A fresh Debian install asks for a password on 127.0.0.1; this local
  # development server trusts loopback instead, as the default URL expects.
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  $SUDO sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
fi
echo "pg.sh: starting PostgreSQL $version (cluster main)" >&2
$SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null ||
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main reload 2>/dev/null || true
if wait_ready; then exit 0; fi
echo "pg.sh: PostgreSQL did not become ready at $(redacted "$URL"); see /var/log/postgresql/" >&2
exit 1
