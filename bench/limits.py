"""The machine's physical limits, measured in the bench's own run (docs/bench.md): one
loopback TCP stream (bench/limits/tcp_bw.c, 1 MiB sends between two processes) and
memcpy (bench/limits/memcpy_bw.c, one 256 MiB copy and the same in 4 KiB pieces). Built
with gcc into a temporary directory; each is run `passes` times, the GB/s of each kept.
"""
import os
import re
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def _build(src, exe):
    subprocess.run(["gcc", "-O2", "-o", exe, os.path.join(HERE, "limits", src)], check=True,
                   capture_output=True, timeout=60)


def _rates(out, label):
    return [float(m) for m in re.findall(rf"^{label}.*?: ([0-9.]+) GB/s$", out, re.M)]


def measure(quick=False, passes=3):
    """{'tcp_gbs': [...], 'memcpy_gbs': [...], 'memcpy_4k_gbs': [...]} or {'error': why}."""
    tcp_mib = "256" if quick else "2048"
    try:
        with tempfile.TemporaryDirectory(prefix="godwit-limits-") as d:
            tcp, mem = os.path.join(d, "tcp_bw"), os.path.join(d, "memcpy_bw")
            _build("tcp_bw.c", tcp)
            _build("memcpy_bw.c", mem)
            res = {"tcp_gbs": [], "memcpy_gbs": [], "memcpy_4k_gbs": []}
            for _ in range(passes):
                out = subprocess.run([tcp, tcp_mib], capture_output=True, text=True,
                                     timeout=120, check=True).stdout
                res["tcp_gbs"] += _rates(out, "loopback TCP")
            out = subprocess.run([mem, "256", str(passes)], capture_output=True, text=True,
                                 timeout=120).stdout
            res["memcpy_gbs"] = _rates(out, "memcpy 256")
            res["memcpy_4k_gbs"] = _rates(out, "memcpy 4K")
            return res
    except (OSError, subprocess.SubprocessError) as e:
        return {"error": str(e)}
