"""The scripted SageMaker server (tests/aws/fake_sagemaker.py), driven by real boto3 clients.

Each test starts the server as a subprocess on a free port (found through its port file) and talks to it the way
an AWS SDK does, with retries off so that throttling and injected errors are seen. Models are written to a moto
server: $TUNEC_TEST_MOTO_URL when .ci/run started one, else one started here for the session. The last test
submits every CreateTrainingJob request that `tunec build` writes for examples/medreason, placeholders filled in.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from tinyllm import REPO, tunec_binary

SERVER = REPO / "tests" / "aws" / "fake_sagemaker.py"
ROLE = "arn:aws:iam::111122223333:role/TunecTest"
BUCKET = "tunec-fake-sagemaker"
CAPACITY = (
    "CapacityError: Unable to provision requested ML compute capacity. Please retry using a different ML instance type."
)
# botocore's "max_attempts" counts retries; "total_max_attempts" counts the first call too.
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})


def wait_until(check, what: str, timeout: float = 30.0, process: subprocess.Popen | None = None) -> Any:
    """Poll `check` every 20 ms until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {process.returncode}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).read()
        return True
    except (urllib.error.URLError, OSError):
        return False


def s3_client(moto_url: str):
    return boto3.client(
        "s3",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(s3={"addressing_style": "path"}),
    )


