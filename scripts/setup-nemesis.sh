#!/usr/bin/env bash
# What `quorumd nemesis` (and its test in tests/tests/nemesis.rs) needs:
# root, `ip` and `tc` (iproute2) and `nft` (nftables). Installs the
# missing packages from Debian when run as root; otherwise says what is
# missing (the test then skips, or fails under CI=true).
set -euo pipefail

missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v tc >/dev/null 2>&1 || missing+=(iproute2)
command -v nft >/dev/null 2>&1 || missing+=(nftables)

if [ "$(id -u)" != 0 ]; then
    echo "setup-nemesis: not root: the nemesis test needs root for network namespaces${missing:+ (and ${missing[*]})}"
    exit 0
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup-nemesis: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Leftovers of a run that did not finish would collide with the next one.
for ns in $(ip netns list 2>/dev/null | awk '/^qlnem-/ {print $1}'); do
    ip netns del "$ns" || true
done
ip link del qlnem0 2>/dev/null || true
echo "setup-nemesis: ready: $(nft --version), $(ip -V)"
