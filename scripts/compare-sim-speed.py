#!/usr/bin/env python3
"""Compare the speed of simulator builds, fairly, on a noisy machine.

    python3 scripts/compare-sim-speed.py [--rounds N] [--seeds A..B] [--swarm]
                                         [--at-least FIGURE] BINARY...

Runs the standard sweep (`BINARY run --faults all --seeds A..B --jobs 1`,
or `BINARY swarm --seeds A..B --jobs 1` with --swarm) with each binary in
turn, round after round, and prints each one's seeds per CPU-second (the
sweep's own figure): median, best and worst round, and against the first
binary, in how many rounds it was faster and the median of the rounds'
ratios. Alternating in one sitting is what makes the figures comparable:
this machine's speed moves by 10 to 20 % within minutes, so two sweeps
taken apart compare the machine as much as the builds. With
--at-least FIGURE it also counts, for each binary, the rounds at or
above that figure (a target is met robustly only if nearly every round
meets it, not just the median).

A speed comparison means something only if the builds do the same work:
the first round also compares every binary's report (everything but the
timing line) with the first's, and the script exits 1 if any differs.
Exit 2: bad arguments, or a binary that gave no timing line.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys

TIMING = re.compile(r"^seeds .*?([0-9.]+) seeds per CPU-second", re.MULTILINE)


def seed_range(text):
    match = re.fullmatch(r"(\d+)\.\.(\d+)", text)
    if not match or int(match.group(1)) >= int(match.group(2)):
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a seed range A..B with A < B (e.g. 0..150)"
        )
    return text


def rounds(text):
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of rounds from 1 to 1000")
    return int(text)


def figure(text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive number of seeds per CPU-second")
    return value


def sweep(binary, seeds, swarm):
    """The sweep's report without its timing line, and its seeds per CPU-second."""
    command = [binary, "swarm"] if swarm else [binary, "run", "--faults", "all"]
    command += ["--seeds", seeds, "--jobs", "1"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    found = TIMING.search(done.stdout)
    if found is None:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        print(
            f"compare-sim-speed: {binary} gave no 'seeds per CPU-second' line "
            f"(exit {done.returncode}); its last output:\n{tail}",
            file=sys.stderr,
        )
        sys.exit(2)
    report = "\n".join(line for line in done.stdout.splitlines() if not line.startswith("seeds "))
    return report, float(found.group(1))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("binaries", nargs="+", metavar="BINARY", help="quorumsim builds; the first is the baseline")
    parser.add_argument("--rounds", type=rounds, default=8, help="rounds, each running every binary once [default: 8]")
    parser.add_argument("--seeds", type=seed_range, default="0..150", help="seeds of each sweep [default: 0..150]")
    parser.add_argument("--swarm", action="store_true", help="time `swarm` (seed-drawn scenarios) instead of `run --faults all`")
    parser.add_argument("--at-least", type=figure, metavar="FIGURE", help="also count each binary's rounds at or above FIGURE seeds per CPU-second")
    args = parser.parse_args()
    for binary in args.binaries:
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            parser.error(f"'{binary}' is not an executable file")

    # By position: the same binary may be given twice (a noise check).
    speeds = [[] for _ in args.binaries]
    reports = [None for _ in args.binaries]
    for round_number in range(1, args.rounds + 1):
        for at, binary in enumerate(args.binaries):
            report, speed = sweep(binary, args.seeds, args.swarm)
            if reports[at] is None:
                reports[at] = report
            speeds[at].append(speed)
        print(f"round {round_number}/{args.rounds}: "
              + ", ".join(f"{values[-1]:.1f}" for values in speeds), file=sys.stderr)

    base = args.binaries[0]
    title = "seeds per CPU-second"
    width = max(len(title), *(len(b) for b in args.binaries))
    print(f"{title:<{width}} {'median':>7} {'best':>7} {'worst':>7}  against the first")
    for at, binary in enumerate(args.binaries):
        values = speeds[at]
        line = (f"{binary:<{width}} {statistics.median(values):7.1f} "
                f"{max(values):7.1f} {min(values):7.1f}")
        if at > 0:
            ratios = [mine / theirs for mine, theirs in zip(values, speeds[0])]
            faster = sum(1 for ratio in ratios if ratio > 1)
            line += (f"  faster in {faster} of {len(ratios)} rounds, "
                     f"median ratio {statistics.median(ratios):.3f}")
        print(line)
    if args.at_least is not None:
        print(f"rounds at or above {args.at_least:g} seeds per CPU-second:")
        for at, binary in enumerate(args.binaries):
            met = sum(1 for value in speeds[at] if value >= args.at_least)
            print(f"  {binary:<{width}} {met} of {len(speeds[at])}")

    differing = [b for at, b in enumerate(args.binaries) if reports[at] != reports[0]]
    if differing:
        print(f"reports differ from {base}'s: {', '.join(differing)}: "
              "the builds do different work, so their speeds do not compare")
        sys.exit(1)
    print(f"reports: the same from every binary ({args.seeds}"
          f"{', swarm' if args.swarm else ', every fault family'})")


if __name__ == "__main__":
    main()
