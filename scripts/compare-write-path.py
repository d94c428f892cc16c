#!/usr/bin/env python3
"""Durable writes of quorumlog side by side with its peers, on one machine.

Starts on loopback, in a scratch directory it removes at the end:

- quorumlog: 5 `quorumd node` processes (SQLite files, or one PostgreSQL
  database each with --pg) and a gateway, internal RPC sealed with a
  cluster secret, writes at QUORUM (3 of 5 committed before the ack);
- etcd: 5 members (Raft; a put is fsynced by 3 of 5 before it answers);
  each system runs as it measured best with five members on one machine:
  quorumlog nodes with one runtime thread each (--quorumlog-threads),
  etcd with Go's default GOMAXPROCS (--etcd-gomaxprocs);
- PostgreSQL 15: a primary and 4 streaming standbys with
  synchronous_standby_names = 'ANY 2 (s1, s2, s3, s4)' (a commit is
  flushed by the primary and 2 standbys: 3 of 5), and one server without
  replication as the yardstick (1 of 1).

Every system is driven by the same generator (`quorumd loadgen`): the same
clients, keys, value size and duration, one durable write at a time per
client. Rounds are interleaved (the order rotates each round) so drift on
a shared machine shows as ranges. CPU per write is the user + system time
of every process of the system (all its processes and their reaped
children, from /proc) over the round, divided by the writes; the load
generator's own CPU is not counted.

    python3 scripts/compare-write-path.py                   # 3 rounds, 10 s each, 16 clients
    python3 scripts/compare-write-path.py --rounds 5 --clients 16,1 --pg postgres://quorumlog:quorumlog@127.0.0.1:5432

Needs root (PostgreSQL runs as the `postgres` user), PostgreSQL 15's server
binaries and etcd (Debian's etcd-server and etcd-client, installed when
missing). The test command runs one short round with --check.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG_BIN = "/usr/lib/postgresql/15/bin"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SECRET = "5e" * 32
CONTEXT_SECRET = "c0" * 32


def log(message):
    print(f"compare: {message}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"compare: {what} did not listen on {port} within {timeout} s")


def proc_times():
    """pid -> (ppid, utime + stime + cutime + cstime in ticks) of every process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command may hold spaces and parentheses: split after the last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        ppid = int(fields[1])
        ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
        out[int(entry)] = (ppid, ticks)
    return out


