#!/usr/bin/env python3
"""barge against skopeo on real registries, in the same run (issue 3).

Usage: benches/registry.py [--scale F] [--runs N] [--keep]

Starts Debian docker-registry instances on 127.0.0.1 (a source, and a fresh
target for every timed import), generates two workloads with barge-fixtures
and pushes them to the source with skopeo (not timed):
  big:   10 images, each a 40 MiB base layer shared by all (~30% of each
         image) plus 100 MiB of its own: about 1 GiB of unique layers;
  small: 50 small images (ACR's per-run limit), 256 KiB shared + 64 KiB own.
Then, per workload, it times
  export: barge export REG → one bundle, against
          skopeo copy --all docker://… oci:LAYOUT:… for each image into one shared layout;
  import: barge import bundle → registry, against
          skopeo copy --all oci:LAYOUT:… docker://… for each image;
Each leg runs --runs times (default 3), barge and skopeo taking turns to go
first, every import into a fresh registry. Each leg starts with one untimed
skopeo run: right after a burst of writes the next run is slower whoever
makes it, and that would otherwise fall on whichever tool went first. It
prints the median wall-clock seconds of each tool, the ratio of the medians,
the ratio of every run, and peak RSS. The machines are noisy: one run proves
little.
--scale shrinks the big workload's layer sizes (0.1 for a quick run).
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, ".work", "bench-registry")
BARGE = os.path.join(ROOT, "target", "release", "barge")
FIXTURES = os.path.join(ROOT, "target", "release", "barge-fixtures")
MIB = 1 << 20


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


def workload(name, images, src):
    """images: list of (repo, [(seed, size)]) → generated, pushed to src; returns refs."""
    layout = os.path.join(WORK, f"gen-{name}")
    refs = []
    for repo, layers in images:
        subprocess.run([FIXTURES, "image", layout, f"{repo}:v1"] + [f"{s}:{z}" for s, z in layers], check=True)
        subprocess.run(["skopeo", "copy", "--all", "--quiet", "--dest-tls-verify=false",
                        f"oci:{layout}/{repo}:v1", f"docker://{src.host}/{repo}:v1"], check=True)
        refs.append(f"{repo}:v1")
    return refs


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def bench(name, refs, src, runs, baseline=None):
    """Each leg `runs` times, the tools taking turns to go first, into fresh targets.
    With `baseline` (another barge binary, e.g. the previous release), it runs too,
    so a change is compared with what it replaces in the same run."""
    bundle = os.path.join(WORK, f"{name}.tar")
    layout = os.path.join(WORK, f"{name}-skopeo-layout")
    tools = ["barge", "skopeo"] + (["baseline"] if baseline else [])
    binaries = {"barge": BARGE, "baseline": baseline}
    bundles = {"barge": bundle, "baseline": os.path.join(WORK, f"{name}-baseline.tar")}
    times = {leg: {t: [] for t in tools} for leg in ("export", "import")}
    rss = {leg: {t: 0.0 for t in tools} for leg in ("export", "import")}

    def record(leg, tool, result):
        times[leg][tool].append(result[0])
        rss[leg][tool] = max(rss[leg][tool], result[1])

    def order(k):
        return tools[k % len(tools):] + tools[:k % len(tools)]

    def skopeo_export():
        shutil.rmtree(layout, ignore_errors=True)
        os.makedirs(layout)
        return [["skopeo", "copy", "--all", "--quiet", "--src-tls-verify=false",
                 f"docker://{src.host}/{r}", f"oci:{layout}:{r}"] for r in refs]

    def skopeo_import(target):
        return [["skopeo", "copy", "--all", "--quiet", "--dest-tls-verify=false",
                 f"oci:{layout}:{r}", f"docker://{target.host}/{r}"] for r in refs]

    # Each leg starts with one untimed run: after a burst of writes (the
    # workload's push, the export legs) the next run is slower whoever makes
    # it, and that would fall on whichever tool went first.
    timed(skopeo_export())
    for k in range(runs):
        for tool in order(k):
            if tool == "skopeo":
                record("export", tool, timed(skopeo_export()))
                continue
            if os.path.exists(bundles[tool]):
                os.remove(bundles[tool])
            cmd = [binaries[tool], "export", "--registry", src.host, "--to", bundles[tool]] + refs
            record("export", tool, timed([cmd]))
    warm = Registry(f"{name}-warm-up")
    timed(skopeo_import(warm))
    warm.stop()
    shutil.rmtree(warm.dir, ignore_errors=True)
    for k in range(runs):
        for tool in order(k):
            target = Registry(f"{name}-{tool}-target-{k}")
            try:
                if tool == "skopeo":
                    cmds = skopeo_import(target)
                else:
                    cmds = [[binaries[tool], "import", bundles[tool], "--registry", target.host]]
                record("import", tool, timed(cmds))
            finally:
                target.stop()
                shutil.rmtree(target.dir, ignore_errors=True)
    size = os.path.getsize(bundle)
    print(f"\n{name}: {len(refs)} images, bundle {size / MIB:.0f} MiB, {runs} run(s) per leg, medians")
    extra = f" {'baseline s':>10s} {'barge/base':>10s}" if baseline else ""
    print(f"  {'leg':7s} {'barge s':>8s} {'skopeo s':>9s} {'ratio':>6s} {'barge RSS':>10s} {'skopeo RSS':>11s}"
          f"{extra}  ratio per run")
    for leg in ("export", "import"):
        b, k = times[leg]["barge"], times[leg]["skopeo"]
        per_run = " ".join(f"{x / y:.2f}" for x, y in zip(b, k))
        vs = ""
        if baseline:
            o = times[leg]["baseline"]
            vs = f" {median(o):10.2f} {median(b) / median(o):10.2f}"
        print(f"  {leg:7s} {median(b):8.2f} {median(k):9.2f} {median(b) / median(k):6.2f} "
              f"{rss[leg]['barge']:8.1f}Mi {rss[leg]['skopeo']:9.1f}Mi{vs}  {per_run}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--baseline", help="another barge binary to time in the same run (e.g. the previous release)")
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--workspace"], cwd=ROOT, check=True)
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    src = Registry("source")
    try:
        base, own = int(40 * MIB * a.scale), int(100 * MIB * a.scale)
        big = workload("big", [(f"bench/big{i}", [(1000, base), (2000 + i, own)]) for i in range(10)], src)
        small = workload("small", [(f"bench/small{i:02d}", [(3000, 256 * 1024), (4000 + i, 64 * 1024)])
                                   for i in range(50)], src)
        bench("big", big, src, a.runs, a.baseline)
        bench("small", small, src, a.runs, a.baseline)
    finally:
        src.stop()
        if not a.keep:
            shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
