"""`make demo`: the main job end to end against a local S3 this script starts.

Starts moto (authentication on, STS), creates an upload-only role, and has
fluppy upload a generated 64 MiB file with credentials minted by AssumeRole,
with progress bars; then downloads the object and compares the bytes. Then the
same upload is killed after its third part and resumed by running it again.
"""

from __future__ import annotations

import hashlib
import json
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
        base = [
            sys.executable, "-m", "fluppy_cli", "upload", str(data),
            "--endpoint-url", moto.url,
            "--creds-cmd", mint,
        ]  # fmt: skip
        cmd = [*base, "--to", f"s3://{servers.BUCKET}/demo/", "--progress", "bars"]
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

        print("\nnow the same upload, killed (as kill -9) right after part 3 was acknowledged...")
        killed = subprocess.run(
            [
                *base,
                "--to",
                f"s3://{servers.BUCKET}/demo/resumed.tar",
                "--progress",
                "none",
                "-j",
                "1",
            ],
            env={**os.environ, "FLUPPY_FAULT": "after-ack:3"},
            check=False,
        )
        print(f"exit status {killed.returncode}; the journal now says:")
        subprocess.run([sys.executable, "-m", "fluppy_cli", "list"], check=False)
        print("(the journal may lag the server; resume asks the server what it has)")
        print("$ fluppy upload ... (the same command again: it resumes by itself)")
        again = subprocess.run(
            [*base, "--to", f"s3://{servers.BUCKET}/demo/resumed.tar", "--json"],
            capture_output=True,
            text=True,
            check=False,
        )
        if again.returncode != 0:
            print(f"demo: the resume failed: {again.stderr}", file=sys.stderr)
            return 1
        rec = json.loads(again.stdout)
        mib = 1024 * 1024
        print(
            f"resumed: {rec['resumed_bytes'] / mib:.0f} MiB were already on the server, "
            f"{rec['sent_bytes'] / mib:.0f} MiB sent now"
        )
        got = moto.client("s3").get_object(Bucket=servers.BUCKET, Key="demo/resumed.tar")  # type: ignore[attr-defined]
        if hashlib.sha256(got["Body"].read()).hexdigest() != local:
            print("demo: the resumed object differs from the file!", file=sys.stderr)
            return 1
        print("verified: the resumed object is identical to the file")
    return 0


if __name__ == "__main__":
    sys.exit(main())
