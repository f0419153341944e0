"""The tests' credentials command: asks moto's STS for real temporary credentials
(AssumeRole) and prints them in one of the shapes fluppy accepts.

    python tests/mint.py process|uppy|sts [--bucket B] [--region R]
        [--expires-in SECONDS] [--no-expiration] [--count FILE] [--record FILE]

``--expires-in`` overrides the Expiration fluppy is told (the real credentials
last longer), so refresh can be tested without waiting 15 minutes. ``--count``
appends a line to FILE on each run. ``--static KEY SECRET`` prints those keys
instead of asking STS (for SeaweedFS, which has no STS).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timedelta, timezone


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("shape", choices=["process", "uppy", "sts"])
    ap.add_argument("--bucket")
    ap.add_argument("--region")
    ap.add_argument("--expires-in", type=float)
    ap.add_argument("--no-expiration", action="store_true")
    ap.add_argument("--count")
    ap.add_argument("--static", nargs=2)
    ap.add_argument("--record", help="also append the JSON printed to this file")
    args = ap.parse_args()
    if args.count:
        with open(args.count, "a") as f:
            f.write("x\n")
    if args.static:
        key, secret, token = args.static[0], args.static[1], None
        expiration = datetime.now(timezone.utc) + timedelta(hours=1)
    else:
        import boto3

        sts = boto3.client(
            "sts",
            endpoint_url=os.environ["MINT_ENDPOINT"],
            region_name="us-east-1",
            aws_access_key_id=os.environ["MINT_KEY"],
            aws_secret_access_key=os.environ["MINT_SECRET"],
        )
        got = sts.assume_role(RoleArn=os.environ["MINT_ROLE_ARN"], RoleSessionName="fluppy-test")
        c = got["Credentials"]
        key, secret, token, expiration = (
            c["AccessKeyId"],
            c["SecretAccessKey"],
            c["SessionToken"],
            c["Expiration"],
        )
    if args.expires_in is not None:
        expiration = datetime.now(timezone.utc) + timedelta(seconds=args.expires_in)
    creds: dict[str, object] = {"AccessKeyId": key, "SecretAccessKey": secret}
    if token:
        creds["SessionToken"] = token
    if not args.no_expiration:
        creds["Expiration"] = expiration.isoformat().replace("+00:00", "Z")
    if args.shape == "process":
        doc: dict[str, object] = {"Version": 1, **creds}
    elif args.shape == "uppy":
        doc = {"credentials": creds, "bucket": args.bucket, "region": args.region}
    else:
        doc = {"Credentials": creds, "AssumedRoleUser": {"Arn": "arn:aws:sts::x:assumed-role/u/s"}}
    json.dump(doc, sys.stdout)
    if args.record:
        with open(args.record, "a") as f:
            f.write(json.dumps(doc) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