class Server:
    """One fake_sagemaker.py process, its port, and boto3 / plain-HTTP access to it."""

    def __init__(self, folder: Path, script: dict[str, Any] | None, s3_endpoint: str | None) -> None:
        self.folder = folder
        self.port_file = folder / "port"
        self.calls_log = folder / "calls.jsonl"
        self.stderr_path = folder / "stderr.log"
        args = [sys.executable, str(SERVER), "--host", "127.0.0.1", "--port", "0", "--port-file", str(self.port_file)]
        args += ["--calls-log", str(self.calls_log)]
        if script is not None:
            script_path = folder / "script.json"
            script_path.write_text(json.dumps(script), encoding="utf-8")
            args += ["--script", str(script_path)]
        if s3_endpoint is not None:
            args += ["--s3-endpoint", s3_endpoint]
        self.stderr = self.stderr_path.open("w")
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.stderr)
        text = wait_until(
            lambda: self.port_file.is_file() and self.port_file.read_text(encoding="utf-8"),
            "the port file",
            process=self.process,
        )
        self.port_text = text
        self.port = int(text)
        self.url = f"http://127.0.0.1:{self.port}"
        self.sm = boto3.client(
            "sagemaker",
            endpoint_url=self.url,
            region_name="us-west-2",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=NO_RETRIES,
        )

    def control(self, path: str, body: Any = None) -> tuple[int, Any]:
        """GET /_control/<path> without a body, POST with one: (HTTP status, JSON answer)."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(f"{self.url}/_control/{path}", data=data)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def calls(self) -> list[dict[str, Any]]:
        status, calls = self.control("calls")
        assert status == 200
        return calls

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self.stderr.close()
        return code


@pytest.fixture
def start(tmp_path: Path) -> Iterator:
    """start(script=None, s3=None) -> a running Server; every server is stopped with SIGTERM and must exit 0."""
    servers: list[Server] = []

    def _start(script: dict[str, Any] | None = None, s3: str | None = None) -> Server:
        folder = tmp_path / f"server{len(servers)}"
        folder.mkdir()
        servers.append(Server(folder, script, s3))
        return servers[-1]

    yield _start
    for server in servers:
        code = server.stop()
        assert code == 0, server.stderr_path.read_text(encoding="utf-8")


def request(name: str, **overrides: Any) -> dict[str, Any]:
    """A CreateTrainingJob request in the shape tunec lowers (docs/lowering.md §6), small."""
    out = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": "763104351884.dkr.ecr.us-west-2.amazonaws.com/huggingface-pytorch-training:2.8.0",
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["/bin/bash"],
            "ContainerArguments": ["-c", "cd /opt/ml/input/data/code && bash launch.sh train.py"],
        },
        "HyperParameters": {"config": "/opt/ml/input/data/config/args.yaml"},
        "RoleArn": ROLE,
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"s3://{BUCKET}/data/train/",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "InputMode": "File",
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output/sft/", "CompressionType": "GZIP"},
        "ResourceConfig": {"InstanceType": "ml.g5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "Environment": {"TUNEC_NODE": "sft"},
        "CheckpointConfig": {"S3Uri": f"s3://{BUCKET}/checkpoints/{name}/", "LocalPath": "/opt/ml/checkpoints"},
    }
    out.update(overrides)
    return out


def statuses(server: Server, name: str, polls: int) -> list[tuple[str, str]]:
    out = []
    for _ in range(polls):
        d = server.sm.describe_training_job(TrainingJobName=name)
        out.append((d["TrainingJobStatus"], d["SecondaryStatus"]))
    return out


def error_of(call, *args: Any, **kwargs: Any) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as e:
        call(*args, **kwargs)
    err = e.value.response
    return err["Error"]["Code"], err["Error"]["Message"], err["ResponseMetadata"]["HTTPStatusCode"]


# --------------------------------------------------------------------------------------------------- start-up


def test_the_port_file_holds_the_bound_port_and_sigterm_stops_the_server(start) -> None:
    server = start()
    assert re.fullmatch(r"[0-9]+\n", server.port_text)
    assert [p.name for p in server.folder.iterdir() if p.name.startswith(".")] == [], "a temporary port file is left"
    assert answers(server.url + "/_control/calls")
    assert server.stop() == 0
    assert "stopped" in server.stderr_path.read_text(encoding="utf-8")
    assert not answers(server.url + "/_control/calls")


def start_with_script(tmp_path: Path, script: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """The server started with `script` from a file, run until it exits (a refused script ends it at once)."""
    path = tmp_path / "script.json"
    path.write_text(json.dumps(script), encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(SERVER), "--port-file", str(tmp_path / "port"), "--script", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_bad_script_is_refused_at_start(tmp_path: Path) -> None:
    done = start_with_script(tmp_path, {"default": {"end": "Exploded"}})
    assert done.returncode == 2
    assert "end 'Exploded' is not one of" in done.stderr
    assert not (tmp_path / "port").exists()


# --------------------------------------------------------------------------------------------------- the wire format


def test_responses_use_the_awsjson11_wire_format(start) -> None:
    """What the Rust SDK is strict about: timestamps as epoch-second numbers, the error code in a header and body."""
    server = start({"default": {"polls": 1, "end": "Completed"}})

    def post(target: str, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
        req = urllib.request.Request(
            server.url + "/",
            data=json.dumps(body).encode("utf-8"),
            headers={"X-Amz-Target": f"SageMaker.{target}", "Content-Type": "application/x-amz-json-1.1"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, dict(r.headers), json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), json.loads(e.read())

    status, headers, body = post("CreateTrainingJob", request("wire-1"))
    assert status == 200
    assert headers["Content-Type"] == "application/x-amz-json-1.1"
    assert body == {"TrainingJobArn": "arn:aws:sagemaker:us-east-1:111122223333:training-job/wire-1"}
    for _ in range(2):
        status, _, body = post("DescribeTrainingJob", {"TrainingJobName": "wire-1"})
        assert status == 200
        for key in ("CreationTime", "LastModifiedTime"):
            assert isinstance(body[key], (int, float)) and not isinstance(body[key], bool), key
        for transition in body["SecondaryStatusTransitions"]:
            assert isinstance(transition["StartTime"], (int, float))
    assert body["TrainingJobStatus"] == "Completed"
    for key in ("TrainingStartTime", "TrainingEndTime"):
        assert isinstance(body[key], (int, float)), key
    assert isinstance(body["BillableTimeInSeconds"], int)

    status, headers, body = post("DescribeTrainingJob", {"TrainingJobName": "missing"})
    assert (status, headers["x-amzn-ErrorType"]) == (400, "ValidationException")
    assert body == {"__type": "ValidationException", "message": "Requested resource not found."}
    status, headers, body = post("DeleteTrainingJob", {"TrainingJobName": "wire-1"})
    assert (status, body["__type"], headers["x-amzn-ErrorType"]) == (400, "UnknownOperationException", body["__type"])
    # The call log says whether a request was SigV4-signed: these were not, boto3's are.
    server.sm.list_training_jobs()
    assert [c["signed"] for c in server.calls()][-2:] == [False, True]


# --------------------------------------------------------------------------------------------------- lifecycles


def test_a_job_completes_after_the_scripted_number_of_polls(start) -> None:
    server = start({"default": {"polls": 4, "end": "Completed"}})
    sent = request("tunec-sft-0001")
    arn = server.sm.create_training_job(**sent)["TrainingJobArn"]
    assert arn == "arn:aws:sagemaker:us-west-2:111122223333:training-job/tunec-sft-0001"  # the signing region
    seen = statuses(server, "tunec-sft-0001", 4)
    assert seen == [
        ("InProgress", "Starting"),
        ("InProgress", "Downloading"),
        ("InProgress", "Training"),
        ("InProgress", "Uploading"),
    ]
    d = server.sm.describe_training_job(TrainingJobName="tunec-sft-0001")
    assert (d["TrainingJobStatus"], d["SecondaryStatus"]) == ("Completed", "Completed")
    assert d["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://{BUCKET}/output/sft/tunec-sft-0001/output/model.tar.gz"
    assert "FailureReason" not in d
    for key in (
        "AlgorithmSpecification",
        "RoleArn",
        "ResourceConfig",
        "StoppingCondition",
        "HyperParameters",
        "Environment",
        "InputDataConfig",
        "OutputDataConfig",
        "CheckpointConfig",
    ):
        assert d[key] == sent[key], key
    assert d["CreationTime"] <= d["TrainingStartTime"] <= d["TrainingEndTime"]
    assert d["BillableTimeInSeconds"] >= 1
    assert [t["Status"] for t in d["SecondaryStatusTransitions"]] == [
        "Starting",
        "Downloading",
        "Training",
        "Uploading",
        "Completed",
    ]
    assert all("EndTime" in t for t in d["SecondaryStatusTransitions"])
    # A finished job stays finished.
    assert statuses(server, "tunec-sft-0001", 1) == [("Completed", "Completed")]


def test_scripted_seconds_are_what_a_completed_job_says_it_ran_and_billed(start) -> None:
    # A managed spot job bills less than it ran; an on-demand one bills what it ran.
    server = start(
        {
            "default": {"polls": 0, "seconds": {"training": 7200}},
            "jobs": [{"match": "spot", "attempts": [{"polls": 0, "seconds": {"training": 3600, "billable": 1260}}]}],
        }
    )
    for name in ("tunec-spot-0001", "tunec-sft-0002"):
        server.sm.create_training_job(**request(name))
    spot = server.sm.describe_training_job(TrainingJobName="tunec-spot-0001")
    plain = server.sm.describe_training_job(TrainingJobName="tunec-sft-0002")
    assert (spot["TrainingTimeInSeconds"], spot["BillableTimeInSeconds"]) == (3600, 1260)
    assert (plain["TrainingTimeInSeconds"], plain["BillableTimeInSeconds"]) == (7200, 7200)


def test_scripted_seconds_must_be_whole_positive_numbers(tmp_path: Path) -> None:
    done = start_with_script(tmp_path, {"default": {"seconds": {"billable": 0}}})
    assert done.returncode == 2
    assert "seconds is" in done.stderr


def test_attempts_are_consumed_by_successive_creates_of_matching_names(start) -> None:
    server = start(
        {
            "default": {"polls": 0, "end": "Completed"},
            "jobs": [
                {
                    "match": "-sft-",
                    "attempts": [
                        {"polls": 1, "end": "Failed", "failure_reason": CAPACITY},
                        {"polls": 2, "end": "Completed"},
                    ],
                }
            ],
        }
    )
    server.sm.create_training_job(**request("p-sft-a1"))
    server.sm.create_training_job(**request("p-merge-a1"))  # no entry matches: the default
    server.sm.create_training_job(**request("p-sft-a2"))
    server.sm.create_training_job(**request("p-sft-a3"))  # attempts used up: the default

    assert statuses(server, "p-sft-a1", 2) == [("InProgress", "Starting"), ("Failed", "Failed")]
    failed = server.sm.describe_training_job(TrainingJobName="p-sft-a1")
    assert failed["FailureReason"] == CAPACITY
    assert (
        "ModelArtifacts" not in failed and "TrainingStartTime" not in failed and "BillableTimeInSeconds" not in failed
    )
    assert failed["SecondaryStatusTransitions"][-1]["StatusMessage"] == CAPACITY
    assert statuses(server, "p-merge-a1", 1) == [("Completed", "Completed")]
    assert statuses(server, "p-sft-a2", 3) == [
        ("InProgress", "Starting"),
        ("InProgress", "Downloading"),
        ("Completed", "Completed"),
    ]
    assert statuses(server, "p-sft-a3", 1) == [("Completed", "Completed")]
    _, jobs = server.control("jobs")
    assert {j["name"]: j["scenario"] for j in jobs} == {
        "p-sft-a1": "jobs[0].attempts[0]",
        "p-merge-a1": "default",
        "p-sft-a2": "jobs[0].attempts[1]",
        "p-sft-a3": "default",
    }


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        (
            {"polls": 2, "end": "MaxRuntimeExceeded"},
            [
                ("InProgress", "Starting"),
                ("InProgress", "Downloading"),
                ("Stopping", "Stopping"),
                ("Stopped", "MaxRuntimeExceeded"),
            ],
        ),
        (
            {"polls": 3, "end": "Interrupted"},
            [
                ("InProgress", "Starting"),
                ("InProgress", "Downloading"),
                ("InProgress", "Interrupted"),
                ("Stopping", "Stopping"),
                ("Stopped", "MaxWaitTimeExceeded"),
            ],
        ),
        (
            {"polls": 1, "end": "MaxWaitTimeExceeded"},
            [("InProgress", "Starting"), ("Stopping", "Stopping"), ("Stopped", "MaxWaitTimeExceeded")],
        ),
        ({"polls": 0, "end": "Stopped"}, [("Stopping", "Stopping"), ("Stopped", "Stopped")]),
        (
            {"secondary": ["Starting", "Training", "Interrupted", "Starting", "Training"], "end": "Completed"},
            [("InProgress", s) for s in ["Starting", "Training", "Interrupted", "Starting", "Training"]]
            + [("Completed", "Completed")],
        ),
    ],
    ids=["max-runtime", "spot-interrupted", "max-wait", "stopped", "spot-resumed"],
)
def test_scripted_ends(start, scenario: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    server = start({"default": scenario})
    server.sm.create_training_job(**request("ends-1"))
    assert statuses(server, "ends-1", len(expected)) == expected
    final = server.sm.describe_training_job(TrainingJobName="ends-1")
    assert (final["TrainingJobStatus"], final["SecondaryStatus"]) == expected[-1]
    assert ("ModelArtifacts" in final) == (expected[-1][0] == "Completed")


def test_stop_moves_an_in_progress_job_to_stopping_then_stopped(start) -> None:
    server = start({"default": {"polls": 5, "end": "Completed"}})
    server.sm.create_training_job(**request("stop-1"))
    server.sm.create_training_job(**request("stop-2"))
    assert statuses(server, "stop-1", 2) == [("InProgress", "Starting"), ("InProgress", "Downloading")]
    server.sm.stop_training_job(TrainingJobName="stop-1")
    server.sm.stop_training_job(TrainingJobName="stop-2")  # before its first describe
    assert statuses(server, "stop-1", 3) == [("Stopping", "Stopping"), ("Stopped", "Stopped"), ("Stopped", "Stopped")]
    assert statuses(server, "stop-2", 2) == [("Stopping", "Stopping"), ("Stopped", "Stopped")]
    code, message, status = error_of(server.sm.stop_training_job, TrainingJobName="stop-1")
    assert (code, message, status) == (
        "ValidationException",
        "The request was rejected because the training job is in status Stopped.",
        400,
    )
    d = server.sm.describe_training_job(TrainingJobName="stop-1")
    assert "ModelArtifacts" not in d and "TrainingEndTime" in d


def test_stopping_a_finished_or_unknown_job_is_a_validation_error(start) -> None:
    server = start({"default": {"polls": 0, "end": "Completed"}})
    server.sm.create_training_job(**request("done-1"))
    assert statuses(server, "done-1", 1) == [("Completed", "Completed")]
    assert error_of(server.sm.stop_training_job, TrainingJobName="done-1")[:2] == (
        "ValidationException",
        "The request was rejected because the training job is in status Completed.",
    )
    assert error_of(server.sm.stop_training_job, TrainingJobName="never-created")[:2] == (
        "ValidationException",
        "Requested resource not found.",
    )


# --------------------------------------------------------------------------------------------------- errors


def test_a_duplicate_name_is_resource_in_use(start) -> None:
    server = start({"jobs": [{"match": "dup", "attempts": [{"polls": 0, "end": "Failed"}]}]})
    arn = server.sm.create_training_job(**request("dup-1"))["TrainingJobArn"]
    for name in ("dup-1", "DUP-1"):  # names are unique case-insensitively (ARNs are lower-case)
        code, message, status = error_of(server.sm.create_training_job, **request(name))
        assert (code, status) == ("ResourceInUse", 400)
        assert message == (
            "Training job names must be unique within an AWS account and region, and a training job with this name "
            f"already exists ({arn})."
        )
    # The refused creates did not replace the job or use an attempt.
    assert statuses(server, "dup-1", 1) == [("Failed", "Failed")]
    server.sm.create_training_job(**request("dup-2"))
    assert statuses(server, "dup-2", 3)[-1] == ("Completed", "Completed")


def test_describing_an_unknown_job_is_a_validation_error(start) -> None:
    server = start()
    assert error_of(server.sm.describe_training_job, TrainingJobName="nope") == (
        "ValidationException",
        "Requested resource not found.",
        400,
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"TrainingJobName": "bad_name"},
            "1 validation error detected: Value 'bad_name' at 'trainingJobName' failed to satisfy constraint: "
            "Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}",
        ),
        (
            {"TrainingJobName": "a" * 64},
            f"2 validation errors detected: Value '{'a' * 64}' at 'trainingJobName' failed to satisfy constraint: "
            "Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}; "
            f"Value '{'a' * 64}' at 'trainingJobName' failed to satisfy constraint: "
            "Member must have length less than or equal to 63",
        ),
        (
            {"AlgorithmSpecification": None, "StoppingCondition": None},
            "2 validation errors detected: Value null at 'algorithmSpecification' failed to satisfy constraint: "
            "Member must not be null; Value null at 'stoppingCondition' failed to satisfy constraint: "
            "Member must not be null",
        ),
        (
            {"ResourceConfig": None},
            "1 validation error detected: Value null at 'resourceConfig' failed to satisfy constraint: "
            "Member must not be null",
        ),
        (
            {"RoleArn": "${env:TUNEC_SAGEMAKER_ROLE}"},
            "1 validation error detected: Value '${env:TUNEC_SAGEMAKER_ROLE}' at 'roleArn' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: "
            "^arn:aws[a-z\\-]*:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+$",
        ),
        (
            {"OutputDataConfig": {"S3OutputPath": "${env:TUNEC_BUCKET}/out/"}},
            "1 validation error detected: Value '${env:TUNEC_BUCKET}/out/' at 'outputDataConfig.s3OutputPath' "
            "failed to satisfy constraint: Member must satisfy regular expression pattern: ^(https|s3)://([^/]+)/?(.*)$",
        ),
        (
            {"StoppingCondition": {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}},
            "Invalid MaxWaitTimeInSeconds. It is only supported when EnableManagedSpotTraining is set to true",
        ),
    ],
    ids=["name-pattern", "name-length", "missing-members", "missing-resources", "role", "output", "max-wait"],
)
def test_create_validates_like_the_service(start, change: dict[str, Any], expected: str) -> None:
    server = start()
    sent = {k: v for k, v in {**request("valid-1"), **change}.items() if v is not None}
    assert error_of(server.sm.create_training_job, **sent) == ("ValidationException", expected, 400)
    assert server.sm.list_training_jobs()["TrainingJobSummaries"] == []


def test_throttling_bursts_fail_the_first_calls_and_change_nothing(start) -> None:
    server = start({"default": {"polls": 1}, "throttle": {"CreateTrainingJob": 2, "DescribeTrainingJob": 1}})
    for _ in range(2):
        assert error_of(server.sm.create_training_job, **request("thr-1")) == (
            "ThrottlingException",
            "Rate exceeded.",
            400,
        )
    server.sm.create_training_job(**request("thr-1"))
    assert error_of(server.sm.describe_training_job, TrainingJobName="thr-1")[0] == "ThrottlingException"
    assert statuses(server, "thr-1", 2) == [("InProgress", "Starting"), ("Completed", "Completed")]
    outcomes = [(c["operation"], c["outcome"]) for c in server.calls()]
    assert outcomes == [
        ("CreateTrainingJob", "ThrottlingException"),
        ("CreateTrainingJob", "ThrottlingException"),
        ("CreateTrainingJob", "ok"),
        ("DescribeTrainingJob", "ThrottlingException"),
        ("DescribeTrainingJob", "ok"),
        ("DescribeTrainingJob", "ok"),
    ]


def test_a_default_boto3_client_retries_through_a_throttling_burst(start) -> None:
    server = start({"throttle": {"CreateTrainingJob": 2}})
    retrying = boto3.client(
        "sagemaker",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 3, "mode": "standard"}),
    )
    assert retrying.create_training_job(**request("thr-2"))["TrainingJobArn"].endswith("/thr-2")
    assert [c["outcome"] for c in server.calls()] == ["ThrottlingException", "ThrottlingException", "ok"]


def test_scripted_errors_fail_matching_calls_a_given_number_of_times(start) -> None:
    server = start(
        {
            "errors": [
                {"operation": "CreateTrainingJob", "match": "merge", "code": "ResourceLimitExceeded", "times": 1},
                {"operation": "DescribeTrainingJob", "code": "AccessDeniedException", "times": 2},
                {"operation": "ListTrainingJobs", "code": "InternalFailure"},
            ]
        }
    )
    code, message, status = error_of(server.sm.create_training_job, **request("x-merge-1"))
    assert (code, status) == ("ResourceLimitExceeded", 400)
    assert message.startswith("The account-level service limit")
    server.sm.create_training_job(**request("x-sft-1"))  # no match: not affected
    server.sm.create_training_job(**request("x-merge-1"))  # the rule is used up
    for _ in range(2):
        code, message, _ = error_of(server.sm.describe_training_job, TrainingJobName="x-sft-1")
        assert code == "AccessDeniedException"
        assert message.endswith("is not authorized to perform: sagemaker:DescribeTrainingJob")
    assert statuses(server, "x-sft-1", 1) == [("InProgress", "Starting")]
    assert error_of(server.sm.list_training_jobs)[::2] == ("InternalFailure", 500)


def test_a_dropped_reply_leaves_the_job_created_and_a_retry_finds_it_in_use(start) -> None:
    server = start({"replies": [{"operation": "CreateTrainingJob", "match": "-sft-", "fault": "drop"}]})
    server.sm.create_training_job(**request("x-merge-1"))  # no match: answered
    with pytest.raises((EndpointConnectionError, ConnectionClosedError)):
        server.sm.create_training_job(**request("x-sft-1"))
    # The job was created before the connection was reset, and the rule is used up.
    assert server.sm.describe_training_job(TrainingJobName="x-sft-1")["TrainingJobStatus"] == "InProgress"
    code, message, _ = error_of(server.sm.create_training_job, **request("x-sft-1"))
    assert code == "ResourceInUse" and "already exists" in message
    server.sm.create_training_job(**request("x-sft-2"))
    creates = [
        (c["job"], c["outcome"], c.get("fault")) for c in server.calls() if c["operation"] == "CreateTrainingJob"
    ]
    assert creates == [
        ("x-merge-1", "ok", None),
        ("x-sft-1", "ok", "drop"),
        ("x-sft-1", "ResourceInUse", None),
        ("x-sft-2", "ok", None),
    ]


def test_a_held_reply_is_logged_before_it_is_sent(start) -> None:
    server = start({"replies": [{"operation": "CreateTrainingJob", "fault": "hold", "seconds": 1.5}]})
    answer: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: answer.update(server.sm.create_training_job(**request("held-1"))))
    started = time.monotonic()
    thread.start()
    # The call log and the job show the create while the client still waits for its reply.
    logged = wait_until(lambda: [c for c in server.calls() if c["operation"] == "CreateTrainingJob"], "the create")
    assert thread.is_alive() and not answer
    assert (logged[0]["outcome"], logged[0]["fault"]) == ("ok", "hold")
    assert server.control("jobs")[1][0]["name"] == "held-1"
    thread.join(timeout=30)
    assert time.monotonic() - started >= 1.5
    assert answer["TrainingJobArn"].endswith(":training-job/held-1")
    # Only the first create is held.
    started = time.monotonic()
    server.sm.create_training_job(**request("held-2"))
    assert time.monotonic() - started < 1.5
    status, body = server.control("script", {"replies": [{"operation": "CreateTrainingJob", "fault": "lose"}]})
    assert status == 400 and "a 'fault' of hold or drop" in body["message"]


# --------------------------------------------------------------------------------------------------- S3 outputs


def test_a_completed_job_writes_its_model_to_moto_and_leaves_checkpoints_alone(start, moto_url: str) -> None:
    s3 = s3_client(moto_url)
    bucket = f"{BUCKET}-{os.getpid()}-{time.monotonic_ns()}"
    s3.create_bucket(Bucket=bucket)
    server = start({"default": {"polls": 1}}, s3=moto_url)
    gz = request("model-gz", OutputDataConfig={"S3OutputPath": f"s3://{bucket}/output/sft/"})
    gz["CheckpointConfig"] = {"S3Uri": f"s3://{bucket}/checkpoints/sft/", "LocalPath": "/opt/ml/checkpoints"}
    server.sm.create_training_job(**gz)
    assert statuses(server, "model-gz", 1) == [("InProgress", "Starting")]
    key = "output/sft/model-gz/output/model.tar.gz"
    assert s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount") == 0, "written before the job completed"
    d = server.sm.describe_training_job(TrainingJobName="model-gz")
    assert d["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://{bucket}/{key}"
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        assert tar.getnames() == ["adapter/README"]
        assert "model-gz" in tar.extractfile("adapter/README").read().decode("utf-8")
    assert s3.list_objects_v2(Bucket=bucket, Prefix="checkpoints/").get("KeyCount") == 0

    # CompressionType NONE: the files, uncompressed, under a model/ prefix, which is then S3ModelArtifacts.
    plain = request(
        "model-plain", OutputDataConfig={"S3OutputPath": f"s3://{bucket}/output/sft", "CompressionType": "NONE"}
    )
    server.sm.create_training_job(**plain)
    assert statuses(server, "model-plain", 2)[-1] == ("Completed", "Completed")
    d = server.sm.describe_training_job(TrainingJobName="model-plain")
    assert d["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://{bucket}/output/sft/model-plain/output/model/"
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="output/sft/model-plain/")
    assert [o["Key"] for o in listed["Contents"]] == [
        "output/sft/model-plain/output/model/adapter/README",
        "output/sft/model-plain/output/output.tar.gz",
    ]

    # The output data, always an archive: empty unless the scenario says what the script wrote there.
    for name in ("model-gz", "model-plain"):
        body = s3.get_object(Bucket=bucket, Key=f"output/sft/{name}/output/output.tar.gz")["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
            assert tar.getnames() == []
    script = {"default": {"polls": 1, "output_data": {"report.json": '{"metrics": {}}'}}}
    assert server.control("script", script)[0] == 200
    server.sm.create_training_job(**request("data", OutputDataConfig={"S3OutputPath": f"s3://{bucket}/output/ev"}))
    assert statuses(server, "data", 2)[-1] == ("Completed", "Completed")
    body = s3.get_object(Bucket=bucket, Key="output/ev/data/output/output.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        assert tar.getnames() == ["report.json"]
        assert tar.extractfile("report.json").read() == b'{"metrics": {}}'


def test_scripted_artifacts_and_an_unwritable_output_bucket(start, moto_url: str) -> None:
    s3 = s3_client(moto_url)
    bucket = f"{BUCKET}-art-{os.getpid()}-{time.monotonic_ns()}"
    s3.create_bucket(Bucket=bucket)
    artifacts = {"adapter/adapter_config.json": '{"r": 8}', "adapter/README": "scripted"}
    server = start(
        {"jobs": [{"match": "art", "attempts": [{"polls": 0, "artifacts": artifacts}]}], "default": {"polls": 0}},
        s3=moto_url,
    )
    out = f"s3://{bucket}/out"
    server.sm.create_training_job(**request("art-1", OutputDataConfig={"S3OutputPath": out, "CompressionType": "NONE"}))
    assert statuses(server, "art-1", 1) == [("Completed", "Completed")]
    prefix = "out/art-1/output/model/"
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
    assert sorted(o["Key"][len(prefix) :] for o in listed) == sorted(artifacts)
    assert s3.get_object(Bucket=bucket, Key=prefix + "adapter/adapter_config.json")["Body"].read() == b'{"r": 8}'

    missing = "s3://tunec-no-such-bucket-here/out"
    server.sm.create_training_job(**request("lost-1", OutputDataConfig={"S3OutputPath": missing}))
    d = server.sm.describe_training_job(TrainingJobName="lost-1")
    assert (d["TrainingJobStatus"], d["SecondaryStatus"]) == ("Failed", "Failed")
    assert d["FailureReason"].startswith(f"ClientError: Failed to upload model artifacts to {missing}/lost-1/")
    assert "NoSuchBucket" in d["FailureReason"]
    assert "ModelArtifacts" not in d


# --------------------------------------------------------------------------------------------------- control


def test_control_endpoints_and_the_calls_log(start) -> None:
    server = start({"default": {"polls": 3}})
    server.sm.create_training_job(**request("ctl-1"))
    server.sm.describe_training_job(TrainingJobName="ctl-1")
    error_of(server.sm.describe_training_job, TrainingJobName="ctl-missing")
    calls = server.calls()
    assert [(c["seq"], c["operation"], c["job"], c["outcome"], c["status"]) for c in calls] == [
        (1, "CreateTrainingJob", "ctl-1", "ok", 200),
        (2, "DescribeTrainingJob", "ctl-1", "ok", 200),
        (3, "DescribeTrainingJob", "ctl-missing", "ValidationException", 400),
    ]
    assert calls[1]["detail"] == "InProgress/Starting"
    assert calls[0]["time"] <= calls[1]["time"] <= calls[2]["time"]
    logged = [json.loads(line) for line in server.calls_log.read_text(encoding="utf-8").splitlines()]
    assert logged == calls

    status, jobs = server.control("jobs")
    assert status == 200 and [j["name"] for j in jobs] == ["ctl-1"]
    assert jobs[0]["request"] == request("ctl-1")
    assert jobs[0]["steps"][-1] == ["Completed", "Completed"]

    # A new script applies to the next creates; the job made under the old one keeps its steps.
    status, body = server.control("script", {"default": {"polls": 0, "end": "Failed", "failure_reason": "boom"}})
    assert status == 200 and body["script"]["default"]["end"] == "Failed"
    server.sm.create_training_job(**request("ctl-2"))
    assert server.sm.describe_training_job(TrainingJobName="ctl-2")["FailureReason"] == "boom"
    assert statuses(server, "ctl-1", 3)[-1] == ("Completed", "Completed")
    status, body = server.control("script", {"throttle": {"DeleteEverything": 1}})
    assert status == 400 and "unknown operation" in body["message"]

    status, _ = server.control("reset", {})
    assert status == 200
    assert server.calls() == []
    assert error_of(server.sm.describe_training_job, TrainingJobName="ctl-1")[1] == "Requested resource not found."
    server.sm.create_training_job(**request("ctl-1"))  # the name is free again
    assert server.sm.describe_training_job(TrainingJobName="ctl-1")["FailureReason"] == "boom"  # script kept


def test_list_training_jobs_filters_sorts_and_pages(start) -> None:
    server = start({"default": {"polls": 0}, "jobs": [{"match": "fail", "attempts": [{"polls": 0, "end": "Failed"}]}]})
    for name in ("list-a", "list-fail", "other-c"):
        server.sm.create_training_job(**request(name))
    server.sm.describe_training_job(TrainingJobName="list-fail")
    page = server.sm.list_training_jobs(NameContains="list-", MaxResults=1)
    assert [s["TrainingJobName"] for s in page["TrainingJobSummaries"]] == ["list-a"]
    page = server.sm.list_training_jobs(NameContains="list-", MaxResults=1, NextToken=page["NextToken"])
    assert [s["TrainingJobName"] for s in page["TrainingJobSummaries"]] == ["list-fail"]
    assert "NextToken" not in page
    failed = server.sm.list_training_jobs(StatusEquals="Failed")["TrainingJobSummaries"]
    assert [(s["TrainingJobName"], s["TrainingJobStatus"]) for s in failed] == [("list-fail", "Failed")]
    names = [
        s["TrainingJobName"]
        for s in server.sm.list_training_jobs(SortBy="Name", SortOrder="Descending")["TrainingJobSummaries"]
    ]
    assert names == ["other-c", "list-fail", "list-a"]


# --------------------------------------------------------------------------------------------------- tunec's requests


def fill_placeholders(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return re.sub(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: values[m.group(1)], value)
    if isinstance(value, list):
        return [fill_placeholders(v, values) for v in value]
    if isinstance(value, dict):
        return {k: fill_placeholders(v, values) for k, v in value.items()}
    return value


def test_every_request_tunec_builds_is_accepted(start, tmp_path: Path) -> None:
    out = tmp_path / "build"
    done = subprocess.run(
        [tunec_binary(), "build", str(REPO / "examples/medreason/medreason.tune"), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    values = {
        "TUNEC_BUCKET": f"s3://{BUCKET}",
        "TUNEC_SAGEMAKER_ROLE": ROLE,
        "HF_TOKEN": "hf_test_token",
        "TUNEC_HF_TOKEN_SECRET": "arn:aws:secretsmanager:us-east-1:111122223333:secret:hub-token-Ab12Cd",
    }
    assert set(manifest["env"]) <= set(values), "a placeholder this test has no value for"
    requests = sorted(out.glob("*/request.json"))
    assert len(requests) >= 3, "expected the train, merge and evaluate requests"

    server = start({"default": {"polls": 0}})
    for path in requests:
        raw = json.loads(path.read_text(encoding="utf-8"))
        # As written, with placeholders, the service refuses it (so the runtime must fill them in first).
        code, message, _ = error_of(server.sm.create_training_job, **raw)
        assert code == "ValidationException" and "${env:" in message, path
        sent = fill_placeholders(raw, values)
        assert "${env:" not in json.dumps(sent)
        arn = server.sm.create_training_job(**sent)["TrainingJobArn"]
        assert arn.endswith("/" + sent["TrainingJobName"].lower()), path
        d = server.sm.describe_training_job(TrainingJobName=sent["TrainingJobName"])
        assert d["TrainingJobStatus"] == "Completed"
        assert d["RoleArn"] == ROLE and d["OutputDataConfig"] == sent["OutputDataConfig"]
        expected_model = sent["OutputDataConfig"]["S3OutputPath"].rstrip("/") + f"/{sent['TrainingJobName']}/output/"
        assert d["ModelArtifacts"]["S3ModelArtifacts"].startswith(expected_model)
    _, jobs = server.control("jobs")
    assert len(jobs) == len(requests)
