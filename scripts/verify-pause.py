#!/usr/bin/python3
"""The pause of a loopback move with and without --verify, side by side.

    /usr/bin/python3 scripts/verify-pause.py [RUNS] [MEMORY] [MEMTOUCH]   # 5 1G 128M

Each run boots the test guest (`heartbeat 10 ; memtouch MEMTOUCH`, 2 vCPUs) with -v,
waits for memtouch's second pass, moves it to a `godwit receive -v` on 127.0.0.1 and
prints one JSON line: the migration's downtime_ms and total_ms, the source's pause as
its -v log reports it (`pause N us`: from stopping the vCPUs to RESUMED), the pages of
its final sync, and each side's `verify:` line. Runs alternate between without and with
--verify; the last lines are the medians. GODWIT picks the binary (docs/bench.md,
"--verify in the pause")."""
import json
import os
import re
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from godwit_vm import Godwit, run_godwit  # noqa: E402


def receiver(tmp):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    dst = Godwit(tmp, ["receive", "-v", "--listen", f"tcp:127.0.0.1:{port}",
                       "--console", f"file:{tmp}/dst.console"], "dst")
    deadline = time.monotonic() + 10
    while "waiting for an incoming migration" not in dst.stderr():
        if dst.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(dst.stderr())
        time.sleep(0.05)
    return dst, f"tcp:127.0.0.1:{port}"


def one(tmp, verify, memory, memtouch):
    src = Godwit.run_testguest(tmp, f"heartbeat 10 ; memtouch {memtouch}", cpus=2,
                               memory=memory, name="src", extra=["-v"])
    dst = None
    try:
        src.wait_for_pass(2, timeout=240)
        dst, uri = receiver(tmp)
        res = run_godwit(["migrate", "--api", src.api_path, "--to", uri, "--json",
                          *(["--verify"] if verify else [])], timeout=300)
        out = json.loads(res.stdout.strip().splitlines()[-1])
        if res.returncode or out["status"] != "completed":
            raise RuntimeError(res.stderr)
        src.wait_exit(timeout=60)
        log = src.stderr()
        pause = re.search(r"pause (\d+) us: .*last RAM \((\d+) pages\).*", log)
        dlog = dst.stderr()
        sv, dv = re.search(r"verify: .*", log), re.search(r"verify: .*", dlog)
        restore = re.search(r"restore \d+ us: .*", dlog)
        return {"verify": verify, "downtime_ms": out["downtime_ms"],
                "total_ms": out["total_ms"], "pause_us": int(pause.group(1)),
                "final_pages": int(pause.group(2)), "src_verify": sv and sv.group(0),
                "dst_verify": dv and dv.group(0), "src_pause": pause.group(0),
                "dst_restore": restore and restore.group(0)}
    finally:
        src.stop()
        if dst:
            dst.stop()


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    memory = sys.argv[2] if len(sys.argv) > 2 else "1G"
    memtouch = sys.argv[3] if len(sys.argv) > 3 else "128M"
    rows = []
    for _ in range(runs):
        for verify in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                rows.append(one(Path(tmp), verify, memory, memtouch))
            print(json.dumps(rows[-1]), flush=True)
    for verify in (False, True):
        mine = [r for r in rows if r["verify"] == verify]
        print(json.dumps({"verify": verify, "runs": len(mine), **{
            f"median_{k}": statistics.median(r[k] for r in mine)
            for k in ("pause_us", "downtime_ms", "total_ms", "final_pages")}}))


if __name__ == "__main__":
    main()
