#!/usr/bin/env bash
# How many durable row writes per second this machine's PostgreSQL can take
# in quorumd's shape — five databases, one committer each, every commit one
# `UPDATE … FROM UNNEST` statement of a batch of rows — with nothing else
# running. It bounds what `quorumd bench` can reach on the same machine:
# every QUORUM write costs five row writes (one per replica).
#
#   scripts/pg-capacity.sh [SECONDS_PER_BATCH_SIZE]     (default 6)
#
# Uses scratch databases quorumlog_capacity_1 … _5 (created if missing,
# owned by the quorumlog role of scripts/setup-postgres.sh).
set -euo pipefail

SECS="${1:-6}"
case "$SECS" in
    '' | *[!0-9]* | 0) echo "pg-capacity: SECONDS must be a positive whole number, got '$SECS'" >&2; exit 2 ;;
esac
ROLE="${QUORUMLOG_PG_USER:-quorumlog}"
export PGPASSWORD="${QUORUMLOG_PG_PASSWORD:-quorumlog}"
HERE="$(cd "$(dirname "$0")" && pwd)"
MIGRATIONS="$HERE/../node-bin/migrations/postgres"
KEYS=4096
DBS=5

command -v pgbench >/dev/null 2>&1 || { echo "pg-capacity: pgbench not found (it ships with postgresql-client)" >&2; exit 1; }
# CI=true: without PostgreSQL this is an error here, not a skip.
CI=true bash "$HERE/setup-postgres.sh" >/dev/null || { echo "pg-capacity: PostgreSQL is not available" >&2; exit 1; }

psql_as() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U "$ROLE" "$@"; }

for id in $(seq 1 $DBS); do
    db="quorumlog_capacity_$id"
    if [ "$(psql_as -d quorumlog_1 -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" != "1" ]; then
        psql_as -d quorumlog_1 -c "CREATE DATABASE $db"
    fi
    for migration in "$MIGRATIONS"/*.sql; do psql_as -d "$db" -f "$migration" >/dev/null; done
    # Rows the size of a bench row: a 100-byte value plus its version vector.
    psql_as -d "$db" -c "INSERT INTO siblings (key, data) SELECT 'k' || g, decode(repeat('ab', 160), 'hex') FROM generate_series(0, $KEYS - 1) g ON CONFLICT (key) DO NOTHING"
    psql_as -d "$db" -c "VACUUM ANALYZE siblings"
done

script_for() {
    # quorumd's write statement (node-bin/src/store/postgres.rs) for a
    # batch of $1 distinct-ish random keys; the version test is kept as a
    # filter of the same shape (>= instead of =, so every row is written).
    local n=$1 sets="" keys="" data="" versions=""
    for i in $(seq 1 "$n"); do
        sets+="\\set k$i random(0, $((KEYS - 1)))"$'\n'
        keys+="${keys:+,}'k' || :k$i"
        data+="${data:+,}decode(repeat('cd', 160), 'hex')"
        versions+="${versions:+,}0"
    done
    printf '%s' "$sets"
    printf '%s\n' "WITH v AS (SELECT * FROM UNNEST(ARRAY[$keys]::text[], ARRAY[$data]::bytea[], ARRAY[$versions]::bigint[]) AS v(key, data, version)), up AS (UPDATE siblings AS s SET data = v.data, version = s.version + 1 FROM v WHERE v.version >= 0 AND s.key = v.key AND s.version >= v.version RETURNING s.key), ins AS (INSERT INTO siblings (key, data, version) SELECT key, data, 0 FROM v WHERE v.version < 0 ON CONFLICT (key) DO NOTHING RETURNING key) SELECT key FROM up UNION ALL SELECT key FROM ins;"
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
printf '%-6s %12s %12s %20s\n' "batch" "commits/s" "rows/s" "QUORUM writes/s max"
for batch in 1 3 8 16; do
    script_for "$batch" >"$work/batch.sql"
    for id in $(seq 1 $DBS); do
        pgbench -h 127.0.0.1 -U "$ROLE" -n -M prepared -c 1 -j 1 -T "$SECS" \
            -f "$work/batch.sql" "quorumlog_capacity_$id" >"$work/out.$id" 2>&1 &
    done
    wait
    total=0
    for id in $(seq 1 $DBS); do
        tps=$(awk -F'[ =]+' '/^tps/ {print $2}' "$work/out.$id")
        [ -n "$tps" ] || { echo "pg-capacity: pgbench on database $id failed:" >&2; cat "$work/out.$id" >&2; exit 1; }
        total=$(awk -v a="$total" -v b="$tps" 'BEGIN {print a + b}')
    done
    awk -v b="$batch" -v t="$total" -v d=$DBS 'BEGIN {printf "%-6d %12.0f %12.0f %20.0f\n", b, t, t * b, t * b / d}'
done
