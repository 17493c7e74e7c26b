"""Peak resident memory of reading a 2 GB log against a 500 MB log, each in a process of its own.

Both logs repeat the same simulated Baidu log as gzip members (see `ingest_log.py`), so the
vocabulary ends at the same size and any difference in peak memory comes from reading itself.
Each child process imports clickjax and reads every batch with the default threads, discarding
it. It reports its peak resident set size (`ru_maxrss`), its resident memory after the imports,
and the vocabulary's size. The imports of jax, pyarrow and numpy make up most of the peak.

Run: PYTHONPATH=python python benches/ingest_memory.py [FOLDER]
(FOLDER defaults to a temporary folder; it needs about 650 MB of free disk.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ingest_log import write_repeated_log  # noqa: E402

SIZES = {"500 MB": 500_000_000, "2 GB": 2_000_000_000}

CHILD = """
import json, resource, sys
from clickjax.data import Vocabulary, read_batches

with open("/proc/self/status") as status:
    resident_kib = next(line.split()[1] for line in status if line.startswith("VmRSS:"))
imported = int(resident_kib) * 1024
vocabulary = Vocabulary()
sessions = 0
for batch in read_batches("baidu", [sys.argv[1]], vocabulary, batch_size=8192):
    sessions += batch.num_rows
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
report = {"peak_bytes": peak, "imported_bytes": imported, "sessions": sessions, "pairs": len(vocabulary)}
print(json.dumps(report))
"""


def measure(path: Path) -> dict:
    """Read `path` in a new Python process and return its report."""
    output = subprocess.run(
        [sys.executable, "-c", CHILD, os.fspath(path)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(folder: Path) -> None:
    reports = {}
    for name, text_bytes in SIZES.items():
        path = folder / f"log-{text_bytes}.gz"
        written = write_repeated_log(path, text_bytes)
        reports[name] = measure(path)
        reports[name]["text_bytes"] = written
        path.unlink()
        report = reports[name]
        print(
            f"{name} log ({written / 1e6:.0f} MB of text, {report['sessions']} sessions, "
            f"{report['pairs']} pairs): peak resident memory {report['peak_bytes'] / 2**20:.0f} MiB, "
            f"{(report['peak_bytes'] - report['imported_bytes']) / 2**20:.0f} MiB above the resident memory after imports",
            flush=True,
        )
    small, large = reports["500 MB"]["peak_bytes"], reports["2 GB"]["peak_bytes"]
    print(f"peak memory ratio, 2 GB log to 500 MB log: {large / small:.3f}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as temporary:
            main(Path(temporary))
