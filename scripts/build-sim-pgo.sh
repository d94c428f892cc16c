#!/usr/bin/env bash
# Builds the simulator for long sweeps: the `sim` profile of `cargo sim`,
# compiled again with a profile of its own sweeps (profile-guided
# optimisation) and its machine code then laid out by BOLT, so the code a
# seed runs sits together and its branches fall through. The same source,
# the same report for every seed, about a fifth more seeds per
# CPU-second (docs/simulation.md, "Speed").
#
#   bash scripts/build-sim-pgo.sh [--no-bolt]
#   target-sim-pgo/quorumsim run --faults all --seeds 0..10000
#
# It takes two builds of the simulator (about two minutes each on the
# 2-core machine) and two short training sweeps. The tools must be the LLVM
# that rustc itself is built on (a profile is tied to its LLVM version):
# llvm-profdata, llvm-bolt and merge-fdata from Debian's llvm-N and
# bolt-N, installed here when run as root and missing.
#
# Before it finishes it replays the training seeds with the optimised
# binary and compares its reports with the ones the instrumented binary,
# compiled without a profile, gave: a build that changed any outcome fails
# here.
#
# (cargo-pgo does the same steps, but rebuilds the whole simulator a third
# time before BOLT, since it merges the PGO profile again and every crate
# depends on that file: 1.5 minutes more on every run.)
set -euo pipefail
cd "$(dirname "$0")/.."

bolt=1
for arg in "$@"; do
    case "$arg" in
        --no-bolt) bolt=0 ;;
        -h | --help)
            sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "build-sim-pgo.sh: unknown argument '$arg' (expected --no-bolt or --help)" >&2
            exit 2
            ;;
    esac
done

step() { printf '\n==> [%s] %s\n' "$(date +%T)" "$*"; }

out="$PWD/target-sim-pgo"
mkdir -p "$out"

llvm_major="$(rustc -vV | sed -n 's/^LLVM version: \([0-9][0-9]*\).*/\1/p')"
if [ -z "$llvm_major" ]; then
    echo "build-sim-pgo.sh: 'rustc -vV' names no LLVM version" >&2
    exit 1
fi
llvm_bin="/usr/lib/llvm-$llvm_major/bin"
needed=("$llvm_bin/llvm-profdata")
packages=("llvm-$llvm_major")
if [ "$bolt" = 1 ]; then
    needed+=("$llvm_bin/llvm-bolt" "$llvm_bin/merge-fdata")
    packages+=("bolt-$llvm_major")
fi
missing() {
    local tool
    for tool in "${needed[@]}"; do [ -x "$tool" ] || return 0; done
    return 1
}
if missing; then
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
        step "installing ${packages[*]} (rustc is built on LLVM $llvm_major)"
        apt-get install -y -q "${packages[@]}" ||
            { apt-get update -q && apt-get install -y -q "${packages[@]}"; }
    fi
    if missing; then
        echo "build-sim-pgo.sh: rustc is built on LLVM $llvm_major, and this needs" \
            "${needed[*]}: install ${packages[*]}" \
            "(or pass --no-bolt to skip BOLT and need only llvm-$llvm_major)" >&2
        exit 1
    fi
fi

# The simulator's flags, read from `cargo sim`'s alias so that the two
# builds never drift apart, plus the optimisation's.
sim_flags=$(grep -m1 '^sim = ' .cargo/config.toml | grep -o "build.rustflags=\[[^]]*\]" |
    sed 's/^build.rustflags=\[//; s/\]$//')
if [ -z "$sim_flags" ]; then
    echo "build-sim-pgo.sh: no build.rustflags in .cargo/config.toml's sim alias" >&2
    exit 1
fi
build() {
    local target_dir="$1"
    shift
    local flags="$sim_flags"
    local flag
    for flag in "$@"; do flags+=",'$flag'"; done
    cargo build --profile sim --config "build.rustflags=[$flags]" \
        --target-dir "$target_dir" -p quorumlog-sim --bin quorumsim
}