def backends(marker):
    """PostgreSQL backends whose process title contains `marker`."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


def tree_cpu_seconds(roots):
    """CPU seconds of the processes `roots` and all their descendants,
    including children they have reaped."""
    table = proc_times()
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    seen, stack, ticks = set(), list(roots), 0
    while stack:
        pid = stack.pop()
        if pid in seen or pid not in table:
            continue
        seen.add(pid)
        ticks += table[pid][1]
        stack.extend(children.get(pid, []))
    return ticks / CLK_TCK


class System:
    """A started system: its processes, its load URL, its description."""

    def __init__(self, name, durability, system, url, level=None):
        self.name = name
        self.durability = durability
        self.system = system
        self.url = url
        self.level = level
        self.procs = []
        # quorumlog on a shared PostgreSQL server: its backends' process
        # titles name the nodes' databases, and their CPU is the system's.
        self.backend_marker = None

    def spawn(self, args, log_path, **kwargs):
        logf = open(log_path, "ab")
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                start_new_session=True, **kwargs)
        self.procs.append(proc)
        return proc

    def roots(self):
        pids = [p.pid for p in self.procs if p.poll() is None]
        if self.backend_marker:
            pids += backends(self.backend_marker)
        return pids

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def as_postgres(args):
    return ["runuser", "-u", "postgres", "--"] + args


EMBEDDED = {"sqlite": "SQLite", "fjall": "fjall"}


def start_quorumlog(work, quorumd, store, threads):
    tag = EMBEDDED.get(store, "PostgreSQL")
    sys_ = System(f"quorumlog QUORUM, {tag} stores", "3 of 5 replicas committed", "quorumlog",
                  None, level="QUORUM")
    ports = [free_port() for _ in range(5)]
    peers = ",".join(f"{i + 1}=127.0.0.1:{p}" for i, p in enumerate(ports))
    env = dict(os.environ, QUORUMD_CLUSTER_SECRET=SECRET, QUORUMD_CONTEXT_SECRET=CONTEXT_SECRET,
               RUST_LOG="warn")
    for i, port in enumerate(ports, start=1):
        if store == "sqlite":
            spec = f"sqlite:{work}/ql-{store}-node-{i}.db"
        elif store == "fjall":
            spec = f"fjall:{work}/ql-{store}-node-{i}"
        else:
            spec = f"{store}/quorumlog_{i}"
        sys_.spawn([quorumd, "node", "--id", str(i), "--listen", f"127.0.0.1:{port}",
                    "--peers", peers, "--store", spec, "--worker-threads", str(threads)],
                   f"{work}/ql-{tag}-node-{i}.log", env=env)
    for port in ports:
        wait_port(port, "a quorumlog node")
    gw = free_port()
    sys_.spawn([quorumd, "gateway", "--listen", f"127.0.0.1:{gw}", "--nodes", peers],
               f"{work}/ql-{tag}-gateway.log", env=env)
    wait_port(gw, "the quorumlog gateway")
    sys_.url = f"http://127.0.0.1:{gw}"
    if store not in EMBEDDED:
        # Their sessions' CPU, not the shared server's background work.
        sys_.backend_marker = " quorumlog_"
    return sys_


def start_etcd(work, threads):
    if shutil.which("etcd") is None or shutil.which("etcdctl") is None:
        log("installing etcd-server and etcd-client from Debian")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "etcd-server", "etcd-client"], check=True,
                       stdout=subprocess.DEVNULL, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    sys_ = System("etcd, 5 members (Raft)", "3 of 5 fsynced", "etcd", None)
    client = [free_port() for _ in range(5)]
    peer = [free_port() for _ in range(5)]
    cluster = ",".join(f"e{i + 1}=http://127.0.0.1:{p}" for i, p in enumerate(peer))
    for i in range(5):
        sys_.spawn(["etcd", "--name", f"e{i + 1}", "--data-dir", f"{work}/etcd-{i + 1}",
                    "--listen-client-urls", f"http://127.0.0.1:{client[i]}",
                    "--advertise-client-urls", f"http://127.0.0.1:{client[i]}",
                    "--listen-peer-urls", f"http://127.0.0.1:{peer[i]}",
                    "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer[i]}",
                    "--initial-cluster", cluster, "--initial-cluster-state", "new",
                    "--log-level", "warn"], f"{work}/etcd-{i + 1}.log",
                   env=dict(os.environ, **({"GOMAXPROCS": str(threads)} if threads else {})))
    for port in client:
        wait_port(port, "an etcd member")
    # Writes through the leader's followers would add a hop; quorumlog's
    # gateway adds one too, so any member will do: the first.
    sys_.url = f"http://127.0.0.1:{client[0]}"
    deadline = time.time() + 60
    while time.time() < deadline:
        r = subprocess.run(["etcdctl", "--endpoints", sys_.url, "put", "ready", "1"],
                           capture_output=True, env=dict(os.environ, ETCDCTL_API="3"))
        if r.returncode == 0:
            return sys_
        time.sleep(0.5)
    raise SystemExit("compare: the etcd cluster never took a write")


def socket_dir(path):
    """A directory for the server's socket beside (not in) its data
    directory, which pg_basebackup copies."""
    sock = f"{path}.sock"
    os.makedirs(sock, exist_ok=True)
    shutil.chown(sock, "postgres", "postgres")
    return sock


def initdb(path, port, extra):
    os.makedirs(path, exist_ok=True)
    shutil.chown(path, "postgres", "postgres")
    os.chmod(path, 0o700)
    subprocess.run(as_postgres([f"{PG_BIN}/initdb", "-D", path, "-A", "trust", "-U", "postgres"]),
                   check=True, stdout=subprocess.DEVNULL)
    with open(f"{path}/postgresql.auto.conf", "a") as f:
        f.write(f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{socket_dir(path)}'\n")
        f.write("fsync = on\nsynchronous_commit = on\nmax_connections = 200\n")
        f.write(extra)
    with open(f"{path}/pg_hba.conf", "a") as f:
        f.write("host replication all 127.0.0.1/32 trust\n")


def start_postgres(work, replicated):
    if replicated:
        sys_ = System("PostgreSQL 15, primary + 4 standbys, ANY 2 synchronous", "3 of 5 flushed",
                      "postgres", None)
    else:
        sys_ = System("PostgreSQL 15, one server, no replication (yardstick)", "1", "postgres", None)
    base = f"{work}/pg-{'repl' if replicated else 'single'}"
    os.makedirs(base, exist_ok=True)
    shutil.chown(base, "postgres", "postgres")
    port = free_port()
    extra = ""
    if replicated:
        extra = ("wal_level = replica\nmax_wal_senders = 10\n"
                 "synchronous_standby_names = 'ANY 2 (s1, s2, s3, s4)'\n")
    initdb(f"{base}/primary", port, extra)
    sys_.spawn(as_postgres([f"{PG_BIN}/postgres", "-D", f"{base}/primary"]), f"{base}/primary.log")
    wait_port(port, "the PostgreSQL primary")
    time.sleep(1)
    if replicated:
        for i in range(1, 5):
            standby = f"{base}/s{i}"
            # Each standby streams through a replication slot of its own
            # (-C -S; -R names it in the standby's settings), made as its
            # backup starts: the primary keeps every WAL segment a standby
            # has not received. Without one, the base backups of the next
            # standbys moved the primary on by a segment each, and a
            # standby slow to start on a loaded machine found the segment
            # it needed already removed ("requested WAL segment ... has
            # already been removed") and never streamed.
            subprocess.run(as_postgres([f"{PG_BIN}/pg_basebackup", "-D", standby, "-R", "-X", "stream",
                                        "-C", "-S", f"s{i}",
                                        "-d", f"host=127.0.0.1 port={port} user=postgres application_name=s{i}"]),
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            sport = free_port()
            with open(f"{standby}/postgresql.auto.conf", "a") as f:
                f.write(f"port = {sport}\nunix_socket_directories = '{socket_dir(standby)}'\n")
            sys_.spawn(as_postgres([f"{PG_BIN}/postgres", "-D", standby]), f"{standby}.log")
            wait_port(sport, f"standby s{i}")
        # Generous: on a loaded 2-core machine a standby's start and catch-up
        # can take a while, and a failure here says what the primary saw.
        wait_s = 120
        deadline = time.time() + wait_s
        query = ("select coalesce(string_agg(application_name || ' ' || state || ' ' || sync_state, ', '"
                 " order by application_name), 'no standby connected') from pg_stat_replication")
        while time.time() < deadline:
            r = subprocess.run(as_postgres([f"{PG_BIN}/psql", "-h", "127.0.0.1", "-p", str(port),
                                            "-U", "postgres", "-Atc", query]),
                               capture_output=True, text=True)
            seen = r.stdout.strip() or r.stderr.strip()
            if r.returncode == 0 and sorted(seen.split(", ")) == [f"s{i} streaming quorum" for i in range(1, 5)]:
                break
            time.sleep(0.5)
        else:
            tails = []
            for i in range(1, 5):
                try:
                    with open(f"{base}/s{i}.log", errors="replace") as f:
                        tails.append(f"s{i}.log: " + " | ".join(f.read().splitlines()[-3:]))
                except OSError as e:
                    tails.append(f"s{i}.log: {e}")
            raise SystemExit(f"compare: the 4 standbys were not all streaming and quorum-synchronous "
                             f"within {wait_s} s; the primary saw: {seen}\n" + "\n".join(tails))
    sys_.url = f"postgres://postgres@127.0.0.1:{port}/postgres"
    return sys_


def run_load(quorumd, sys_, clients, keys, value_size, seconds):
    args = [quorumd, "loadgen", "--system", sys_.system, "--url", sys_.url, "--clients", str(clients),
            "--keys", str(keys), "--value-size", str(value_size), "--duration", str(seconds)]
    if sys_.level:
        args += ["--level", sys_.level]
    before = tree_cpu_seconds(sys_.roots())
    out = subprocess.run(args, capture_output=True, text=True)
    after = tree_cpu_seconds(sys_.roots())
    if out.returncode != 0:
        raise SystemExit(f"compare: loadgen against {sys_.name} failed: {out.stderr.strip()}")
    report = json.loads(out.stdout.strip().splitlines()[-1])
    report["cpu_ms_per_write"] = (after - before) * 1000 / max(report["writes"], 1)
    return report


def summary(values, fmt):
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} [{fmt.format(min(values))}–{fmt.format(max(values))}]"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--clients", default="16", help="comma-separated client counts")
    ap.add_argument("--keys", type=int, default=1024, help="keys overwritten (0: a new key per write)")
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--stores", default="sqlite,fjall",
                    help="comma-separated embedded stores quorumlog runs on: sqlite, fjall")
    ap.add_argument("--pg", default=None, metavar="URL",
                    help="also run quorumlog on PostgreSQL stores: a server URL with databases quorumlog_1..5 "
                         "(scripts/setup-postgres.sh makes them)")
    ap.add_argument("--quorumd", default=None, help="the quorumd binary (default: build --release)")
    ap.add_argument("--quorumlog-threads", type=int, default=1,
                    help="runtime threads of each quorumlog node (quorumd --worker-threads; five nodes share "
                         "the machine's cores, and one each measured best on 2 cores)")
    ap.add_argument("--etcd-gomaxprocs", type=int, default=None,
                    help="GOMAXPROCS of each etcd member (default: Go's, every core; 1 measured slower)")
    ap.add_argument("--only", default=None, help="comma-separated subset: quorumlog,etcd,postgres")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 unless every system took writes in every round with no error (the test command's slice)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("compare: run as root (PostgreSQL runs as the postgres user)")
    if args.rounds < 1 or args.seconds < 1:
        raise SystemExit("compare: --rounds and --seconds must be at least 1")
    try:
        client_counts = [int(c) for c in args.clients.split(",")]
    except ValueError:
        raise SystemExit(f"compare: --clients {args.clients!r} is not a comma-separated list of counts")
    quorumd = args.quorumd
    if quorumd is None:
        log("building quorumd --release")
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "quorumd"], cwd=ROOT, check=True)
        quorumd = f"{ROOT}/target/release/quorumd"
    only = set(args.only.split(",")) if args.only else {"quorumlog", "etcd", "postgres"}

    work = tempfile.mkdtemp(prefix="qlcompare-")
    os.chmod(work, 0o755)
    systems = []
    try:
        if "quorumlog" in only:
            for store in args.stores.split(","):
                if store not in EMBEDDED:
                    raise SystemExit(f"compare: --stores {store!r}: use {', '.join(EMBEDDED)}")
                systems.append(start_quorumlog(work, quorumd, store, args.quorumlog_threads))
            if args.pg:
                systems.append(start_quorumlog(work, quorumd, args.pg.rstrip("/"), args.quorumlog_threads))
        if "etcd" in only:
            systems.append(start_etcd(work, args.etcd_gomaxprocs))
        if "postgres" in only:
            systems.append(start_postgres(work, replicated=True))
            systems.append(start_postgres(work, replicated=False))
        log("started: " + "; ".join(s.name for s in systems))
        results = {}
        for clients in client_counts:
            for r in range(args.rounds):
                order = systems[r % len(systems):] + systems[:r % len(systems)]
                for sys_ in order:
                    report = run_load(quorumd, sys_, clients, args.keys, args.value_size, args.seconds)
                    results.setdefault((clients, sys_.name), []).append(report)
                    errors = f", errors {report['errors']}" if report["errors"] else ""
                    log(f"round {r + 1}, {clients} clients, {sys_.name}: {report['writes_per_s']:.0f} writes/s, "
                        f"p50 {report['p50_ms']:.2f} ms, CPU {report['cpu_ms_per_write']:.3f} ms/write{errors}")
        print()
        print(f"Durable writes of a {args.value_size}-byte value over "
              f"{args.keys if args.keys else 'new'} keys, {args.rounds} interleaved rounds of {args.seconds} s "
              "(medians, ranges in brackets); CPU of every process of the system")
        for clients in client_counts:
            print()
            print(f"{clients} client{'s' if clients != 1 else ''}:")
            print()
            print("| system | durability of an acknowledged write | writes/s | write p50 ms | write p99 ms "
                  "| CPU per write ms | errors |")
            print("| --- | --- | --- | --- | --- | --- | --- |")
            for sys_ in systems:
                reports = results[(clients, sys_.name)]
                errors = sum(sum(r["errors"].values()) for r in reports)
                print(f"| {sys_.name} | {sys_.durability} "
                      f"| {summary([r['writes_per_s'] for r in reports], '{:,.0f}')} "
                      f"| {summary([r['p50_ms'] for r in reports], '{:.2f}')} "
                      f"| {summary([r['p99_ms'] for r in reports], '{:.2f}')} "
                      f"| {summary([r['cpu_ms_per_write'] for r in reports], '{:.3f}')} | {errors} |")
        if args.check:
            bad = [f"{name} ({clients} clients): {r['writes']} writes, errors {r['errors']}"
                   for (clients, name), reports in results.items() for r in reports
                   if r["writes"] == 0 or r["errors"]]
            if bad:
                log("check failed: " + "; ".join(bad))
                sys.exit(1)
            log(f"check: every system took writes in every round with no error")
    finally:
        for sys_ in systems:
            sys_.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
