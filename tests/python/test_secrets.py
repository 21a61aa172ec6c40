"""The entry scripts read a Hub token kept in Secrets Manager (tunec_entry/secrets.py), against moto's Secrets Manager.

Each test creates a secret on the moto server with boto3, then starts a process the way a job starts: the entry
point `run_entry` with TUNEC_HF_TOKEN_SECRET set to the ARN and AWS_ENDPOINT_URL pointing at moto. Its `main` asks
huggingface_hub for a model's info from a local HTTP server that records the Authorization header, so the test sees
what huggingface_hub sends, not what tunec set. Every output of the process is searched for the marker value.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import boto3
import pytest

from tinyllm import SCRIPTS

MARKER = "hf_SecretMarkerValue0123456789abcdefgh"
REGION = "us-east-1"

# The process: run_entry reads the secret before main; main makes one Hub call through huggingface_hub.
PROGRAM = """
import os, sys
if os.environ.get("BLOCK_BOTO3"):
    sys.modules["boto3"] = None  # as in an image without boto3
from tunec_entry.failure import configure_logging, run_entry
import huggingface_hub

def main():
    configure_logging()
    huggingface_hub.HfApi(endpoint=os.environ["HUB"]).model_info("org/gated")
    return 0

sys.exit(run_entry(main, os.environ))
"""


class Hub(BaseHTTPRequestHandler):
    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        Hub.seen.append(self.headers.get("Authorization"))
        body = json.dumps({"id": "org/gated", "modelId": "org/gated", "sha": "0" * 40, "siblings": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hub() -> Iterator[str]:
    Hub.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def secrets_client(moto_url: str):
    return boto3.client(
        "secretsmanager",
        endpoint_url=moto_url,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def create_secret(moto_url: str, value: str) -> str:
    return secrets_client(moto_url).create_secret(Name=f"hub/token-{uuid.uuid4().hex[:8]}", SecretString=value)["ARN"]


def run(moto_url: str, hub: str, tmp_path: Path, arn: str, **extra: str) -> tuple[subprocess.CompletedProcess, str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "HF_HOME": str(tmp_path / "hf"),
        "PYTHONPATH": str(SCRIPTS),
        "SM_OUTPUT_DIR": str(tmp_path / "output"),
        "TUNEC_HF_TOKEN_SECRET": arn,
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "HUB": hub,
        **extra,
    }
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], env=env, cwd=SCRIPTS, capture_output=True, text=True, timeout=120
    )
    failure = tmp_path / "output" / "failure"
    return done, failure.read_text() if failure.exists() else ""


def assert_nowhere(marker: str, *texts: str, folder: Path | None = None) -> None:
    for text in texts:
        assert marker not in text
    if folder is not None:
        for path in folder.rglob("*"):
            if path.is_file():
                assert marker.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("stored", [MARKER, json.dumps({"HF_TOKEN": MARKER, "note": "key/value form"})])
def test_the_job_reads_the_token_with_its_credentials_and_huggingface_hub_sends_it(
    moto_url: str, hub: str, tmp_path: Path, stored: str
) -> None:
    arn = create_secret(moto_url, stored)
    done, failure = run(moto_url, hub, tmp_path, arn)
    assert done.returncode == 0, done.stdout + done.stderr
    assert Hub.seen == [f"Bearer {MARKER}"], "huggingface_hub sent the secret's token"
    assert f"read the Hub token from Secrets Manager ({arn})" in done.stderr
    assert failure == ""
    assert_nowhere(MARKER, done.stdout, done.stderr, folder=tmp_path)


def test_without_a_secret_nothing_is_read_and_no_token_is_sent(moto_url: str, hub: str, tmp_path: Path) -> None:
    done, _ = run(moto_url, hub, tmp_path, "", AWS_ENDPOINT_URL="http://127.0.0.1:9")
    assert done.returncode == 0, done.stdout + done.stderr
    assert Hub.seen == [None]


def test_a_secret_the_job_cannot_read_fails_the_job_with_the_reason(moto_url: str, hub: str, tmp_path: Path) -> None:
    arn = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:missing-AbCdEf"
    done, failure = run(moto_url, hub, tmp_path, arn)
    assert done.returncode == 1
    assert failure.startswith(f"cannot read the Hub token from Secrets Manager ({arn}): ResourceNotFoundException")
    assert Hub.seen == [], "main never ran"
    assert "Traceback" not in done.stderr


def test_a_json_secret_without_the_key_names_its_keys_not_its_values(moto_url: str, hub: str, tmp_path: Path) -> None:
    arn = create_secret(moto_url, json.dumps({"token": MARKER}))
    done, failure = run(moto_url, hub, tmp_path, arn)
    assert done.returncode == 1
    assert "without the key 'HF_TOKEN' (its keys: token)" in failure
    assert_nowhere(MARKER, done.stdout, done.stderr, folder=tmp_path)


def test_an_image_without_boto3_says_so(moto_url: str, hub: str, tmp_path: Path) -> None:
    arn = create_secret(moto_url, MARKER)
    done, failure = run(moto_url, hub, tmp_path, arn, BLOCK_BOTO3="1")
    assert done.returncode == 1
    assert "boto3, which reads it, is not installed in this training image" in failure
    assert Hub.seen == []
