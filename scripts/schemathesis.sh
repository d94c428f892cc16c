#!/usr/bin/env bash
# schemathesis (from PyPI) against a live gateway: property-based requests
# generated from the OpenAPI document the gateway serves
# (docs/openapi.json). Two passes: every input, valid or not, must get an
# answer that is not a server error (5xx); and valid inputs must get
# answers whose status, content type and body the document declares.
# The cluster is `quorumd cluster --store memory` on loopback.
#   EXAMPLES=500 bash scripts/schemathesis.sh    # a longer run
set -euo pipefail
cd "$(dirname "$0")/.."

examples="${EXAMPLES:-100}"
venv="target/schemathesis-venv"
version="4.32.5"
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$version"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "schemathesis==$version"
fi

# Built with every test target selected, as the suite builds it, so that
# after `cargo test --workspace` nothing is compiled again.
cargo build --quiet --workspace --bins --tests
dir="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base_port=$(( 21000 + RANDOM % 8000 ))
target/debug/quorumd cluster --store memory --gateway "127.0.0.1:$port" \
    --base-port "$base_port" --data-dir "$dir" > "$dir/cluster.log" 2>&1 &
cluster=$!
trap 'kill "$cluster" 2>/dev/null || true; wait "$cluster" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/api/logs/health" 2>/dev/null | grep -q '"status":"UP"' && break
    sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/api/logs/health" >/dev/null || {
    echo "schemathesis: the cluster did not come up"; cat "$dir/cluster.log"; exit 1; }

schema="http://127.0.0.1:$port/api/openapi.json"
common=(--max-examples "$examples" --workers 2 --seed 1 --warnings off)
echo "schemathesis: any input, no server error"
"$venv/bin/schemathesis" run "$schema" --mode all --checks not_a_server_error "${common[@]}"
echo "schemathesis: valid inputs, answers as documented"
"$venv/bin/schemathesis" run "$schema" --mode positive \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    "${common[@]}"
