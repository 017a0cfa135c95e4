#!/usr/bin/env python3
"""Local benchmarks of barge (issue 2): verify throughput against sha256sum
and (issue 15) against its floors, cores x the one-core `openssl speed -evp
sha256` rate and read + hash (the cached file read into nothing by every
core, then hashed at that rate), on two bundle shapes (8 big blobs; many 2-16 MiB blobs); peak
RSS of export and import with one large layer, and (issue 13) a full
against a delta re-export after one 64 MiB layer changed.

Usage: benches/local.py [--gib N] [--keep] [--only verify|memory|delta]
Builds barge in release mode, generates workloads under .work/bench with
barge-fixtures, runs each command under /usr/bin/time, and prints wall-clock
seconds, throughput, ratios and peak RSS. Ratios, not absolute numbers, are what
to compare across machines.
"""
import argparse
import os
import random
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, ".work", "bench")
BARGE = os.path.join(ROOT, "target", "release", "barge")
FIXTURES = os.path.join(ROOT, "target", "release", "barge-fixtures")


def run(cmd, quiet=True):
    """Run cmd under /usr/bin/time; return (seconds, peak RSS in MiB)."""
    os.sync()  # no leg pays for the previous one's writeback
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, stdout=subprocess.DEVNULL if quiet else None,
                       stderr=subprocess.PIPE, text=True)
    secs = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    rss_kib = int(p.stderr.strip().splitlines()[-1])
    return secs, rss_kib / 1024




def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=1.0, help="bundle size in GiB (default 1)")
    ap.add_argument("--keep", action="store_true", help="keep .work/bench afterwards")
    ap.add_argument("--baseline", help="another barge binary to time in the same run (e.g. the previous release)")
    ap.add_argument("--only", choices=["verify", "memory", "delta"], help="run one benchmark")
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--workspace"], cwd=ROOT, check=True)
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    total = int(a.gib * (1 << 30))
    if a.only in (None, "verify"):
        bench_verify(a, total)
    if a.only in (None, "memory"):
        bench_memory(total)
    if a.only in (None, "delta"):
        bench_delta(total)
    if not a.keep:
        shutil.rmtree(WORK, ignore_errors=True)


def run_cpu(cmd):
    """Run cmd under /usr/bin/time; return (wall seconds, user + system CPU seconds)."""
    os.sync()
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%U %S"] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    secs = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    user, system = p.stderr.strip().splitlines()[-1].split()
    return secs, float(user) + float(system)


