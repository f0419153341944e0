"""`make demo`: the main job end to end against a local S3 this script starts.

Starts moto (authentication on, STS), creates an upload-only role, and has
fluppy upload a generated 64 MiB file with credentials minted by AssumeRole,
with progress bars; then downloads the object and compares the bytes.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import servers


def main() -> int:
    print("starting a local S3 (moto, auth on) with an upload-only STS role...")
    moto = servers.start_moto()
    assert moto.proc is not None
    with servers.running(moto.proc), tempfile.TemporaryDirectory() as tmp:
        os.environ.update(moto.env())
        data = Path(tmp, "backup.tar")
        data.write_bytes(os.urandom(64 * 1024 * 1024))
        mint = shlex.join([sys.executable, str(Path(__file__).parent / "mint.py"), "process"])
        cmd = [
            sys.executable, "-m", "fluppy_cli", "upload", str(data),
            "--to", f"s3://{servers.BUCKET}/demo/",
            "--endpoint-url", moto.url,
            "--creds-cmd", mint,
            "--progress", "bars",
        ]  # fmt: skip
        print("$", shlex.join(["fluppy", *cmd[3:]]))
        if subprocess.run(cmd, check=False).returncode != 0:
            print("demo: the upload failed", file=sys.stderr)
            return 1
        got = moto.client("s3").get_object(Bucket=servers.BUCKET, Key="demo/backup.tar")  # type: ignore[attr-defined]
        remote = hashlib.sha256(got["Body"].read()).hexdigest()
        local = hashlib.sha256(data.read_bytes()).hexdigest()
        if remote != local:
            print("demo: the downloaded object differs from the file!", file=sys.stderr)
            return 1
        print(f"verified: s3://{servers.BUCKET}/demo/backup.tar has sha256 {remote}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
