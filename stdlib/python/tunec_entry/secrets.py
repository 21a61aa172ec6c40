"""A Hub token kept in AWS Secrets Manager, read by the job itself with its execution role.

A model node's `token = secret("arn:aws:secretsmanager:...")` reaches the job as the secret's ARN only, in the
TUNEC_HF_TOKEN_SECRET environment variable of the training job's request; the token's value is never in the request,
so `DescribeTrainingJob` cannot show it. At start, every entry script (every rank) reads the secret with boto3 and the
container's credentials (the execution role), in the secret's own region (from its ARN), and sets HF_TOKEN in its
own process environment, where huggingface_hub looks for it on every request (`huggingface_hub.get_token`), and
where torchrun's workers inherit it. The value is never logged or written to a file; errors name the ARN only.

The secret's SecretString is the token itself or a JSON object with the token under "HF_TOKEN" (the console's
key/value form), as for `tunec run`'s own downloads (runtime/src/run/secrets.rs). boto3 comes with the Hugging Face
training images (their transformers is installed with the `sagemaker` extra, which requires it); where it is missing,
the job fails with a message that says so. AWS_ENDPOINT_URL_SECRETS_MANAGER (or AWS_ENDPOINT_URL) points boto3 at
another endpoint, which the tests use to read from moto.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, MutableMapping
from typing import Any

from tunec_entry.failure import EntryError

log = logging.getLogger("tunec")

SECRET_VAR = "TUNEC_HF_TOKEN_SECRET"
"""The environment variable with the secret's ARN."""

JSON_KEY = "HF_TOKEN"
"""The key a JSON secret holds the token under."""


def token_of(text: str) -> str:
    """The token in a secret's text; the error says what is wrong without quoting the text."""
    if text.lstrip().startswith("{"):
        try:
            value: Any = json.loads(text)
        except ValueError:
            raise EntryError(
                f"the Hub token's secret starts with '{{' but is not JSON; store the token alone, or JSON with the "
                f"token under {JSON_KEY!r}"
            ) from None
        if not isinstance(value, dict) or JSON_KEY not in value:
            keys = ", ".join(sorted(value)) if isinstance(value, dict) and value else "none"
            raise EntryError(
                f"the Hub token's secret is JSON without the key {JSON_KEY!r} (its keys: {keys}); name the token's "
                f"key {JSON_KEY!r}, or store the token alone"
            )
        if not isinstance(value[JSON_KEY], str):
            raise EntryError(f"the Hub token's secret has {JSON_KEY!r}, but not as a string")
        token = value[JSON_KEY].strip()
    else:
        token = text.strip()
    if not token:
        raise EntryError("the Hub token's secret is empty")
    return token


def read_hub_token(arn: str) -> str:
    """The Hub token in the secret `arn`, read with the process's AWS credentials."""
    parts = arn.split(":")
    if len(parts) != 7 or parts[0] != "arn" or parts[2] != "secretsmanager" or parts[5] != "secret":
        raise EntryError(f"{SECRET_VAR} is not the ARN of a Secrets Manager secret: {arn!r}")
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        raise EntryError(
            "the model's Hub token is kept in Secrets Manager, and boto3, which reads it, is not installed in this "
            "training image; use a Hugging Face training image (they include it), or add boto3 to the image"
        ) from None
    try:
        reply = boto3.client("secretsmanager", region_name=parts[3]).get_secret_value(SecretId=arn)
    except ClientError as err:
        error = err.response.get("Error", {})
        code, message = error.get("Code", "Unknown"), error.get("Message", "")
        hint = (
            "; the execution role needs secretsmanager:GetSecretValue on it (`tunec iam-policy` prints the grant)"
            if code == "AccessDeniedException"
            else ""
        )
        raise EntryError(f"cannot read the Hub token from Secrets Manager ({arn}): {code}: {message}{hint}") from None
    except BotoCoreError as err:
        raise EntryError(f"cannot read the Hub token from Secrets Manager ({arn}): {err}") from None
    if "SecretString" not in reply:
        raise EntryError(
            f"the secret {arn} holds binary data; store the Hub token as its SecretString (the token alone, or JSON "
            f"with the token under {JSON_KEY!r})"
        )
    return token_of(reply["SecretString"])


def load_hub_token(environ: Mapping[str, str], target: MutableMapping[str, str] | None = None) -> str | None:
    """When the job names a secret, read it and set HF_TOKEN in `target` (the process environment by default).

    Returns the secret's ARN, or None when the job names none.
    """
    arn = environ.get(SECRET_VAR, "").strip()
    if not arn:
        return None
    (os.environ if target is None else target)["HF_TOKEN"] = read_hub_token(arn)
    return arn
