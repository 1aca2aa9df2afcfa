"""A real S3 client (boto3) driven by hangar/tests/api/s3.rs.

Reads {"endpoint", "bucket", "region", "steps": [...]} as JSON on stdin; each step names its
credentials ("ak", "sk", "token") and an "op"; prints one JSON result per step as a list:
{"ok": true, ...} or {"ok": false, "code": <S3 error code>, "status": <HTTP status>}.
"""

import hashlib
import json
import socket
import sys
from urllib.parse import urlparse

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

MiB = 1024 * 1024


def client(cfg, step):
    return boto3.client(
        "s3",
        endpoint_url=cfg["endpoint"],
        region_name=cfg["region"],
        aws_access_key_id=step["ak"],
        aws_secret_access_key=step["sk"],
        aws_session_token=step.get("token"),
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1, "mode": "standard"},
            signature_version="s3v4",
        ),
    )


def raw_put(cfg, step):
    """A PUT whose body does not match its headers: `declared` bytes announced, `body` sent, then
    the client stops writing. Signed as boto3 signs, so only the body is wrong."""
    url = f"{cfg['endpoint']}/{cfg['bucket']}/{step['key']}"
    body = step["body"].encode()
    signed = step.get("signed_body", step["body"]).encode()
    headers = {
        "Content-Length": str(step["declared"]),
        "x-amz-content-sha256": hashlib.sha256(signed).hexdigest() if step.get("sign_payload") else "UNSIGNED-PAYLOAD",
    }
    req = AWSRequest(method="PUT", url=url, data=b"", headers=headers)
    S3SigV4Auth(Credentials(step["ak"], step["sk"], step.get("token")), "s3", cfg["region"]).add_auth(req)
    u = urlparse(url)
    head = f"PUT {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nConnection: close\r\n"
    for k, v in req.headers.items():
        if k.lower() != "host":
            head += f"{k}: {v}\r\n"
    s = socket.create_connection((u.hostname, u.port), timeout=10)
    s.sendall(head.encode() + b"\r\n" + body)
    s.shutdown(socket.SHUT_WR)
    answer = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    except socket.timeout:
        pass
    s.close()
    text = answer.decode(errors="replace")
    status = int(text.split(" ", 2)[1]) if text.startswith("HTTP/") else 0
    code = text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in text else None
    return {"ok": 200 <= status < 300, "status": status, "code": code}


def run(cfg, step):
    op = step["op"]
    if op == "raw_put":
        return raw_put(cfg, step)
    s3 = client(cfg, step)
    b, key = cfg["bucket"], step.get("key")
    if op == "put":
        r = s3.put_object(Bucket=b, Key=key, Body=step["body"].encode())
        return {"ok": True, "etag": r["ETag"].strip('"')}
    if op == "upload_file":
        # boto3's managed transfer: multipart (8 MiB parts, several at once) above 8 MiB
        s3.upload_file(step["file"], b, key, Config=TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB))
        return {"ok": True}
    if op == "get":
        kw = {"Range": step["range"]} if "range" in step else {}
        r = s3.get_object(Bucket=b, Key=key, **kw)
        data = r["Body"].read()
        return {"ok": True, "sha256": hashlib.sha256(data).hexdigest(), "len": len(data), "text": data[:64].decode(errors="replace"),
                "content_range": r.get("ContentRange")}
    if op == "head":
        r = s3.head_object(Bucket=b, Key=key)
        return {"ok": True, "len": r["ContentLength"]}
    if op == "delete":
        s3.delete_object(Bucket=b, Key=key)
        return {"ok": True}
    if op == "list":
        r = s3.list_objects_v2(Bucket=b, Prefix=step["prefix"], **({"Delimiter": step["delimiter"]} if "delimiter" in step else {}))
        return {"ok": True, "keys": [o["Key"] for o in r.get("Contents", [])],
                "prefixes": [p["Prefix"] for p in r.get("CommonPrefixes", [])]}
    if op == "multipart_missing_part":
        # parts 1 and 3 uploaded, the completion names 1, 2 and 3
        up = s3.create_multipart_upload(Bucket=b, Key=key)["UploadId"]
        parts = []
        for n in (1, 3):
            e = s3.upload_part(Bucket=b, Key=key, UploadId=up, PartNumber=n, Body=b"x" * (5 * MiB))["ETag"]
            parts.append({"PartNumber": n, "ETag": e})
        parts.insert(1, {"PartNumber": 2, "ETag": parts[0]["ETag"]})
        try:
            s3.complete_multipart_upload(Bucket=b, Key=key, UploadId=up, MultipartUpload={"Parts": parts})
            return {"ok": True}
        finally:
            s3.abort_multipart_upload(Bucket=b, Key=key, UploadId=up)
    if op == "multipart_abort":
        up = s3.create_multipart_upload(Bucket=b, Key=key)["UploadId"]
        s3.upload_part(Bucket=b, Key=key, UploadId=up, PartNumber=1, Body=b"y" * 1024)
        s3.abort_multipart_upload(Bucket=b, Key=key, UploadId=up)
        try:
            s3.upload_part(Bucket=b, Key=key, UploadId=up, PartNumber=2, Body=b"y")
            return {"ok": True}
        except ClientError as e:
            return {"ok": True, "after_abort": e.response["Error"]["Code"]}
    if op == "multipart_leave":
        # an upload a device gives up: created, one part, never completed nor aborted
        up = s3.create_multipart_upload(Bucket=b, Key=key)["UploadId"]
        s3.upload_part(Bucket=b, Key=key, UploadId=up, PartNumber=1, Body=b"z" * 1024)
        return {"ok": True, "upload_id": up}
    if op == "upload_part":
        s3.upload_part(Bucket=b, Key=key, UploadId=step["upload_id"], PartNumber=2, Body=b"z")
        return {"ok": True}
    if op == "presign_get":
        url = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": key}, ExpiresIn=600)
        return {"ok": True, "url": url}
    raise ValueError(f"unknown op {op}")


def main():
    cfg = json.load(sys.stdin)
    out = []
    for step in cfg["steps"]:
        try:
            out.append(run(cfg, step))
        except ClientError as e:
            out.append({"ok": False, "code": e.response["Error"]["Code"],
                        "status": e.response["ResponseMetadata"]["HTTPStatusCode"]})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
