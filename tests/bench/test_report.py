"""scripts/bench/report.py: the gateway's ratio and verdict are taken
against the fastest peer, never against its own library run bare."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "bench"))

from report import Cell, markdown, misses  # noqa: E402


def _cell(server: str, seconds: float) -> Cell:
    return Cell("delete_folder", "delete a folder", "ftp", server, 1.5, "small",
                runs=[{"done_s": seconds, "reply_s": seconds, "rss": 1 << 20}])


def test_a_bare_library_faster_than_every_peer_is_not_the_best_peer():
    cells = [_cell("gateway", 0.40), _cell("vsftpd", 0.20), _cell("pyftpdlib", 0.10)]
    rows = {line.split(" | ")[2]: line for line in markdown(cells).splitlines()[2:]}
    assert "| 2.00× best |" in rows["gateway"] and "✘ ≤ 1.5×" in rows["gateway"]
    assert "| 4.00× library |" in rows["pyftpdlib"]
    assert misses(cells) == ["delete a folder (ftp): 0.400 s, 2.00× best, 1 MiB — ✘ ≤ 1.5×, ✔ < 150 MiB"]


def test_server_cpu_is_shown_per_run_and_per_operation_and_judged_where_targeted():
    runs = [{"done_s": 1.0, "reply_s": 1.0, "rss": 1 << 20, "cpu_s": cpu, "ops": 1000} for cpu in (0.5, 0.3, 0.7)]
    cells = [Cell("upload_small", "upload", "webdav", "gateway", 1.5, "small", runs=runs, unit="file"),
             Cell("upload_small", "upload", "webdav", "nginx", None, "small", runs=runs[:1], unit="file")]
    rows = {line.split(" | ")[2]: line for line in markdown(cells).splitlines()[2:]}
    assert "| 0.50 | 500 µs/file |" in rows["gateway"]
    assert "✘ ≤ 400 µs CPU/file" in rows["gateway"]
    assert "CPU 0.50 s (500 µs/file)" in misses(cells)[0]


def test_cpu_ratio_is_against_the_peer_that_spent_least_cpu_not_the_fastest_nor_the_library():
    def cell(server: str, seconds: float, cpu: float) -> Cell:
        return Cell("upload_small", "upload", "sftp", server, 1.5, "small", unit="file",
                    runs=[{"done_s": seconds, "reply_s": seconds, "rss": 1 << 20, "cpu_s": cpu, "ops": 1000}])

    cells = [cell("gateway", 2.0, 3.0), cell("openssh", 1.5, 1.0), cell("rclone", 1.0, 1.5),
             cell("asyncssh", 3.0, 0.5)]
    rows = {line.split(" | ")[2]: line.split(" | ") for line in markdown(cells).splitlines()[2:]}
    head = markdown(cells).splitlines()[0].split(" | ")
    col = head.index("gateway/peer CPU")
    assert rows["gateway"][col] == "3.00× least" and rows["gateway"][col - 1] == "2.00× best"
    assert rows["openssh"][col] == "3.00×" and rows["rclone"][col] == "2.00×"
    assert rows["asyncssh"][col] == "6.00× library"
    assert "3.00× least CPU" in misses(cells)[0]
