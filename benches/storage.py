#!/usr/bin/env python3
"""barge copy against the Azure Python SDK doing its best, between two Azurite accounts, in one run (issue 4).

Usage: benches/storage.py [--mib N] [--keep]

Installs (once, under .work/tools) azurite@3.37.0 and the azure-storage-blob
SDK, starts Azurite (blob only) on 127.0.0.1 with two accounts, uploads an
N MiB (default 1024) blob of noise to the source account with the SDK (its
rate is the server's raw upload ceiling), then times, each into a fresh
destination blob:
  server-side: barge copy                 vs SDK: parallel stage_block_from_url + commit
  relay:       barge copy --relay         vs SDK: parallel ranged download -> stage_block + commit
All at concurrency 8 and 8 MiB blocks. Prints MB/s, ratios and barge's peak RSS.
"""
import argparse
import base64
import concurrent.futures as cf
import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
import time

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
        dst.stage_block(ids[i], data)
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(CONC) as ex:
        list(ex.map(server if mode == "server" else relay, range(n)))
    dst.commit_block_list([BlobBlock(block_id=b) for b in ids])
    print(f"{time.perf_counter() - t0:.3f}")


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
    if len(sys.argv) > 1 and sys.argv[1] == "--sdk":
        return sdk_main(sys.argv[2:])
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
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
        raw = float(sdk("setup", endpoint, data, "", str(size)))
        sas = {acct: sdk("sas", endpoint, acct, "", "0") for acct in KEYS}
        src = f"{endpoint}/srcacct/bench/source.bin?{sas['srcacct']}"
        rows = []
        for mode, flags in [("server", []), ("relay", ["--relay"])]:
            b_secs, b_rss = timed([BARGE, "copy", "-q", "--concurrency", str(CONC)] + flags +
                                  [src, f"{endpoint}/dstacct/bench/barge-{mode}.bin?{sas['dstacct']}"])
            s_secs = float(sdk(mode, endpoint, "source.bin", f"sdk-{mode}.bin", str(size)))
            rows.append((mode, size / b_secs / 1e6, size / s_secs / 1e6, b_rss))
        print(f"\ncopy {a.mib} MiB between two Azurite accounts (concurrency {CONC}, 8 MiB blocks)")
        print(f"  server raw upload (SDK upload_blob): {raw:.1f} MB/s")
        print(f"  {'mode':8s} {'barge MB/s':>11s} {'SDK MB/s':>9s} {'ratio':>6s} {'of raw':>7s} {'barge RSS':>10s}")
        for mode, b, s, rss in rows:
            print(f"  {mode:8s} {b:11.1f} {s:9.1f} {b / s:6.2f} {b / raw:7.0%} {rss:8.1f}Mi")
    finally:
        az.terminate()
        az.wait()
        if not a.keep:
            shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
