#!/usr/bin/env python3
"""A scripted SageMaker training-job server for tests: the four training-job operations, over the real wire protocol.

moto (the local AWS server the tests use for S3) finishes every training job at once, accepts duplicate names and
has no StopTrainingJob, so lifecycles, stops and faults are tested against this server instead. Point an AWS SDK at
it with `AWS_ENDPOINT_URL_SAGEMAKER=http://127.0.0.1:<port>` (any credentials; signatures are not checked).

Protocol (awsJson1_1, as every AWS SDK speaks it to SageMaker): `POST /` with `X-Amz-Target: SageMaker.<Operation>`,
`Content-Type: application/x-amz-json-1.1` and a JSON body. Success is HTTP 200 with a JSON body; timestamps are
epoch seconds as JSON numbers. An error is HTTP 400 (or the status a script names) with the body
`{"__type": "<Code>", "message": "<text>"}` and the header `x-amzn-ErrorType: <Code>`: botocore reads the code from
`__type`, the Rust SDK from the header first, then `code`, then `__type`; both read the message from `message`.

Operations:
- CreateTrainingJob: checks the name (pattern and length), the members the service needs (AlgorithmSpecification,
  RoleArn, OutputDataConfig.S3OutputPath, ResourceConfig, StoppingCondition), the RoleArn and S3 URI patterns (so an
  unresolved `${env:NAME}` placeholder is refused, as the service would) and MaxWaitTimeInSeconds without spot, with
  the service's `1 validation error detected: Value ... at '...' failed to satisfy constraint: ...` messages.
  A name already used (case-insensitively, as ARNs are lower-case) gives `ResourceInUse`. Returns `TrainingJobArn`.
- DescribeTrainingJob: an unknown name gives `ValidationException` "Requested resource not found." Otherwise the
  whole job, which moves one scripted step per call (below).
- StopTrainingJob: an InProgress job shows Stopping on the next describe and Stopped (secondary Stopped) after that;
  any other status gives `ValidationException` "The request was rejected because the training job is in status X."
- ListTrainingJobs: NameContains, StatusEquals, SortBy (CreationTime|Name|Status), SortOrder, MaxResults, NextToken.

Lifecycle script (`--script FILE`, or `POST /_control/script` with the JSON as body):

    {
      "default": {"polls": 2, "end": "Completed"},
      "jobs": [
        {"match": "sft", "attempts": [
          {"polls": 1, "end": "Failed",
           "failure_reason": "CapacityError: Unable to provision requested ML compute capacity. ..."},
          {"polls": 3, "end": "Completed"}]}],
      "throttle": {"CreateTrainingJob": 2, "DescribeTrainingJob": 0},
      "errors": [{"operation": "CreateTrainingJob", "match": "merge", "code": "ResourceLimitExceeded",
                  "message": "The account-level service limit ...", "times": 1, "status": 400}]
    }

- A scenario is `{"polls": N, "end": END, "failure_reason": TEXT, "secondary": [...], "artifacts": {PATH: TEXT},
  "output_data": {PATH: TEXT}}`.
  `polls` (default 2) is how many DescribeTrainingJob calls show InProgress before the end shows; their secondary
  statuses are Starting, Downloading, then Training, with Uploading last before Completed when polls >= 4, unless
  `secondary` lists them one per poll (it then replaces `polls`). END is one of
    Completed            -> Completed / Completed, with ModelArtifacts (absent before; written to S3 when
                            --s3-endpoint is given)
    Failed               -> Failed / Failed, FailureReason = failure_reason (default an AlgorithmError)
    Stopped              -> Stopping / Stopping, then Stopped / Stopped
    MaxRuntimeExceeded   -> Stopping / Stopping, then Stopped / MaxRuntimeExceeded
    MaxWaitTimeExceeded  -> Stopping / Stopping, then Stopped / MaxWaitTimeExceeded
    Interrupted          -> the last InProgress poll shows secondary Interrupted, then as MaxWaitTimeExceeded
  That is what AWS documents for managed spot training ("Managed Spot Training Lifecycle",
  docs.aws.amazon.com/sagemaker/latest/dg/model-managed-spot-training-status.html): an interruption is the
  secondary status Interrupted *inside* InProgress (the job then goes back to Starting and resumes), and a spot job
  that runs out of MaxWaitTimeInSeconds ends Stopping -> Stopped with secondary MaxWaitTimeExceeded; botocore's
  service model lists Interrupted under InProgress and MaxWaitTimeExceeded under Stopped. An interruption that is
  resumed is scripted with `secondary`, e.g. ["Starting", "Training", "Interrupted", "Starting", "Training"].
- `jobs`: the first entry whose `match` (a Python regular expression, searched in TrainingJobName) matches a created
  job gives it its next unused attempt; once an entry's attempts are used up, and for names no entry matches, the job
  gets `default` (which itself defaults to {"polls": 2, "end": "Completed"}). Refused creates use no attempt.
- `throttle`: the first N calls of an operation fail with `ThrottlingException` "Rate exceeded." (nothing changes).
- `errors`: the first `times` (default 1) calls of `operation` whose job name matches `match` (default: any) fail
  with `code` and `message` (default messages for AccessDeniedException, ResourceLimitExceeded,
  InternalFailure and ServiceUnavailable) and HTTP `status` (default 400; 500/503 for the last two).
- `replies`: faults *after* a call has done its work, for the window where a client cannot know whether it did:
  `{"operation": "CreateTrainingJob", "match": "-sft-", "fault": "hold" | "drop", "seconds": 60, "times": 1}`. The
  first `times` (default 1) successful calls of `operation` whose job name matches `match` (default: any) are logged
  (with `"fault"` in the log entry) as soon as they are done, and then their reply is held for `seconds` (default
  60) before it is sent (`hold`: a test kills the client while it waits), or never sent: the connection is reset
  (`drop`: TCP RST, as a lost reply looks to the client). The job exists either way, so a retried create gives
  `ResourceInUse`.
- Loading a script (at start or by POST) restarts the attempt, throttle, error and reply counters; jobs are kept.

On Completed, with `--s3-endpoint URL`, the model is written to S3 with boto3 (credentials test/test, path-style,
the job's region): `<S3OutputPath>/<job>/output/model.tar.gz`, a gzipped tar of the scenario's `artifacts` (default
one file `adapter/README`), or, when OutputDataConfig.CompressionType is NONE, the same files uncompressed under
`<S3OutputPath>/<job>/output/model/` (then S3ModelArtifacts is that prefix); and the output data,
`<S3OutputPath>/<job>/output/output.tar.gz`, a gzipped tar of the scenario's `output_data` (default empty, as for a
script that wrote nothing to /opt/ml/output/data). If the upload fails, the job ends
Failed with a ClientError FailureReason, as a real job whose output bucket is unusable would. The checkpoint prefix
(CheckpointConfig.S3Uri) is left alone: the training script writes it, not the platform.

Control endpoints (plain HTTP, no signing): `GET /_control/calls` (the call log: seq, time, operation, job, outcome,
status, detail, and fault for a held or dropped reply), `GET /_control/jobs` (every job: the request as received, its
status and steps), `POST /_control/script` (replace the script), `POST /_control/reset` (forget jobs, calls and
counters; keep the script). Every call is also appended as a JSON line to `--calls-log FILE` when given.

Start-up: `python3 tests/aws/fake_sagemaker.py --host 127.0.0.1 --port 0 --port-file PATH [--script FILE]
[--s3-endpoint URL] [--calls-log FILE] [--region us-east-1] [--account 123456789012]`. The port file is written
atomically (temporary file + rename) once the socket is bound, holding the port number and a newline; logs go to
stderr; SIGTERM and SIGINT shut it down cleanly with exit status 0.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import socket
import struct
import sys
import tarfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

JOB_NAME_PATTERN = "^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
ROLE_ARN_PATTERN = r"^arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$"
S3_URI_PATTERN = r"^(https|s3)://([^/]+)/?(.*)$"
ENDS = ("Completed", "Failed", "Stopped", "MaxRuntimeExceeded", "MaxWaitTimeExceeded", "Interrupted")
OPERATIONS = ("CreateTrainingJob", "DescribeTrainingJob", "StopTrainingJob", "ListTrainingJobs")
DEFAULT_SCENARIO = {"polls": 2, "end": "Completed"}
DEFAULT_FAILURE = "AlgorithmError: the training script exited with a non-zero status (scripted failure)"
DEFAULT_ERRORS = {
    "AccessDeniedException": (
        400,
        "User: arn:aws:sts::123456789012:assumed-role/test/test is not authorized to perform: sagemaker:{op}",
    ),
    "ResourceLimitExceeded": (
        400,
        "The account-level service limit 'ml.p4d.24xlarge for training job usage' is 0 Instances, with current "
        "utilization of 0 Instances and a request delta of 1 Instances. Please use AWS Service Quotas to request "
        "an increase for this quota.",
    ),
    "InternalFailure": (500, "An internal error occurred."),
    "ServiceUnavailable": (503, "Service is unavailable."),
}


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def log(message: str) -> None:
    print(f"fake_sagemaker: {message}", file=sys.stderr, flush=True)


def now() -> float:
    return round(time.time(), 3)


# --------------------------------------------------------------------------------------------------- the script


def targz(files: dict[str, str], mtime: float) -> bytes:
    """A gzipped tar of `files` (path -> text), as SageMaker packs a job's model and output data."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path, text in sorted(files.items()):
            data = text.encode("utf-8")
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = int(mtime)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def check_scenario(scenario: Any, where: str) -> dict[str, Any]:
    if not isinstance(scenario, dict):
        raise ValueError(f"{where}: a scenario is an object")
    unknown = set(scenario) - {"polls", "end", "failure_reason", "secondary", "artifacts", "output_data"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    end = scenario.get("end", "Completed")
    if end not in ENDS:
        raise ValueError(f"{where}: end {end!r} is not one of {', '.join(ENDS)}")
    polls = scenario.get("polls", 2)
    if not isinstance(polls, int) or polls < 0:
        raise ValueError(f"{where}: polls is a whole number >= 0")
    secondary = scenario.get("secondary")
    if secondary is not None and not (isinstance(secondary, list) and all(isinstance(s, str) for s in secondary)):
        raise ValueError(f"{where}: secondary is a list of strings")
    for files in ("artifacts", "output_data"):
        value = scenario.get(files)
        if value is not None and not (isinstance(value, dict) and all(isinstance(v, str) for v in value.values())):
            raise ValueError(f"{where}: {files} maps file paths to text")
    return {**DEFAULT_SCENARIO, **scenario}


def check_script(script: Any) -> dict[str, Any]:
    """The script with defaults filled in; ValueError says what is wrong."""
    if not isinstance(script, dict):
        raise ValueError("the script is a JSON object")
    unknown = set(script) - {"default", "jobs", "throttle", "errors", "replies"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    out: dict[str, Any] = {"default": check_scenario(script.get("default", {}), "default"), "jobs": []}
    for i, entry in enumerate(script.get("jobs", [])):
        if not isinstance(entry, dict) or not isinstance(entry.get("match"), str):
            raise ValueError(f"jobs[{i}]: needs a 'match' regular expression")
        re.compile(entry["match"])
        attempts = entry.get("attempts", [])
        if not isinstance(attempts, list):
            raise ValueError(f"jobs[{i}].attempts is a list")
        out["jobs"].append(
            {
                "match": entry["match"],
                "attempts": [check_scenario(a, f"jobs[{i}].attempts[{j}]") for j, a in enumerate(attempts)],
            }
        )
    throttle = script.get("throttle", {})
    if not isinstance(throttle, dict) or not all(isinstance(n, int) and n >= 0 for n in throttle.values()):
        raise ValueError("throttle maps operation names to counts")
    for op in throttle:
        if op not in OPERATIONS:
            raise ValueError(f"throttle: unknown operation {op!r}")
    out["throttle"] = dict(throttle)
    errors = []
    for i, rule in enumerate(script.get("errors", [])):
        if (
            not isinstance(rule, dict)
            or rule.get("operation") not in OPERATIONS
            or not isinstance(rule.get("code"), str)
        ):
            raise ValueError(f"errors[{i}]: needs an 'operation' of {OPERATIONS} and a 'code'")
        status, message = DEFAULT_ERRORS.get(rule["code"], (400, f"Scripted {rule['code']}."))
        errors.append(
            {
                "operation": rule["operation"],
                "match": rule.get("match"),
                "code": rule["code"],
                "message": rule.get("message", message.replace("{op}", rule["operation"])),
                "times": int(rule.get("times", 1)),
                "status": int(rule.get("status", status)),
            }
        )
        if errors[-1]["match"] is not None:
            re.compile(errors[-1]["match"])
    out["errors"] = errors
    replies = []
    for i, rule in enumerate(script.get("replies", [])):
        if (
            not isinstance(rule, dict)
            or rule.get("operation") not in OPERATIONS
            or rule.get("fault") not in ("hold", "drop")
            or not set(rule) <= {"operation", "match", "fault", "seconds", "times"}
        ):
            raise ValueError(
                f"replies[{i}]: needs an 'operation' of {OPERATIONS} and a 'fault' of hold or drop "
                "(and optionally 'match', 'seconds', 'times')"
            )
        if rule.get("match") is not None:
            re.compile(rule["match"])
        replies.append(
            {
                "operation": rule["operation"],
                "match": rule.get("match"),
                "fault": rule["fault"],
                "seconds": float(rule.get("seconds", 60)),
                "times": int(rule.get("times", 1)),
            }
        )
    out["replies"] = replies
    return out


# --------------------------------------------------------------------------------------------------- a job


def inprogress_secondaries(scenario: dict[str, Any]) -> list[str]:
    if scenario.get("secondary") is not None:
        seq = list(scenario["secondary"])
    else:
        polls = scenario["polls"]
        seq = [("Starting", "Downloading")[i] if i < 2 else "Training" for i in range(polls)]
        if scenario["end"] == "Completed" and polls >= 4:
            seq[-1] = "Uploading"
    if scenario["end"] == "Interrupted":
        if seq:
            seq[-1] = "Interrupted"
        else:
            seq = ["Interrupted"]
    return seq


STATUS_MESSAGES = {
    "Starting": "Preparing the instances for training",
    "Pending": "Waiting for capacity",
    "Downloading": "Downloading input data",
    "Training": "Training image download completed. Training in progress.",
    "Interrupted": "Spot instances were interrupted",
    "Uploading": "Uploading generated training model",
    "Completed": "Training job completed",
    "Stopping": "Stopping the training job",
    "Stopped": "Training job stopped",
    "MaxRuntimeExceeded": "Training job reached the MaxRuntimeInSeconds limit and was stopped",
    "MaxWaitTimeExceeded": "Training job reached the MaxWaitTimeInSeconds limit and was stopped",
}


def plan_steps(scenario: dict[str, Any]) -> list[tuple[str, str]]:
    """(TrainingJobStatus, SecondaryStatus) shown by successive DescribeTrainingJob calls; the last one repeats."""
    steps = [("InProgress", s) for s in inprogress_secondaries(scenario)]
    end = scenario["end"]
    if end == "Completed":
        steps.append(("Completed", "Completed"))
    elif end == "Failed":
        steps.append(("Failed", "Failed"))
    else:
        final = {"Stopped": "Stopped", "Interrupted": "MaxWaitTimeExceeded"}.get(end, end)
        steps += [("Stopping", "Stopping"), ("Stopped", final)]
    return steps


class Job:
    def __init__(self, request: dict[str, Any], arn: str, region: str, scenario: dict[str, Any], attempt: str) -> None:
        self.request = request
        self.name: str = request["TrainingJobName"]
        self.arn = arn
        self.region = region
        self.scenario = scenario
        self.attempt = attempt  # which script entry gave the scenario, for the control endpoints
        self.steps = plan_steps(scenario)
        self.shown = -1  # index of the step the last describe showed; -1 before the first describe
        self.created = now()
        self.modified = self.created
        self.transitions: list[dict[str, Any]] = []
        self.training_start: float | None = None
        self.end_time: float | None = None
        self.failure_reason: str | None = None
        self.model_artifacts: str | None = None
        self.artifacts_written = False

    @property
    def status(self) -> tuple[str, str]:
        return self.steps[self.shown] if self.shown >= 0 else ("InProgress", "Starting")

    def advance(self, server: FakeSageMaker) -> None:
        """Show the next step (one per describe), recording transitions and the end."""
        if self.shown == len(self.steps) - 1:
            return
        self.shown += 1
        status, secondary = self.steps[self.shown]
        t = now()
        self.modified = t
        if not self.transitions or self.transitions[-1]["Status"] != secondary:
            if self.transitions:
                self.transitions[-1]["EndTime"] = t
            self.transitions.append(
                {"Status": secondary, "StartTime": t, "StatusMessage": STATUS_MESSAGES.get(secondary, secondary)}
            )
        if self.training_start is None and status == "InProgress" and secondary not in ("Starting", "Pending"):
            self.training_start = t
        if self.training_start is None and status == "Completed":
            self.training_start = t
        if status in ("Completed", "Failed", "Stopped"):
            self.end_time = t
            self.transitions[-1]["EndTime"] = t
            if status == "Failed":
                self.failure_reason = self.scenario.get("failure_reason") or DEFAULT_FAILURE
                self.transitions[-1]["StatusMessage"] = self.failure_reason[:1024]
            if status == "Completed":
                self.model_artifacts = model_artifacts_uri(self.request, self.name)
                error = server.write_model(self)
                if error is not None:
                    self.steps[self.shown] = ("Failed", "Failed")
                    self.transitions[-1]["Status"] = "Failed"
                    self.model_artifacts = None
                    self.failure_reason = f"ClientError: Failed to upload model artifacts to {error}"
                    self.transitions[-1]["StatusMessage"] = self.failure_reason[:1024]

    def stop(self) -> None:
        status, _ = self.status
        if status != "InProgress":
            raise ApiError(
                "ValidationException", f"The request was rejected because the training job is in status {status}."
            )
        shown = self.steps[: self.shown + 1] if self.shown >= 0 else []
        self.steps = [*shown, ("Stopping", "Stopping"), ("Stopped", "Stopped")]

    def describe(self) -> dict[str, Any]:
        status, secondary = self.status
        req = self.request
        out: dict[str, Any] = {
            "TrainingJobName": self.name,
            "TrainingJobArn": self.arn,
            "TrainingJobStatus": status,
            "SecondaryStatus": secondary,
            "CreationTime": self.created,
            "LastModifiedTime": self.modified,
            "SecondaryStatusTransitions": [dict(t) for t in self.transitions],
            "ModelArtifacts": {"S3ModelArtifacts": self.model_artifacts} if self.model_artifacts else None,
        }
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
            "VpcConfig",
            "EnableNetworkIsolation",
            "EnableInterContainerTrafficEncryption",
            "EnableManagedSpotTraining",
            "RetryStrategy",
        ):
            if key in req:
                out[key] = req[key]
        if self.failure_reason is not None:
            out["FailureReason"] = self.failure_reason[:1024]
        if self.training_start is not None:
            out["TrainingStartTime"] = self.training_start
        if self.end_time is not None:
            out["TrainingEndTime"] = self.end_time
            if self.training_start is not None:
                seconds = max(1, int(self.end_time - self.training_start))
                out["TrainingTimeInSeconds"] = seconds
                out["BillableTimeInSeconds"] = seconds
        return {k: v for k, v in out.items() if v is not None}

    def summary(self) -> dict[str, Any]:
        status, secondary = self.status
        out = {
            "TrainingJobName": self.name,
            "TrainingJobArn": self.arn,
            "CreationTime": self.created,
            "LastModifiedTime": self.modified,
            "TrainingJobStatus": status,
            "SecondaryStatus": secondary,
        }
        if self.end_time is not None:
            out["TrainingEndTime"] = self.end_time
        return out


def model_artifacts_uri(request: dict[str, Any], name: str) -> str:
    config = request["OutputDataConfig"]
    base = config["S3OutputPath"].rstrip("/")
    if config.get("CompressionType") == "NONE":
        return f"{base}/{name}/output/model/"
    return f"{base}/{name}/output/model.tar.gz"


def split_s3(uri: str) -> tuple[str, str]:
    rest = uri.split("://", 1)[1]
    bucket, _, key = rest.partition("/")
    return bucket, key


# --------------------------------------------------------------------------------------------------- validation


def validate_create(req: dict[str, Any]) -> None:
    problems: list[str] = []

    def null(path: str) -> None:
        problems.append(f"Value null at '{path}' failed to satisfy constraint: Member must not be null")

    def pattern(value: Any, path: str, regex: str) -> None:
        if isinstance(value, str) and not re.match(regex, value):
            problems.append(
                f"Value '{value}' at '{path}' failed to satisfy constraint: "
                f"Member must satisfy regular expression pattern: {regex}"
            )

    name = req.get("TrainingJobName")
    if name is None:
        null("trainingJobName")
    elif not isinstance(name, str) or not re.fullmatch(JOB_NAME_PATTERN.lstrip("^"), name):
        problems.append(
            f"Value '{name}' at 'trainingJobName' failed to satisfy constraint: "
            f"Member must satisfy regular expression pattern: {JOB_NAME_PATTERN}"
        )
    if isinstance(name, str) and len(name) > 63:
        problems.append(
            f"Value '{name}' at 'trainingJobName' failed to satisfy constraint: "
            "Member must have length less than or equal to 63"
        )
    algo = req.get("AlgorithmSpecification")
    if algo is None:
        null("algorithmSpecification")
    elif algo.get("TrainingInputMode") is None:
        null("algorithmSpecification.trainingInputMode")
    role = req.get("RoleArn")
    if role is None:
        null("roleArn")
    pattern(role, "roleArn", ROLE_ARN_PATTERN)
    output = req.get("OutputDataConfig")
    if output is None:
        null("outputDataConfig")
    elif output.get("S3OutputPath") is None:
        null("outputDataConfig.s3OutputPath")
    else:
        pattern(output["S3OutputPath"], "outputDataConfig.s3OutputPath", S3_URI_PATTERN)
    resource = req.get("ResourceConfig")
    if resource is None:
        null("resourceConfig")
    else:
        if resource.get("InstanceCount") is not None and resource["InstanceCount"] < 1:
            problems.append(
                f"Value '{resource['InstanceCount']}' at 'resourceConfig.instanceCount' failed to satisfy "
                "constraint: Member must have value greater than or equal to 1"
            )
        if resource.get("VolumeSizeInGB") is None:
            null("resourceConfig.volumeSizeInGB")
    stopping = req.get("StoppingCondition")
    if stopping is None:
        null("stoppingCondition")
    elif stopping.get("MaxRuntimeInSeconds") is not None and stopping["MaxRuntimeInSeconds"] < 1:
        problems.append(
            f"Value '{stopping['MaxRuntimeInSeconds']}' at 'stoppingCondition.maxRuntimeInSeconds' failed to "
            "satisfy constraint: Member must have value greater than or equal to 1"
        )
    for i, channel in enumerate(req.get("InputDataConfig") or []):
        uri = ((channel.get("DataSource") or {}).get("S3DataSource") or {}).get("S3Uri")
        pattern(uri, f"inputDataConfig.{i + 1}.member.dataSource.s3DataSource.s3Uri", S3_URI_PATTERN)
    checkpoint = req.get("CheckpointConfig")
    if checkpoint is not None:
        if checkpoint.get("S3Uri") is None:
            null("checkpointConfig.s3Uri")
        pattern(checkpoint.get("S3Uri"), "checkpointConfig.s3Uri", S3_URI_PATTERN)
    if problems:
        count = len(problems)
        raise ApiError(
            "ValidationException",
            f"{count} validation error{'s' if count > 1 else ''} detected: {'; '.join(problems)}",
        )
    if (stopping or {}).get("MaxWaitTimeInSeconds") is not None and not req.get("EnableManagedSpotTraining"):
        raise ApiError(
            "ValidationException",
            "Invalid MaxWaitTimeInSeconds. It is only supported when EnableManagedSpotTraining is set to true",
        )


# --------------------------------------------------------------------------------------------------- the server


class FakeSageMaker:
    def __init__(
        self, script: dict[str, Any], region: str, account: str, s3_endpoint: str | None, calls_log: str | None
    ):
        self.lock = threading.Lock()
        self.region = region
        self.account = account
        self.s3_endpoint = s3_endpoint
        self.calls_log = calls_log
        self.jobs: dict[str, Job] = {}  # by lower-cased name
        self.calls: list[dict[str, Any]] = []
        self.load_script(script)

    def load_script(self, script: dict[str, Any]) -> None:
        self.script = check_script(script)
        self.attempts_used = [0] * len(self.script["jobs"])
        self.op_counts: dict[str, int] = {}
        self.error_counts = [0] * len(self.script["errors"])
        self.reply_counts = [0] * len(self.script["replies"])

    def reset(self) -> None:
        self.jobs.clear()
        self.calls.clear()
        self.load_script(self.script)

    def record(self, entry: dict[str, Any]) -> None:
        entry = {"seq": len(self.calls) + 1, **entry}
        self.calls.append(entry)
        if self.calls_log:
            with open(self.calls_log, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")

    # ---- faults

    def inject(self, op: str, name: str | None) -> None:
        count = self.op_counts.get(op, 0)
        self.op_counts[op] = count + 1
        if count < self.script["throttle"].get(op, 0):
            raise ApiError("ThrottlingException", "Rate exceeded.")
        for i, rule in enumerate(self.script["errors"]):
            if rule["operation"] != op or self.error_counts[i] >= rule["times"]:
                continue
            if rule["match"] is not None and not (name and re.search(rule["match"], name)):
                continue
            self.error_counts[i] += 1
            raise ApiError(rule["code"], rule["message"], rule["status"])

    def reply_fault(self, op: str, name: str | None) -> dict[str, Any] | None:
        """The `replies` rule that takes this successful call, if any (counted)."""
        for i, rule in enumerate(self.script["replies"]):
            if rule["operation"] != op or self.reply_counts[i] >= rule["times"]:
                continue
            if rule["match"] is not None and not (name and re.search(rule["match"], name)):
                continue
            self.reply_counts[i] += 1
            return rule
        return None

    def scenario_for(self, name: str) -> tuple[dict[str, Any], str]:
        for i, entry in enumerate(self.script["jobs"]):
            if re.search(entry["match"], name):
                used = self.attempts_used[i]
                if used < len(entry["attempts"]):
                    self.attempts_used[i] += 1
                    return entry["attempts"][used], f"jobs[{i}].attempts[{used}]"
                break
        return self.script["default"], "default"

    # ---- operations

    def create(self, req: dict[str, Any], signing_region: str | None) -> dict[str, Any]:
        validate_create(req)
        name = req["TrainingJobName"]
        region = signing_region or self.region
        match = re.match(r"^arn:aws[a-z\-]*:iam::(\d{12}):", req["RoleArn"])
        account = match.group(1) if match else self.account
        arn = f"arn:aws:sagemaker:{region}:{account}:training-job/{name.lower()}"
        existing = self.jobs.get(name.lower())
        if existing is not None:
            raise ApiError(
                "ResourceInUse",
                "Training job names must be unique within an AWS account and region, and a training job with this "
                f"name already exists ({existing.arn}).",
            )
        scenario, source = self.scenario_for(name)
        self.jobs[name.lower()] = Job(req, arn, region, scenario, source)
        return {"TrainingJobArn": arn}

    def job(self, req: dict[str, Any]) -> Job:
        name = req.get("TrainingJobName")
        if name is None:
            raise ApiError(
                "ValidationException",
                "1 validation error detected: Value null at 'trainingJobName' failed to satisfy constraint: "
                "Member must not be null",
            )
        job = self.jobs.get(str(name).lower())
        if job is None:
            raise ApiError("ValidationException", "Requested resource not found.")
        return job

    def describe(self, req: dict[str, Any]) -> dict[str, Any]:
        job = self.job(req)
        job.advance(self)
        return job.describe()

    def stop(self, req: dict[str, Any]) -> dict[str, Any]:
        self.job(req).stop()
        return {}

    def list(self, req: dict[str, Any]) -> dict[str, Any]:
        jobs = list(self.jobs.values())
        if req.get("NameContains"):
            jobs = [j for j in jobs if req["NameContains"] in j.name]
        if req.get("StatusEquals"):
            jobs = [j for j in jobs if j.status[0] == req["StatusEquals"]]
        key = {"Name": lambda j: j.name, "Status": lambda j: j.status[0]}.get(req.get("SortBy"), lambda j: j.created)
        jobs.sort(key=key, reverse=req.get("SortOrder") == "Descending")
        start = int(req.get("NextToken") or 0)
        size = int(req.get("MaxResults") or 10)
        out: dict[str, Any] = {"TrainingJobSummaries": [j.summary() for j in jobs[start : start + size]]}
        if start + size < len(jobs):
            out["NextToken"] = str(start + size)
        return out

    def write_model(self, job: Job) -> str | None:
        """Write the job's model to S3 (when an endpoint is configured); the S3 URI and error text on failure."""
        if self.s3_endpoint is None or job.artifacts_written:
            return None
        import boto3
        from botocore.config import Config

        artifacts = job.scenario.get("artifacts") or {
            "adapter/README": f"Model written by tests/aws/fake_sagemaker.py for training job {job.name}.\n"
        }
        s3 = boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            region_name=job.region,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )
        uri = job.model_artifacts or ""
        bucket, key = split_s3(uri)
        try:
            if uri.endswith("/"):
                for path, text in sorted(artifacts.items()):
                    s3.put_object(Bucket=bucket, Key=key + path, Body=text.encode("utf-8"))
            else:
                s3.put_object(Bucket=bucket, Key=key, Body=targz(artifacts, job.created))
            # What the script left in /opt/ml/output/data, which SageMaker uploads whether or not it is empty.
            output = job.request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
            bucket, key = split_s3(f"{output}/{job.name}/output/output.tar.gz")
            s3.put_object(Bucket=bucket, Key=key, Body=targz(job.scenario.get("output_data") or {}, job.created))
        except Exception as e:  # any S3 failure fails the job, as an unusable output bucket would
            log(f"writing the model of {job.name} to {uri} failed: {e}")
            return f"{uri}: {e}"
        job.artifacts_written = True
        log(f"wrote the model of {job.name} to {uri}")
        return None

    def call(
        self, op: str, req: dict[str, Any], signing_region: str | None, signed: bool
    ) -> tuple[int, dict[str, Any], str | None, dict[str, Any] | None]:
        """Run one API call under the lock: (HTTP status, body, error code or None, the `replies` fault or None)."""
        name = req.get("TrainingJobName") if isinstance(req, dict) else None
        entry: dict[str, Any] = {"time": now(), "operation": op, "job": name, "signed": signed}
        fault = None
        with self.lock:
            try:
                if op not in OPERATIONS:
                    raise ApiError("UnknownOperationException", f"Operation {op} is not supported by this server.")
                self.inject(op, name)
                handler = {
                    "CreateTrainingJob": lambda: self.create(req, signing_region),
                    "DescribeTrainingJob": lambda: self.describe(req),
                    "StopTrainingJob": lambda: self.stop(req),
                    "ListTrainingJobs": lambda: self.list(req),
                }[op]
                body = handler()
                status, code = 200, None
                entry["outcome"] = "ok"
                if op == "DescribeTrainingJob":
                    entry["detail"] = f"{body['TrainingJobStatus']}/{body['SecondaryStatus']}"
                elif op == "CreateTrainingJob":
                    entry["detail"] = self.jobs[name.lower()].attempt
                fault = self.reply_fault(op, name)
                if fault is not None:
                    entry["fault"] = fault["fault"]
            except ApiError as e:
                status, code = e.status, e.code
                body = {"__type": e.code, "message": e.message}
                entry["outcome"] = e.code
                entry["detail"] = e.message
            entry["status"] = status
            self.record(entry)
        log(f"{op} {name or ''} -> {status} {code or ''}{' (reply: ' + fault['fault'] + ')' if fault else ''}".rstrip())
        return status, body, code, fault


class Handler(BaseHTTPRequestHandler):
    server_version = "fake-sagemaker/1"
    protocol_version = "HTTP/1.1"
    app: FakeSageMaker  # set on the class by serve()

    def log_message(self, format: str, *args: Any) -> None:  # the call log says more
        pass

    def send(self, status: int, body: Any, error_code: str | None = None, content_type: str | None = None) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type or "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if error_code is not None:
            self.send_header("x-amzn-ErrorType", error_code)
        self.end_headers()
        self.wfile.write(data)

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        app = self.app
        with app.lock:
            if self.path == "/_control/calls":
                body: Any = list(app.calls)
            elif self.path == "/_control/jobs":
                body = [
                    {
                        "name": j.name,
                        "arn": j.arn,
                        "scenario": j.attempt,
                        "status": j.status[0],
                        "secondary": j.status[1],
                        "steps": [list(s) for s in j.steps],
                        "request": j.request,
                    }
                    for j in app.jobs.values()
                ]
            else:
                body = None
        if body is None:
            self.send(404, {"message": f"no such path {self.path}"}, content_type="application/json")
        else:
            self.send(200, body, content_type="application/json")

    def do_POST(self) -> None:
        raw = self.read_body()
        app = self.app
        if self.path.startswith("/_control/"):
            if self.path == "/_control/reset":
                with app.lock:
                    app.reset()
                log("reset")
                self.send(200, {"reset": True}, content_type="application/json")
            elif self.path == "/_control/script":
                try:
                    script = json.loads(raw or b"{}")
                    with app.lock:
                        app.load_script(script)
                except (ValueError, re.error) as e:
                    self.send(400, {"message": f"bad script: {e}"}, content_type="application/json")
                    return
                log("script replaced")
                self.send(200, {"script": app.script}, content_type="application/json")
            else:
                self.send(404, {"message": f"no such path {self.path}"}, content_type="application/json")
            return
        target = self.headers.get("X-Amz-Target", "")
        if not target.startswith("SageMaker."):
            self.send(
                400,
                {"__type": "UnknownOperationException", "message": f"Bad X-Amz-Target {target!r}."},
                "UnknownOperationException",
            )
            return
        try:
            req = json.loads(raw or b"{}")
            if not isinstance(req, dict):
                raise ValueError("not an object")
        except ValueError:
            self.send(
                400, {"__type": "SerializationException", "message": "Malformed JSON body."}, "SerializationException"
            )
            return
        auth = self.headers.get("Authorization", "")
        scope = re.search(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/sagemaker/aws4_request", auth)
        status, body, code, fault = app.call(
            target.split(".", 1)[1], req, scope.group(1) if scope else None, auth.startswith("AWS4-HMAC-SHA256")
        )
        if fault is not None and fault["fault"] == "drop":
            self.reset_connection()
            return
        if fault is not None:
            time.sleep(fault["seconds"])
        try:
            self.send(status, body, code)
        except OSError:  # the client is gone (killed while the reply was held)
            self.close_connection = True

    def reset_connection(self) -> None:
        """Close the connection with a TCP RST and no reply (SO_LINGER 0), as a reply lost on the way looks."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # Close the descriptor itself: the handler's file objects would otherwise keep it open until they close.
        os.close(self.connection.detach())


def write_port_file(path: str, port: int) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", help="write the bound port here, atomically, once listening")
    parser.add_argument("--script", help="the lifecycle script (JSON); default: every job completes after 2 polls")
    parser.add_argument("--s3-endpoint", help="S3 endpoint (moto) to write Completed jobs' models to")
    parser.add_argument("--calls-log", help="append every API call as a JSON line to this file")
    parser.add_argument("--region", default="us-east-1", help="region of job ARNs when a request is not signed")
    parser.add_argument("--account", default="123456789012", help="account of job ARNs when RoleArn has none")
    args = parser.parse_args(argv)

    script: dict[str, Any] = {}
    if args.script:
        with open(args.script, encoding="utf-8") as f:
            script = json.load(f)
    try:
        app = FakeSageMaker(script, args.region, args.account, args.s3_endpoint, args.calls_log)
    except (ValueError, re.error) as e:
        print(f"fake_sagemaker: bad script {args.script}: {e}", file=sys.stderr)
        return 2
    handler = type("BoundHandler", (Handler,), {"app": app})
    httpd = ThreadingHTTPServer((args.host, args.port), handler)
    httpd.daemon_threads = True
    port = httpd.server_address[1]

    def on_signal(signum: int, _frame: Any) -> None:
        log(f"signal {signum}: shutting down")
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.port_file:
        write_port_file(args.port_file, port)
    log(f"listening on http://{args.host}:{port}" + (f", models to {args.s3_endpoint}" if args.s3_endpoint else ""))
    try:
        httpd.serve_forever(poll_interval=0.1)
    finally:
        httpd.server_close()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
