#!/usr/bin/env bash
# Print how the project's copy of madsim (vendor/madsim) differs from the
# published crate it was taken from (downloaded from crates.io).
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' vendor/madsim/Cargo.toml | head -1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
curl -sSfL "https://static.crates.io/crates/madsim/madsim-$version.crate" -o "$work/madsim.crate"
tar xzf "$work/madsim.crate" -C "$work"
diff -ru -x benches -x examples -x Cargo.lock -x Cargo.toml.orig -x .cargo-ok -x QUORUMLOG.md \
    "$work/madsim-$version" vendor/madsim || true