def openssl_one_core():
    """`openssl speed -evp sha256` on one core, its 16384-byte column, in bytes/s
    (openssl divides by its user CPU time)."""
    out = subprocess.run(["openssl", "speed", "-evp", "sha256", "-bytes", "16384", "-seconds", "1"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    header = next(l for l in out if l.startswith("type"))
    column = (header.split().index("16384") - 1) // 2  # the header reads "type 16 bytes 64 bytes ..."
    row = next(l for l in out if l.split() and l.split()[0] == "sha256").split()
    return float(row[1 + column].rstrip("k")) * 1000


def bench_verify(a, total):
    """1. verify, on two shapes of bundle: 8 images of one layer each (blobs
    hashed in parallel), and images of five 2-16 MiB layers (many medium
    blobs). Each leg runs on a cached bundle: the file is read into nothing
    right before it (on this kind of VM, pages of a cached file not touched
    for a few seconds come back from memory at a third of the speed: see
    read_floor). Best of 3, against sha256sum and two floors measured between
    the same rounds: cores x the one-core openssl rate (the issue's), and
    read + hash: every core bringing its share of the cached file in (the
    read floor) and hashing it at the one-core openssl rate."""
    reg = os.path.join(WORK, "reg-many")
    per = total // 8
    for i in range(8):
        subprocess.run([FIXTURES, "image", reg, f"bench/img{i}:v1", f"{100 + i}:{per}"], check=True)
    many = os.path.join(WORK, "many.tar")
    run([BARGE, "export", "--registry", "oci:" + reg, "--to", many] + [f"bench/img{i}:v1" for i in range(8)])
    shutil.rmtree(reg)
    reg = os.path.join(WORK, "reg-medium")
    rng = random.Random(15)
    refs, made = [], 0
    while made < total:
        layers = [rng.randint(2, 16) << 20 for _ in range(5)]
        i = len(refs)
        subprocess.run([FIXTURES, "image", reg, f"bench/med{i}:v1"] + [f"{1000 + 5 * i + j}:{n}" for j, n in enumerate(layers)],
                       check=True, stdout=subprocess.DEVNULL)
        refs.append(f"bench/med{i}:v1")
        made += sum(layers)
    medium = os.path.join(WORK, "medium.tar")
    run([BARGE, "export", "--registry", "oci:" + reg, "--to", medium] + refs)
    shutil.rmtree(reg)
    cores = len(os.sched_getaffinity(0))
    for shape, bundle, blobs in [("8 blobs", many, 8), ("2-16 MiB blobs", medium, 5 * len(refs))]:
        size = os.path.getsize(bundle)
        legs = [("barge verify", [BARGE, "verify", bundle]), ("sha256sum", ["sha256sum", bundle])]
        if a.baseline:
            legs.append(("baseline verify", [a.baseline, "verify", bundle]))
        wall = {name: [] for name, _ in legs}
        cpu = {name: [] for name, _ in legs}
        one_core, reads = [], []
        for _ in range(3):
            for name, cmd in legs:
                warm(bundle)
                w, c = run_cpu(cmd)
                wall[name].append(w)
                cpu[name].append(c)
            one_core.append(openssl_one_core())
            warm(bundle)
            reads.append(read_floor(bundle, cores))
        best = {name: min(t) for name, t in wall.items()}
        one = max(one_core)
        floor = cores * one
        read = size / min(reads)  # bytes/s, all cores reading
        read_hash = cores / (cores / read + 1 / one)  # each core: its share read, then hashed
        print(f"\nverify a {size / (1 << 30):.2f} GiB bundle ({shape}: {blobs} layers), cached, best of 3:")
        for name, _ in legs:
            print(f"  {name:15s} {best[name]:6.2f} s  {size / best[name] / 1e9:5.2f} GB/s"
                  f"  ({size / min(cpu[name]) / 1e9:.2f} GB per CPU-second)")
        print(f"  openssl one-core       {one / 1e9:5.2f} GB/s  (openssl speed -evp sha256, 16384-byte blocks)")
        print(f"  read floor             {read / 1e9:5.2f} GB/s  ({cores} readers of the cached file, 256 KiB reads, into nothing)")
        print(f"  cores {cores}; floor = cores x one-core = {floor / 1e9:.2f} GB/s; "
              f"read + hash floor = {read_hash / 1e9:.2f} GB/s")
        print(f"  ratio: barge verify / floor = {size / best['barge verify'] / floor:.2f}; "
              f"/ read + hash floor = {size / best['barge verify'] / read_hash:.2f}; "
              f"per CPU-second / one-core = {size / min(cpu['barge verify']) / one:.2f}")
        print(f"  ratio: barge verify is {best['sha256sum'] / best['barge verify']:.2f}x faster than sha256sum")
        if a.baseline:
            print(f"  ratio: barge verify takes {best['barge verify'] / best['baseline verify']:.2f}x the baseline's time")


def warm(path):
    """Read the file into nothing: its pages cached, and recently touched."""
    subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=1M"], check=True, capture_output=True)


def read_floor(path, readers):
    """Seconds for `readers` processes to read the cached file into nothing,
    each its own stretch, 256 KiB at a time: what bringing the bytes from the
    page cache into the cores costs before any hashing."""
    blocks = -(-os.path.getsize(path) // (256 << 10))
    share = -(-blocks // readers)
    t0 = time.perf_counter()
    procs = [subprocess.Popen(["dd", f"if={path}", "of=/dev/null", "bs=256K", f"skip={i * share}", f"count={share}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(readers)]
    for p in procs:
        if p.wait() != 0:
            sys.exit(f"dd of {path} failed")
    return time.perf_counter() - t0


def bench_memory(total):
    # 2. memory: one image with a single layer of the whole size.
    reg1 = os.path.join(WORK, "reg-one")
    subprocess.run([FIXTURES, "image", reg1, "bench/big:v1", f"7:{total}"], check=True)
    one = os.path.join(WORK, "one.tar")
    e_secs, e_rss = run([BARGE, "export", "--registry", "oci:" + reg1, "--to", one, "bench/big:v1"])
    i_secs, i_rss = run([BARGE, "import", one, "--registry", "oci:" + os.path.join(WORK, "dst")])
    c_secs, c_rss = run([BARGE, "copy", one, os.path.join(WORK, "copy.tar")])
    v_secs, v_rss = run([BARGE, "verify", one])
    print(f"\none {total / (1 << 30):.2f} GiB layer: seconds and peak RSS")
    for name, secs, rss in [("export", e_secs, e_rss), ("import", i_secs, i_rss), ("copy", c_secs, c_rss), ("verify", v_secs, v_rss)]:
        print(f"  {name:7s} {secs:6.2f} s  {rss:6.1f} MiB  {total / secs / 1e6:7.0f} MB/s")


def bench_delta(total):
    """3. delta: 8 images of two 64 MiB layers (1 GiB at the default size) are
    exported and imported; then one layer of one image changes (a new version
    under a new tag). The re-export is timed whole, and as a delta against the
    target's inventory (the inventory's own time is shown too). The floor for
    the delta is the changed 64 MiB layer (its config and the manifests are a
    few KiB)."""
    layer = 64 << 20
    images = max(1, total // (2 * layer))
    reg = os.path.join(WORK, "reg-delta")
    for i in range(images):
        subprocess.run([FIXTURES, "image", reg, f"bench/app{i}:v1", f"{200 + 2 * i}:{layer}", f"{201 + 2 * i}:{layer}"],
                       check=True)
    refs = [f"bench/app{i}:v1" for i in range(images)]
    first = os.path.join(WORK, "first.tar")
    run([BARGE, "export", "--registry", "oci:" + reg, "--to", first] + refs)
    dst = "oci:" + os.path.join(WORK, "dst-delta")
    run([BARGE, "import", first, "--registry", dst])
    os.remove(first)
    # One layer of bench/app0 changes: v2 keeps the first layer, the second is new.
    subprocess.run([FIXTURES, "image", reg, "bench/app0:v2", f"200:{layer}", f"999:{layer}"], check=True)
    refs.append("bench/app0:v2")
    full = os.path.join(WORK, "full.tar")
    f_secs, _ = run([BARGE, "export", "--registry", "oci:" + reg, "--to", full] + refs)
    f_bytes = os.path.getsize(full)
    os.remove(full)
    have = os.path.join(WORK, "have.json")
    inv_secs, _ = run([BARGE, "inventory", "--registry", dst, "--to", have] + sorted({r.split(":")[0] for r in refs}))
    delta = os.path.join(WORK, "delta.tar")
    d_secs, _ = run([BARGE, "export", "--registry", "oci:" + reg, "--have", have, "--to", delta] + refs)
    d_bytes = os.path.getsize(delta)
    print(f"\nre-export of {images} images ({images * 2 * layer / (1 << 30):.2f} GiB) after one 64 MiB layer changed:")
    print(f"  {'full':9s} {f_bytes:>13,d} bytes  {f_secs:6.2f} s")
    print(f"  {'delta':9s} {d_bytes:>13,d} bytes  {d_secs:6.2f} s  (+ inventory {inv_secs:.2f} s, "
          f"{os.path.getsize(have):,d} bytes)")
    print(f"  floor     {layer:>13,d} bytes  (the changed layer); the delta ships {d_bytes / f_bytes:.1%} of the full bytes, "
          f"{d_bytes - layer:,d} bytes over the floor")


if __name__ == "__main__":
    main()
