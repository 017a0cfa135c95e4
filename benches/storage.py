#!/usr/bin/env python3
"""barge copy against the Azure Python SDK doing its best, and against the raw upload floor,
between two Azurite accounts, in one run (issues 4 and 15).

Usage: benches/storage.py [--mib N] [--runs N] [--work DIR] [--keep]

Installs (once, under .work/tools) azurite@3.37.0 and the azure-storage-blob
SDK, starts Azurite (blob only) on 127.0.0.1 with two accounts, uploads an
N MiB (default 1024) blob of noise to the source account with the SDK (not
timed), then times, each into a fresh destination blob:
  server-side: barge copy                 vs SDK: parallel stage_block_from_url + commit
  relay:       barge copy --relay         vs SDK: parallel ranged download -> stage_block
                                                  (with its Content-MD5, as barge's) + commit
  floor:       the raw upload of the same N MiB into the destination account,
               nothing downloaded: how fast the destination takes the bytes (a
               copy should not beat it: a barge/floor under 1.00 says how noisy
               the server is). Measured two ways, the faster one is the floor:
               the SDK's parallel stage_block of each 8 MiB block +
               commit_block_list ("up SDK"), and raw HTTP from this script,
               parallel Put Block on one keep-alive connection per thread + Put
               Block List through the container SAS ("up raw"); blocks are read
               from the local noise file (in the page cache). Nothing is checked
               but each block's Content-MD5, which barge sends too: Azurite
               computes a slow (JavaScript) CRC64 of every block that comes
               without one, so leaving it out would make the floor slower, not
               faster. Measured next to each mode's legs, so each row has its own.
Then `barge bench` against the destination container, same size, blocks and
concurrency: upload, download, server-side and relayed copy, each with MB/s,
blocks/s, p50/p99 block latency and CPU (its table printed as it is).
All at concurrency 8 and 8 MiB blocks, each leg --runs times (default 1), the
legs taking turns to go first, every destination blob deleted after its leg.
Prints the median seconds, barge's MB/s, the ratios of the times (barge/SDK,
barge/floor: lower is better, 1.00 is at the floor) and barge's peak RSS.
--work DIR puts the run's files (Azurite's storage, the noise file) in DIR
(default .work/bench-storage).
"""
import argparse
import base64
import concurrent.futures as cf
import datetime as dt
import hashlib
import http.client
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, ".work", "bench-storage")
TOOLS = os.path.join(ROOT, ".work", "tools")
BARGE = os.path.join(ROOT, "target", "release", "barge")
PY = os.path.join(TOOLS, "py", "bin", "python")
MIB = 1 << 20
BLOCK = 8 * MIB
CONC = 8
KEYS = {"srcacct": base64.b64encode(b"s" * 32).decode(), "dstacct": base64.b64encode(b"d" * 32).decode()}


def ensure_tools():
    subprocess.run([os.path.join(ROOT, "scripts", "deps")], check=True)
    if not os.path.exists(PY):
        subprocess.run([sys.executable, "-m", "venv", os.path.join(TOOLS, "py")], check=True)
    if subprocess.run([PY, "-c", "import azure.storage.blob"], capture_output=True).returncode != 0:
        subprocess.run([PY, "-m", "pip", "install", "-q", "azure-storage-blob"], check=True)


def sdk_main(args):
    """Runs inside the venv: the SDK side of the benchmark."""
    from azure.storage.blob import BlobServiceClient, BlobBlock, generate_container_sas, ContainerSasPermissions
    mode, endpoint, src_blob, dst_blob, size = args[0], args[1], args[2], args[3], int(args[4])
    def svc(acct):
        return BlobServiceClient(f"{endpoint}/{acct}", credential={"account_name": acct, "account_key": KEYS[acct]})
    if mode == "setup":
        for acct in KEYS:
            try:
                svc(acct).create_container("bench")
            except Exception:
                pass
        data_path = src_blob
        bc = svc("srcacct").get_blob_client("bench", "source.bin")
        t0 = time.perf_counter()
        with open(data_path, "rb") as f:
            bc.upload_blob(f, overwrite=True, max_concurrency=CONC, length=size)
        print(f"{size / (time.perf_counter() - t0) / 1e6:.1f}")
        return
    if mode == "sas":
        exp = dt.datetime.utcnow() + dt.timedelta(hours=2)
        acct = src_blob
        print(generate_container_sas(acct, "bench", account_key=KEYS[acct],
                                     permission=ContainerSasPermissions(read=True, write=True, list=True, add=True, create=True, delete=True),
                                     expiry=exp))
        return
    if mode == "upload":
        return sdk_upload(svc("dstacct").get_blob_client("bench", dst_blob), src_blob, size)
    src = svc("srcacct").get_blob_client("bench", src_blob)
    dst = svc("dstacct").get_blob_client("bench", dst_blob)
    sas = subprocess.run([sys.executable, __file__, "--sdk", "sas", "", "srcacct", "", "0"], capture_output=True, text=True).stdout.strip()
    src_url = f"{src.url}?{sas}"
    n = (size + BLOCK - 1) // BLOCK
    ids = [base64.b64encode(f"bench-{i:010d}".encode()).decode() for i in range(n)]
    def server(i):
        off = i * BLOCK
        dst.stage_block_from_url(ids[i], src_url, source_offset=off, source_length=min(BLOCK, size - off))
    def relay(i):
        off = i * BLOCK
        data = src.download_blob(offset=off, length=min(BLOCK, size - off)).readall()
        dst.stage_block(ids[i], data, validate_content=True)  # see the floor: Azurite is faster with it
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(CONC) as ex:
        list(ex.map(server if mode == "server" else relay, range(n)))
    dst.commit_block_list([BlobBlock(block_id=b) for b in ids])
    print(f"{time.perf_counter() - t0:.3f}")


