"""The benchmark's console clock: a heartbeat line is stamped with the time it was
written, by bench/stamper.c (a process of its own), not with the time the benchmark's
busy process got round to reading it. A late reader once stamped lines written 1 ms
apart all at once and read a 1 ms pause as 4 ms."""
import os
import sys
import time

from godwit_vm import ROOT

sys.path.insert(0, os.path.join(ROOT, "bench"))

import procmon  # noqa: E402


def wait_for_stamp(path, size, timeout=5.0):
    reader = procmon.StampReader(path + ".stamps")
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if reader.time_of(size, float("inf")) != float("inf"):
                return
            time.sleep(0.005)
    finally:
        reader.close()
    raise AssertionError(f"the stamper never saw {path} reach {size} bytes")


def test_lines_read_late_keep_the_times_they_were_written(tmp_path):
    path = str(tmp_path / "console")
    stamper = procmon.ConsoleStamper([path], str(tmp_path))
    tail = procmon.ConsoleTail(path)
    try:
        with open(path, "ab", buffering=0) as f:
            t_a = time.monotonic()
            f.write(b"hb 0 1\n")
            wait_for_stamp(path, 7)
            time.sleep(0.1)
            f.write(b"hb 1 ")  # half a line: stamped when its newline comes
            wait_for_stamp(path, 12)
            time.sleep(0.1)
            t_b = time.monotonic()
            f.write(b"2\n")
            wait_for_stamp(path, 14)
        time.sleep(0.2)
        tail.poll(time.monotonic())  # one late read sees both lines
    finally:
        stamper.stop()
        tail.close()
    assert [text for _, text in tail.lines] == ["hb 0 1", "hb 1 2"]
    (when_a, _), (when_b, _) = tail.lines
    assert t_a <= when_a < t_a + 0.05
    assert t_b <= when_b < t_b + 0.05
    assert stamper.proc.exit_code is not None


def test_without_stamps_a_line_has_the_time_it_was_read(tmp_path):
    path = str(tmp_path / "console")
    with open(path, "wb") as f:
        f.write(b"hb 0 1\n")
    tail = procmon.ConsoleTail(path)
    tail.poll(123.0)
    tail.close()
    assert tail.lines == [(123.0, "hb 0 1")]


def test_the_stamper_ends_by_itself(tmp_path):
    path = str(tmp_path / "console")
    stamper = procmon.ConsoleStamper([path], str(tmp_path), max_s=0.2)
    try:
        assert stamper.proc.wait(10) == 0
    finally:
        stamper.stop()
