#!/usr/bin/env python3
"""The standard S3 client side of tests/bench/backup_s3.sh: boto3 (PyPI, in a venv the script
creates), so the mydumper path uploads as operators do (`aws s3 cp --recursive` is the same
s3transfer TransferManager underneath).

Endpoint from BENCH_S3_ENDPOINT (path-style addressing, region us-east-1), credentials from
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (never printed).

  ready BUCKET TIMEOUT              wait until BUCKET answers (HeadBucket)
  upload DIR BUCKET PREFIX THREADS  upload every file under DIR to BUCKET/PREFIX/<relative path>
                                    through one TransferManager with THREADS concurrent requests,
                                    multipart above 16 MiB in 8 MiB parts (as fleetsync's store);
                                    prints {"files", "bytes", "uploader"} and checks the listing
  usage BUCKET PREFIX               print {"objects", "bytes"} under BUCKET/PREFIX/
"""

import json
import os
import sys
import time

import boto3
import botocore
import s3transfer
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.config import Config

MULTIPART_THRESHOLD = 16 << 20
PART_SIZE = 8 << 20


def client(threads=4):
    endpoint = os.environ.get("BENCH_S3_ENDPOINT")
    if not endpoint:
        sys.exit("s3tool: BENCH_S3_ENDPOINT is not set")
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=max(10, threads),
                      retries={"max_attempts": 3}))


def usage(c, bucket, prefix):
    objects, total = 0, 0
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/"):
        for o in page.get("Contents", []):
            objects += 1
            total += o["Size"]
    return {"objects": objects, "bytes": total}


def cmd_ready(bucket, timeout):
    c = client()
    deadline = time.time() + float(timeout)
    last = None
    while time.time() < deadline:
        try:
            c.head_bucket(Bucket=bucket)
            return
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            last = e
            time.sleep(0.3)
    sys.exit(f"s3tool: bucket {bucket} not served within {timeout}s: {type(last).__name__}")


def cmd_upload(root, bucket, prefix, threads):
    threads = int(threads)
    c = client(threads)
    cfg = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=PART_SIZE,
                         max_concurrency=threads, use_threads=True)
    files = []
    for d, _, names in os.walk(root):
        for n in sorted(names):
            files.append(os.path.join(d, n))
    total = sum(os.path.getsize(f) for f in files)
    prefix = prefix.rstrip("/")
    with create_transfer_manager(c, cfg) as tm:
        futures = [tm.upload(f, bucket, f"{prefix}/{os.path.relpath(f, root)}") for f in files]
        for fut in futures:
            fut.result()
    got = usage(c, bucket, prefix)
    if got != {"objects": len(files), "bytes": total}:
        sys.exit(f"s3tool: uploaded {len(files)} files ({total} bytes) but the bucket lists {got}")
    print(json.dumps({
        "files": len(files), "bytes": total,
        "uploader": f"boto3 {boto3.__version__} (s3transfer {s3transfer.__version__} TransferManager, "
                    f"max_concurrency {threads}, multipart above {MULTIPART_THRESHOLD >> 20} MiB "
                    f"in {PART_SIZE >> 20} MiB parts)",
    }))


def main():
    a = sys.argv[1:]
    if a[:1] == ["ready"] and len(a) == 3:
        cmd_ready(a[1], a[2])
    elif a[:1] == ["upload"] and len(a) == 5:
        cmd_upload(*a[1:])
    elif a[:1] == ["usage"] and len(a) == 3:
        print(json.dumps(usage(client(), a[1], a[2])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