# What the profiles are taken from, and what the finished binary must
# reproduce: the standard scenario under every fault family, ONE and ALL,
# and swarm-drawn configurations. Seeds apart from the ones the
# documented sweeps time (0..150, 0..200).
train() {
    local binary="$1" reports="$2"
    mkdir -p "$reports"
    "$binary" run --faults all --seeds 1000..1100 --jobs 1 > "$reports/run"
    "$binary" run --faults all --level ONE --seeds 1000..1030 --jobs 1 > "$reports/one"
    "$binary" run --faults all --level ALL --seeds 1000..1030 --jobs 1 > "$reports/all"
    "$binary" swarm --seeds 1000..1100 --jobs 1 > "$reports/swarm"
    # The timing line differs from run to run; everything else must not.
    sed -i '/^seeds /d' "$reports"/*
}

# A digest of a binary, and whether the products made from it are still
# there and were made from this very binary.
stamp() { sha256sum < "$1"; }
fresh() {
    local binary="$1" stamp_file="$2" product
    shift 2
    for product in "$@"; do [ -e "$product" ] || return 1; done
    [ -f "$stamp_file" ] && [ "$(stamp "$binary")" = "$(cat "$stamp_file")" ]
}

step "1/4 instrumented build (target-sim-pgo/instrumented)"
build "$out/instrumented" "-Cprofile-generate=$out/pgo-raw"

instrumented="$out/instrumented/sim/quorumsim"
# Profile counts differ a little from one training run to the next (the
# progress bar's ticks), and every crate is compiled against the profile:
# a profile is kept for as long as the binary it came from, so that an
# unchanged source rebuilds nothing.
if fresh "$instrumented" "$out/pgo.stamp" "$out/pgo.profdata" "$out/reports-instrumented"; then
    step "2/4 training skipped: the profile is from this instrumented binary"
else
    step "2/4 training sweeps on the instrumented binary"
    rm -rf "$out/pgo-raw" "$out/reports-instrumented"
    LLVM_PROFILE_FILE="$out/pgo-raw/quorumsim-%m-%p.profraw" \
        train "$instrumented" "$out/reports-instrumented"
    "$llvm_bin/llvm-profdata" merge -o "$out/pgo.profdata" "$out"/pgo-raw/*.profraw
    stamp "$instrumented" > "$out/pgo.stamp"
fi

step "3/4 optimised build with the profile (target-sim-pgo/optimized)"
if [ "$bolt" = 1 ]; then
    # BOLT moves code, so the link keeps the relocations it needs.
    build "$out/optimized" "-Cprofile-use=$out/pgo.profdata" "-Clink-arg=-Wl,--emit-relocs"
else
    build "$out/optimized" "-Cprofile-use=$out/pgo.profdata"
fi
final="$out/optimized/sim/quorumsim"

if [ "$bolt" = 1 ]; then
    if fresh "$final" "$out/bolt.stamp" "$out/bolt.fdata"; then
        step "4/4 BOLT: laid out with the profile from this same binary"
    else
        step "4/4 BOLT: instrument, train, lay out"
        rm -rf "$out/bolt-raw" "$out/reports-bolt-instrumented"
        mkdir -p "$out/bolt-raw"
        "$llvm_bin/llvm-bolt" "$final" -o "$out/quorumsim-bolt-instrumented" \
            -instrument -instrumentation-file="$out/bolt-raw/quorumsim" \
            -instrumentation-file-append-pid > "$out/bolt-instrument.log"
        train "$out/quorumsim-bolt-instrumented" "$out/reports-bolt-instrumented"
        diff -r "$out/reports-instrumented" "$out/reports-bolt-instrumented"
        "$llvm_bin/merge-fdata" "$out"/bolt-raw/*.fdata > "$out/bolt.fdata" 2> "$out/merge-fdata.log"
        stamp "$final" > "$out/bolt.stamp"
    fi
    "$llvm_bin/llvm-bolt" "$final" -o "$out/quorumsim-bolt" -data="$out/bolt.fdata" \
        -reorder-blocks=ext-tsp -reorder-functions=cdsort -split-functions \
        -split-all-cold -split-eh -jump-tables=move -icf=1 -use-gnu-stack \
        > "$out/bolt-optimize.log"
    final="$out/quorumsim-bolt"
else
    step "4/4 BOLT skipped (--no-bolt)"
fi

step "the same reports from the optimised binary"
rm -rf "$out/reports-optimized"
train "$final" "$out/reports-optimized"
if ! diff -r "$out/reports-instrumented" "$out/reports-optimized"; then
    echo "build-sim-pgo.sh: the optimised binary's reports differ from the instrumented" \
        "binary's, compiled without a profile, on the same seeds (above): not installed" >&2
    exit 1
fi
cp "$final" "$out/quorumsim.new"
mv "$out/quorumsim.new" "$out/quorumsim"

step "built target-sim-pgo/quorumsim; the standard sweep with it:"
"$out/quorumsim" run --faults all --seeds 0..150 --jobs 1 | sed -n '/^seeds /p'