def sdk_upload(dst, data_path, size):
    """The floor: parallel stage_block of the file's blocks + commit, timed; then the blob is deleted."""
    from azure.storage.blob import BlobBlock
    n = (size + BLOCK - 1) // BLOCK
    ids = [base64.b64encode(f"floor-{i:010d}".encode()).decode() for i in range(n)]
    fd = os.open(data_path, os.O_RDONLY)

    def put(i):
        dst.stage_block(ids[i], os.pread(fd, min(BLOCK, size - i * BLOCK), i * BLOCK), validate_content=True)

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(CONC) as ex:
        list(ex.map(put, range(n)))
    dst.commit_block_list([BlobBlock(block_id=b) for b in ids])
    print(f"{time.perf_counter() - t0:.3f}")
    os.close(fd)
    dst.delete_blob()  # Azurite keeps its bytes on disk: free them


def raw_upload(endpoint, sas, name, data_path, size):
    """The floor without the SDK: Put Block over raw HTTP (CONC threads, one keep-alive connection each)
    + Put Block List, through the container SAS, timed; then the blob is deleted."""
    host = endpoint.split("://", 1)[1]
    path = f"/dstacct/bench/{name}"
    n = (size + BLOCK - 1) // BLOCK
    ids = [base64.b64encode(f"raw-{i:010d}".encode()).decode() for i in range(n)]
    todo, lock, errors = list(range(n)), threading.Lock(), []
    fd = os.open(data_path, os.O_RDONLY)

    def request(conn, method, query, body=b"", md5=False):
        headers = {"x-ms-version": "2021-08-06"}
        if md5:
            headers["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
        conn.request(method, f"{path}?{query}&{sas}", body=body, headers=headers)
        r = conn.getresponse()
        r.read()
        if r.status not in (200, 201, 202):
            with lock:
                errors.append(f"{method} {query.split('&')[0]}: HTTP {r.status}")

    def worker():
        conn = http.client.HTTPConnection(host, timeout=120)
        while True:
            with lock:
                if not todo or errors:
                    break
                i = todo.pop(0)
            block = os.pread(fd, min(BLOCK, size - i * BLOCK), i * BLOCK)
            request(conn, "PUT", f"comp=block&blockid={urllib.parse.quote(ids[i], safe='')}", block, md5=True)
        conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(CONC)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conn = http.client.HTTPConnection(host, timeout=120)
    if not errors:
        xml = "<?xml version='1.0' encoding='utf-8'?><BlockList>" + "".join(f"<Latest>{b}</Latest>" for b in ids)
        request(conn, "PUT", "comp=blocklist", (xml + "</BlockList>").encode())
    secs = time.perf_counter() - t0
    os.close(fd)
    if errors:
        sys.exit(f"raw upload floor: {errors[0]}")
    conn.close()
    return secs


def delete_blob(url):
    """DELETE a blob through its SAS URL (raw HTTP); a blob that is not there is fine."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.netloc, timeout=120)
    conn.request("DELETE", f"{u.path}?{u.query}", headers={"x-ms-version": "2021-08-06"})
    r = conn.getresponse()
    r.read()
    conn.close()
    if r.status not in (202, 404):
        sys.exit(f"DELETE {u.path}: HTTP {r.status}")


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def timed(cmd):
    os.sync()
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr}")
    return time.perf_counter() - t0, int(p.stderr.strip().splitlines()[-1]) / 1024


def main():
    global WORK
    if len(sys.argv) > 1 and sys.argv[1] == "--sdk":
        return sdk_main(sys.argv[2:])
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--runs", type=int, default=1, help="times each leg runs, the legs taking turns to go first")
    ap.add_argument("--work", help="directory for the run's files (default .work/bench-storage)")
    a = ap.parse_args()
    if a.work:
        WORK = os.path.abspath(a.work)
    ensure_tools()
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = dict(os.environ, AZURITE_ACCOUNTS=";".join(f"{k}:{v}" for k, v in KEYS.items()))
    az = subprocess.Popen([os.path.join(TOOLS, "node_modules", ".bin", "azurite-blob"), "--blobHost", "127.0.0.1",
                           "--blobPort", str(port), "--location", os.path.join(WORK, "azurite"), "--disableTelemetry",
                           "--skipApiVersionCheck", "--loose", "--silent"], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        size = a.mib * MIB
        data = os.path.join(WORK, "noise.bin")
        with open(data, "wb") as f:
            for _ in range(a.mib):
                f.write(os.urandom(MIB))
        sdk = lambda *args: subprocess.run([PY, __file__, "--sdk", *args], capture_output=True, text=True, check=True).stdout.strip()
        sdk("setup", endpoint, data, "", str(size))
        sas = {acct: sdk("sas", endpoint, acct, "", "0") for acct in KEYS}
        src = f"{endpoint}/srcacct/bench/source.bin?{sas['srcacct']}"
        dst = lambda name: f"{endpoint}/dstacct/bench/{name}?{sas['dstacct']}"

        def leg(mode, tool, k):
            """One timed leg; its destination blob is deleted afterwards (Azurite keeps every byte on disk)."""
            name = f"{tool.replace(' ', '-')}-{mode}-{k}.bin"
            if tool == "barge":
                flags = ["--relay"] if mode == "relay" else []
                result = timed([BARGE, "copy", "-q", "--concurrency", str(CONC)] + flags + [src, dst(name)])
            else:
                os.sync()
                if tool == "SDK":
                    result = float(sdk(mode, endpoint, "source.bin", name, str(size))), 0.0
                elif tool == "up SDK":
                    return float(sdk("upload", endpoint, data, name, str(size))), 0.0  # deleted by the upload
                else:
                    result = raw_upload(endpoint, sas["dstacct"], name, data, size), 0.0
            delete_blob(dst(name))
            return result

        tools = ["barge", "SDK", "up SDK", "up raw"]
        rows = []
        for mode in ("server", "relay"):
            times, rss = {t: [] for t in tools}, 0.0
            for k in range(a.runs):
                for tool in tools[k % len(tools):] + tools[:k % len(tools)]:
                    secs, peak = leg(mode, tool, k)
                    times[tool].append(secs)
                    rss = max(rss, peak)
            rows.append((mode, *(median(times[t]) for t in tools), rss))
        print(f"\ncopy {a.mib} MiB between two Azurite accounts (concurrency {CONC}, 8 MiB blocks), "
              f"{a.runs} run(s) per leg, medians")
        print("  floor: the raw upload of the same bytes into the destination (each block with its Content-MD5,")
        print("  nothing else checked), the faster of the SDK's (parallel stage_block + commit, \"up SDK\")")
        print("  and raw HTTP's (parallel Put Block + Put Block List, \"up raw\"); ratios are of times")
        print(f"  {'mode':8s} {'barge s':>8s} {'barge MB/s':>11s} {'SDK s':>7s} {'up SDK s':>9s} {'up raw s':>9s} "
              f"{'floor MB/s':>11s} {'barge/SDK':>10s} {'barge/floor':>12s} {'barge RSS':>10s}")
        for mode, b, s, f_sdk, f_raw, rss in rows:
            f = min(f_sdk, f_raw)
            print(f"  {mode:8s} {b:8.2f} {size / b / 1e6:11.1f} {s:7.2f} {f_sdk:9.2f} {f_raw:9.2f} "
                  f"{size / f / 1e6:11.1f} {b / s:10.2f} {b / f:12.2f} {rss:8.1f}Mi")
        # barge bench in the same run, against the destination account: its own figures per leg.
        print(f"\nbarge bench --to the destination container, {a.mib} MiB, 8 MiB blocks, concurrency {CONC}:")
        bench = subprocess.run([BARGE, "bench", "--to", f"{endpoint}/dstacct/bench?{sas['dstacct']}",
                                "--size", f"{a.mib}MiB", "--block-size", "8MiB", "--concurrency", str(CONC)],
                               capture_output=True, text=True)
        if bench.returncode != 0:
            sys.exit(f"barge bench failed ({bench.returncode}): {bench.stderr.strip()}")
        print("\n".join("  " + line for line in bench.stdout.splitlines() if line.strip()))
    finally:
        az.terminate()
        az.wait()
        if not a.keep:
            shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
