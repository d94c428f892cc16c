#!/usr/bin/env bash
# Prepare the local PostgreSQL 15 the quorumd tests and benchmarks use:
# start the cluster if it is stopped, create the role and one database per
# node. Idempotent: safe to run any number of times.
#
#   role      quorumlog / quorumlog (override: QUORUMLOG_PG_USER, QUORUMLOG_PG_PASSWORD)
#   databases quorumlog_1 … quorumlog_5   (override the count: QUORUMLOG_PG_NODES)
#   URL       postgres://quorumlog:quorumlog@127.0.0.1:5432/quorumlog_{id}
#
# Without PostgreSQL: exits 1 when CI=true, otherwise prints a skip notice
# (the PostgreSQL tests then skip themselves) and exits 0.
set -euo pipefail

VERSION=15
CLUSTER=main
ROLE="${QUORUMLOG_PG_USER:-quorumlog}"
PASSWORD="${QUORUMLOG_PG_PASSWORD:-quorumlog}"
NODES="${QUORUMLOG_PG_NODES:-5}"

absent() {
    if [ "${CI:-}" = "true" ]; then
        echo "setup-postgres: ERROR: $1; CI needs PostgreSQL $VERSION (apt-get install postgresql-$VERSION)" >&2
        exit 1
    fi
    echo "setup-postgres: SKIP: $1; the PostgreSQL tests will be skipped (install postgresql-$VERSION to run them)"
    exit 0
}

command -v pg_ctlcluster >/dev/null 2>&1 || absent "pg_ctlcluster not found (postgresql-common is not installed)"
[ -x "/usr/lib/postgresql/$VERSION/bin/postgres" ] || absent "PostgreSQL $VERSION is not installed"
command -v psql >/dev/null 2>&1 || absent "psql not found"

if ! pg_lsclusters -h 2>/dev/null | awk -v v="$VERSION" -v c="$CLUSTER" '$1==v && $2==c {found=1} END {exit !found}'; then
    echo "setup-postgres: creating cluster $VERSION/$CLUSTER"
    pg_createcluster "$VERSION" "$CLUSTER"
fi

status=$(pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" '$1==v && $2==c {print $4}')
if [ "$status" != "online" ]; then
    echo "setup-postgres: starting cluster $VERSION/$CLUSTER"
    pg_ctlcluster "$VERSION" "$CLUSTER" start
fi

port=$(pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" '$1==v && $2==c {print $3}')
for _ in $(seq 1 60); do
    if pg_isready -q -h 127.0.0.1 -p "$port"; then break; fi
    sleep 0.5
done
pg_isready -q -h 127.0.0.1 -p "$port" || { echo "setup-postgres: ERROR: PostgreSQL did not come up on port $port" >&2; exit 1; }

psql_admin() {
    # Run as the postgres superuser over the local socket.
    su postgres -c "psql -X -q -v ON_ERROR_STOP=1 -p $port -tA $*"
}

# Identifiers and the password are passed as psql variables, quoted by psql.
if [ "$(psql_admin "-c \"SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'\"")" = "1" ]; then
    echo "ALTER ROLE :\"role\" WITH LOGIN CREATEDB PASSWORD :'password';" |
        su postgres -c "psql -X -q -v ON_ERROR_STOP=1 -p $port -v role='$ROLE' -v password='$PASSWORD'"
else
    echo "CREATE ROLE :\"role\" WITH LOGIN CREATEDB PASSWORD :'password';" |
        su postgres -c "psql -X -q -v ON_ERROR_STOP=1 -p $port -v role='$ROLE' -v password='$PASSWORD'"
    echo "setup-postgres: created role $ROLE"
fi

for id in $(seq 1 "$NODES"); do
    db="quorumlog_$id"
    if [ "$(psql_admin "-c \"SELECT 1 FROM pg_database WHERE datname = '$db'\"")" != "1" ]; then
        su postgres -c "createdb -p $port -O '$ROLE' '$db'"
        echo "setup-postgres: created database $db"
    fi
done

# Prove the role can log in over TCP the way quorumd connects.
PGPASSWORD="$PASSWORD" psql -X -q -h 127.0.0.1 -p "$port" -U "$ROLE" -d quorumlog_1 -tAc "SELECT 1" >/dev/null ||
    { echo "setup-postgres: ERROR: cannot log in as $ROLE on 127.0.0.1:$port" >&2; exit 1; }

echo "setup-postgres: ready: postgres://$ROLE:***@127.0.0.1:$port/quorumlog_{1..$NODES}"
