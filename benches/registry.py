#!/usr/bin/env python3
"""barge against skopeo and against the floors on real registries, in the same run (issues 3 and 15).

Usage: benches/registry.py [--scale F] [--runs N] [--only big|medium|small]... [--baseline BIN]
                           [--work DIR] [--no-shm] [--keep]

Starts Debian docker-registry instances on 127.0.0.1 (a source, and a fresh
target for every timed import), generates the workloads with barge-fixtures
and pushes them to the source with skopeo (not timed):
  big:    10 images, each a 40 MiB base layer shared by all (~30% of each
          image) plus 100 MiB of its own: about 1 GiB of unique layers;
  medium: issue 15's shape: 7 artifacts, one of them a 3-platform index
          (linux/amd64, arm64, ppc64le; 4 layers each), 58 layers of 2-16 MiB
          (a fixed list), none shared: 359 MiB (376 MB);
  small:  50 small images (ACR's per-run limit), 256 KiB shared + 64 KiB own.
--only (repeatable, or a comma list) runs some of them; all three by default.
Then, per workload, it times
  export: barge export REG → one bundle in the work directory, against
          skopeo copy --all docker://… oci:LAYOUT:… for each image into one shared layout;
          and (unless --no-shm) barge export REG → a bundle in /dev/shm;
  import: barge import bundle → registry, against
          skopeo copy --all oci:LAYOUT:… docker://… for each image;
and, in the same rounds, the export floors:
  GET floor:  every blob of the workload (configs and layers, each once; the
              list read from the source registry's manifests) fetched from the
              same registry with 8 threads, one keep-alive connection each
              (http.client), largest first, bodies thrown away: how fast the
              bytes can leave the registry;
  disk floor: `dd if=/dev/zero bs=1M count=N conv=fsync` into a file in the
              directory barge exports to, N the workload's bytes (blobs and
              manifests) in MiB: how fast they can be made durable there
              (barge's bundle is fsynced too: its commit calls sync_all);
  shm floor:  the same dd into /dev/shm, for the /dev/shm leg.
  floor = max(GET floor, disk floor of the bundle's filesystem).
  hash floor (printed, not in the floor): barge hashes every byte twice (each
              blob's digest, and the bundle's catalogDigest), so 2 × N bytes
              at `openssl speed -evp sha256`'s one-core rate × cores.
Each leg runs --runs times (default 3), the legs taking turns to go first,
every import into a fresh registry. Each leg starts with one untimed skopeo
run: right after a burst of writes the next run is slower whoever makes it,
and that would otherwise fall on whichever tool went first. It prints the
median seconds of each leg and floor, barge/floor, barge/skopeo (ratio of the
medians, and of every run) and peak RSS, then issue 15's "must show" checks as
PASS/FAIL lines: export ≤ 0.5 × skopeo, export ≤ 1.3 × floor, peak RSS
≤ 64 MiB, and, with --baseline BIN (another barge binary, timed in the same
run), import no slower than the baseline. The machines are noisy: one run
proves little.
--scale shrinks the big and medium workloads' layer sizes (0.1 for a quick run).
--work DIR puts the run's files (registries, layouts, bundles) in DIR
(default .work/bench-registry); it is removed at the start and, unless
--keep, at the end (with --keep, the bundles and layouts stay too).
"""
import argparse
import http.client
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, ".work", "bench-registry")
BARGE = os.path.join(ROOT, "target", "release", "barge")
FIXTURES = os.path.join(ROOT, "target", "release", "barge-fixtures")
MIB = 1 << 20
WORKLOADS = ("big", "medium", "small")
GET_THREADS = 8
SHA256_ONE_CORE = None  # bytes/s of `openssl speed -evp sha256` on one core, measured once in main()
RSS_LIMIT_MIB = 64
# medium's 58 layer sizes in MiB (2-16, 359 MiB in all), in the order they are handed out.
MEDIUM_MIB = [2, 2, 3, 4, 5, 6, 8, 10, 16] * 6 + [2, 3, 8, 10]
MEDIUM_PLATFORMS = ["linux/amd64", "linux/arm64", "linux/ppc64le"]
MEDIUM_IMAGES = [8, 8, 8, 8, 7, 7]  # layers of the six single-platform images; the index takes 4 per platform
ACCEPT = ", ".join(["application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.docker.distribution.manifest.v2+json"])


class Registry:
    def __init__(self, name):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.host = f"127.0.0.1:{self.port}"
        self.dir = d = os.path.join(WORK, name)
        os.makedirs(d)
        cfg = os.path.join(d, "config.yml")
        with open(cfg, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                    f"storage:\n  filesystem:\n    rootdirectory: {d}/data\n"
                    f"http:\n  addr: {self.host}\n")
        self.proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        sys.exit(f"docker-registry {name} did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def timed(cmds):
    """Run commands one after another under /usr/bin/time; return (seconds, max peak RSS MiB)."""
    os.sync()  # start each leg without the previous one's dirty pages still being written
    t0 = time.perf_counter()
    peak = 0
    for cmd in cmds:
        p = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
        peak = max(peak, int(p.stderr.strip().splitlines()[-1]) / 1024)
    return time.perf_counter() - t0, peak


def medium_artifacts(scale):
    """Issue 15's shape: (repo, fixtures subcommand, its layer or platform arguments) for 7 artifacts."""
    sizes = [max(4096, int(m * MIB * scale)) for m in MEDIUM_MIB]
    layers = [f"{5000 + i}:{z}" for i, z in enumerate(sizes)]
    platforms = [f"{p}={','.join(layers[4 * k:4 * k + 4])}" for k, p in enumerate(MEDIUM_PLATFORMS)]
    out = [("bench/medium-multi", "index", platforms)]
    at = 4 * len(MEDIUM_PLATFORMS)
    for i, n in enumerate(MEDIUM_IMAGES):
        out.append((f"bench/medium{i}", "image", layers[at:at + n]))
        at += n
    assert at == len(layers) == 58
    return out


def workload(name, artifacts, src):
    """artifacts: list of (repo, "image"|"index", args) → generated, pushed to src; returns refs."""
    layout = os.path.join(WORK, f"gen-{name}")
    refs = []
    for repo, kind, args in artifacts:
        subprocess.run([FIXTURES, kind, layout, f"{repo}:v1"] + args, check=True)
        subprocess.run(["skopeo", "copy", "--all", "--quiet", "--dest-tls-verify=false",
                        f"oci:{layout}/{repo}:v1", f"docker://{src.host}/{repo}:v1"], check=True)
        refs.append(f"{repo}:v1")
    shutil.rmtree(layout, ignore_errors=True)  # pushed: the registry holds the bytes now
    return refs


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def blob_list(host, refs):
    """Walk every ref's manifests on the registry: ({digest: (repo, size)} of configs and layers, manifest bytes)."""
    conn = http.client.HTTPConnection(host, timeout=60)
    blobs, manifest_bytes = {}, 0

    def walk(repo, ref):
        nonlocal manifest_bytes
        conn.request("GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            sys.exit(f"GET {repo} manifest {ref}: HTTP {r.status}")
        manifest_bytes += len(body)
        doc = json.loads(body)
        for child in doc.get("manifests", []):
            walk(repo, child["digest"])
        for d in ([doc["config"]] if "config" in doc else []) + doc.get("layers", []):
            blobs.setdefault(d["digest"], (repo, d["size"]))

    for ref in refs:
        repo, tag = ref.rsplit(":", 1)
        walk(repo, tag)
    conn.close()
    return blobs, manifest_bytes


def get_floor(host, blobs):
    """GET every blob with GET_THREADS threads (one keep-alive connection each) into nothing; seconds."""
    todo = sorted(((size, repo, d) for d, (repo, size) in blobs.items()), reverse=True)
    lock, errors = threading.Lock(), []

    def worker():
        conn = http.client.HTTPConnection(host, timeout=60)
        buf = memoryview(bytearray(MIB))
        while True:
            with lock:
                if not todo or errors:
                    break
                size, repo, d = todo.pop(0)
            conn.request("GET", f"/v2/{repo}/blobs/{d}")
            r = conn.getresponse()
            got = 0
            while True:
                n = r.readinto(buf)
                if not n:
                    break
                got += n
            if r.status != 200 or got != size:
                with lock:
                    errors.append(f"GET {repo}@{d}: HTTP {r.status}, {got} of {size} bytes")
        conn.close()

    os.sync()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(GET_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.perf_counter() - t0
    if errors:
        sys.exit(errors[0])
    return secs


def openssl_sha256():
    """One core's sha256 rate in bytes/s: `openssl speed -evp sha256`, its 16384-byte column."""
    p = subprocess.run(["openssl", "speed", "-seconds", "2", "-evp", "sha256"], capture_output=True, text=True)
    for line in p.stdout.splitlines():
        if line.lower().startswith("sha256"):
            return float(line.split()[-1].rstrip("k")) * 1000
    return None


def disk_floor(directory, mib):
    """dd `mib` MiB of zeros into a new file in `directory`, fsynced; seconds."""
    path = os.path.join(directory, ".floor-dd.bin")
    os.sync()
    t0 = time.perf_counter()
    p = subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={mib}", "conv=fsync"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    secs = time.perf_counter() - t0
    os.remove(path)
    if p.returncode != 0:
        sys.exit(f"dd into {directory} failed: {p.stderr.strip()}")
    return secs


def shm_dir_name():
    return f"/dev/shm/barge-bench-{os.getpid()}"


def shm_dir(mib):
    """A fresh directory in /dev/shm for the shm leg, or None when /dev/shm cannot hold two bundles."""
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return None
    if st.f_bavail * st.f_frsize < 2 * (mib + 64) * MIB:
        return None
    d = shm_dir_name()
    os.makedirs(d, exist_ok=True)
    return d


class Bench:
    """One workload's legs, floors, and their figures."""

    def __init__(self, name, refs, src, runs, baseline, with_shm):
        self.name, self.refs, self.src, self.runs, self.baseline = name, refs, src, runs, baseline
        self.blobs, manifest_bytes = blob_list(src.host, refs)
        self.bytes = sum(s for _, s in self.blobs.values()) + manifest_bytes
        self.mib = math.ceil(self.bytes / MIB)
        self.shm = shm_dir(self.mib) if with_shm else None
        self.layout = os.path.join(WORK, f"{name}-skopeo-layout")
        self.bundles = {"barge": os.path.join(WORK, f"{name}.tar"),
                        "baseline": os.path.join(WORK, f"{name}-baseline.tar")}
        if self.shm:
            self.bundles["barge-shm"] = os.path.join(self.shm, f"{name}.tar")
        self.binaries = {"barge": BARGE, "baseline": baseline, "barge-shm": BARGE}
        self.times, self.rss = {}, {}

    def record(self, leg, result):
        secs, rss = result if isinstance(result, tuple) else (result, 0.0)
        self.times.setdefault(leg, []).append(secs)
        self.rss[leg] = max(self.rss.get(leg, 0.0), rss)

    def skopeo_export(self):
        shutil.rmtree(self.layout, ignore_errors=True)
        os.makedirs(self.layout)
        return [["skopeo", "copy", "--all", "--quiet", "--src-tls-verify=false",
                 f"docker://{self.src.host}/{r}", f"oci:{self.layout}:{r}"] for r in self.refs]

    def skopeo_import(self, target):
        return [["skopeo", "copy", "--all", "--quiet", "--dest-tls-verify=false",
                 f"oci:{self.layout}:{r}", f"docker://{target.host}/{r}"] for r in self.refs]

    def export_leg(self, leg):
        if leg == "skopeo":
            return timed(self.skopeo_export())
        if leg == "get-floor":
            return get_floor(self.src.host, self.blobs)
        if leg == "disk-floor":
            return disk_floor(WORK, self.mib)
        if leg == "shm-floor":
            return disk_floor(self.shm, self.mib)
        bundle = self.bundles[leg]
        if os.path.exists(bundle):
            os.remove(bundle)
        return timed([[self.binaries[leg], "export", "--registry", self.src.host, "--to", bundle] + self.refs])

    def run(self):
        """Each leg `runs` times, the legs taking turns to go first, imports into fresh targets."""
        legs = ["barge", "skopeo"] + (["baseline"] if self.baseline else []) + \
            (["barge-shm"] if self.shm else []) + ["get-floor", "disk-floor"] + (["shm-floor"] if self.shm else [])
        # Each phase starts with one untimed run: after a burst of writes (the
        # workload's push, the export legs) the next run is slower whoever
        # makes it, and that would fall on whichever tool went first.
        timed(self.skopeo_export())
        for k in range(self.runs):
            for leg in legs[k % len(legs):] + legs[:k % len(legs)]:
                self.record("export " + leg, self.export_leg(leg))
        if self.shm:
            os.remove(self.bundles["barge-shm"])  # /dev/shm is memory: free it before the imports
        warm = Registry(f"{self.name}-warm-up")
        timed(self.skopeo_import(warm))
        warm.stop()
        shutil.rmtree(warm.dir, ignore_errors=True)
        tools = ["barge", "skopeo"] + (["baseline"] if self.baseline else [])
        for k in range(self.runs):
            for tool in tools[k % len(tools):] + tools[:k % len(tools)]:
                target = Registry(f"{self.name}-{tool}-target-{k}")
                try:
                    if tool == "skopeo":
                        cmds = self.skopeo_import(target)
                    else:
                        cmds = [[self.binaries[tool], "import", self.bundles[tool], "--registry", target.host]]
                    self.record("import " + tool, timed(cmds))
                finally:
                    target.stop()
                    shutil.rmtree(target.dir, ignore_errors=True)

    def m(self, leg):
        return median(self.times[leg])

    def report(self):
        """Print the table; return the must-show check lines."""
        size = os.path.getsize(self.bundles["barge"])
        get, disk = self.m("export get-floor"), self.m("export disk-floor")
        floors = {"barge": max(get, disk), "baseline": max(get, disk)}
        print(f"\n{self.name}: {len(self.refs)} artifacts, {len(self.blobs)} blobs, bundle {size / MIB:.0f} MiB "
              f"({size / 1e6:.0f} MB), {self.runs} run(s) per leg, medians")
        line = f"  floors: GET ×{GET_THREADS} {get:.2f} s ({self.bytes / get / 1e6:.0f} MB/s), " \
               f"dd conv=fsync {self.mib} MiB to {os.path.relpath(WORK, ROOT)} {disk:.2f} s " \
               f"({self.mib * MIB / disk / 1e6:.0f} MB/s)"
        if self.shm:
            shm = self.m("export shm-floor")
            floors["barge-shm"] = max(get, shm)
            line += f", to /dev/shm {shm:.2f} s ({self.mib * MIB / shm / 1e6:.0f} MB/s)"
        if SHA256_ONE_CORE:
            cores = os.cpu_count()
            hashed = 2 * self.bytes / (cores * SHA256_ONE_CORE)
            line += f"\n  hash floor (not in the floor): every byte hashed twice, blob digests and catalogDigest, " \
                    f"at openssl's one-core {SHA256_ONE_CORE / 1e9:.2f} GB/s × {cores} cores: {hashed:.2f} s"
        print(line)
        base = f" {'baseline s':>10s} {'barge/base':>10s}" if self.baseline else ""
        print(f"  {'leg':18s} {'barge s':>8s} {'skopeo s':>9s} {'floor s':>8s} {'barge/floor':>11s} "
              f"{'barge/skopeo':>12s} {'barge RSS':>10s} {'skopeo RSS':>11s}{base}  barge/skopeo per run")
        rows = [("export", "export barge", floors["barge"]), ("import", "import barge", None)]
        if self.shm:
            rows.insert(1, ("export→/dev/shm", "export barge-shm", floors["barge-shm"]))
        for label, leg, floor in rows:
            phase = leg.split()[0]
            b, k = self.times[leg], self.times[f"{phase} skopeo"]
            per_run = " ".join(f"{x / y:.2f}" for x, y in zip(b, k))
            fl = f"{floor:8.2f} {median(b) / floor:11.2f}" if floor else f"{'-':>8s} {'-':>11s}"
            vs = ""
            if self.baseline:
                o = self.m(f"{phase} baseline")
                vs = f" {o:10.2f} {median(b) / o:10.2f}" if leg != "export barge-shm" else f" {'-':>10s} {'-':>10s}"
            print(f"  {label:18s} {median(b):8.2f} {median(k):9.2f} {fl} {median(b) / median(k):12.2f} "
                  f"{self.rss[leg]:8.1f}Mi {self.rss[f'{phase} skopeo']:9.1f}Mi{vs}  {per_run}")
        return self.checks(rows)

    def checks(self, rows):
        out = []

        def check(ok, text):
            out.append(f"  {'PASS' if ok else 'FAIL'}  {self.name}: {text}")

        skopeo = self.m("export skopeo")
        for label, leg, floor in (r for r in rows if r[1].startswith("export")):
            b = self.m(leg)
            check(b <= 0.5 * skopeo, f"{label} {b:.2f} s ≤ 0.5 × skopeo {skopeo:.2f} s ({b / skopeo:.2f}×)")
            check(b <= 1.3 * floor, f"{label} {b:.2f} s ≤ 1.3 × floor {floor:.2f} s ({b / floor:.2f}×)")
        peak = {leg: self.rss[leg] for leg in ("export barge", "import barge")}
        check(max(peak.values()) <= RSS_LIMIT_MIB, f"peak RSS export {peak['export barge']:.1f} MiB, "
              f"import {peak['import barge']:.1f} MiB ≤ {RSS_LIMIT_MIB} MiB")
        if self.baseline:
            b, o = self.m("import barge"), self.m("import baseline")
            check(b <= o * 1.05, f"import {b:.2f} s no slower than baseline {o:.2f} s ({b / o:.2f}×, 5% for noise)")
        return out


def only(values):
    chosen = {w.strip() for v in values or [] for w in v.split(",") if w.strip()}
    bad = chosen - set(WORKLOADS)
    if bad:
        sys.exit(f"--only: unknown workload {', '.join(sorted(bad))}; choose from {', '.join(WORKLOADS)}")
    return [w for w in WORKLOADS if w in chosen] if chosen else list(WORKLOADS)


def main():
    global WORK
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", action="append", metavar="big|medium|small",
                    help="run these workloads only (repeatable, or a comma list)")
    ap.add_argument("--baseline", help="another barge binary to time in the same run (e.g. the previous release)")
    ap.add_argument("--work", help="directory for the run's files (default .work/bench-registry)")
    ap.add_argument("--no-shm", action="store_true", help="skip the export leg into /dev/shm")
    a = ap.parse_args()
    chosen = only(a.only)
    if a.work:
        WORK = os.path.abspath(a.work)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--workspace"], cwd=ROOT, check=True)
    global SHA256_ONE_CORE
    SHA256_ONE_CORE = openssl_sha256()
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    src = Registry("source")
    try:
        base, own = int(40 * MIB * a.scale), int(100 * MIB * a.scale)
        artifacts = {
            "big": [(f"bench/big{i}", "image", [f"1000:{base}", f"{2000 + i}:{own}"]) for i in range(10)],
            "medium": medium_artifacts(a.scale),
            "small": [(f"bench/small{i:02d}", "image", [f"3000:{256 * 1024}", f"{4000 + i}:{64 * 1024}"])
                      for i in range(50)],
        }
        refs = {name: workload(name, artifacts[name], src) for name in chosen}
        checks = []
        for name in chosen:
            b = Bench(name, refs[name], src, a.runs, a.baseline, not a.no_shm)
            b.run()
            checks += b.report()
            if not a.keep:  # the work directory holds the next workload's files: make room
                shutil.rmtree(b.layout, ignore_errors=True)
                for bundle in b.bundles.values():
                    if os.path.exists(bundle):
                        os.remove(bundle)
        print("\nmust show (issue 15):")
        print("\n".join(checks))
    finally:
        src.stop()
        shutil.rmtree(shm_dir_name(), ignore_errors=True)
        if not a.keep:
            shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
