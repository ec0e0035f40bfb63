"""AWS clients configured by settings alone: real AWS, or moto via AWS_ENDPOINT_URL."""

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from app.infra.settings import Settings

QUEUE_NAMES = ("notifications", "media")
DLQ_MAX_RECEIVES = 5


def _client_kwargs(settings: Settings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"region_name": settings.aws_region}
    if settings.aws_endpoint_url:
        kwargs["endpoint_url"] = settings.aws_endpoint_url
    if settings.aws_access_key_id and settings.aws_secret_access_key:
        kwargs["aws_access_key_id"] = settings.aws_access_key_id
        kwargs["aws_secret_access_key"] = settings.aws_secret_access_key.get_secret_value()
    return kwargs


@asynccontextmanager
async def client(settings: Settings, service: str) -> AsyncIterator[Any]:
    """An aiobotocore client for `service` ("s3", "sqs"), closed when the block ends.

    Without explicit keys the default credential chain applies (on EKS: the pod's IRSA role).
    """
    async with get_session().create_client(service, **_client_kwargs(settings)) as aws_client:
        yield aws_client


# The media bucket's own rules, found again by ID so that rerunning ensure_resources
# updates them and leaves other rules on the bucket alone.
LIFECYCLE_RULE_ID = "courtside-abort-incomplete-multipart-uploads"
CORS_RULE_ID = "courtside-browser-media"


def abort_incomplete_upload_days(settings: Settings) -> int:
    """DaysAfterInitiation of the bucket's backstop: a day past MEDIA_UPLOAD_EXPIRY_HOURS
    (rounded up to days), so the scheduler always gets there first."""
    return math.ceil(settings.media_upload_expiry_hours / 24) + 1


def media_lifecycle_rule(settings: Settings) -> dict[str, Any]:
    """Aborts multipart uploads nobody finished: the scheduler's backstop
    (app/media/expiry.py), should it be down or an upload have no asset."""
    return {
        "ID": LIFECYCLE_RULE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "AbortIncompleteMultipartUpload": {
            "DaysAfterInitiation": abort_incomplete_upload_days(settings)
        },
    }


def media_cors_origins(settings: Settings) -> list[str]:
    if settings.media_cors_origins:
        return list(settings.media_cors_origins)
    if settings.environment in ("development", "test"):
        return ["*"]
    public = urlsplit(settings.public_url)
    return [f"{public.scheme}://{public.netloc}"]


def media_cors_rule(settings: Settings) -> dict[str, Any]:
    """Lets the web app's browsers PUT parts to presigned URLs (and read each part's ETag,
    which finalize needs) and GET playback URLs."""
    return {
        "ID": CORS_RULE_ID,
        "AllowedMethods": ["PUT", "GET", "HEAD"],
        "AllowedOrigins": media_cors_origins(settings),
        "AllowedHeaders": ["*"],
        "ExposeHeaders": ["ETag"],
        "MaxAgeSeconds": 3600,
    }


async def _configure_media_bucket(s3: Any, settings: Settings) -> None:
    bucket = settings.s3_bucket
    try:
        lifecycle = await s3.get_bucket_lifecycle_configuration(Bucket=bucket)
        rules = [r for r in lifecycle.get("Rules", []) if r.get("ID") != LIFECYCLE_RULE_ID]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
            raise
        rules = []
    await s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={"Rules": [*rules, media_lifecycle_rule(settings)]},
    )
    try:
        cors = await s3.get_bucket_cors(Bucket=bucket)
        cors_rules = [r for r in cors.get("CORSRules", []) if r.get("ID") != CORS_RULE_ID]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchCORSConfiguration":
            raise
        cors_rules = []
    await s3.put_bucket_cors(
        Bucket=bucket, CORSConfiguration={"CORSRules": [*cors_rules, media_cors_rule(settings)]}
    )


async def ensure_resources(settings: Settings, prefix: str = "courtside") -> dict[str, str]:
    """Create the media bucket, with its lifecycle backstop and CORS rule, and each queue
    with its dead-letter queue (idempotent).

    Returns {"notifications": url, "media": url}. Used by the local stack, the tests and
    the chart's aws-init hook (dev clusters); production creates these with
    infrastructure code (docs/media-storage.md has the bucket's rules).
    """
    urls: dict[str, str] = {}
    async with client(settings, "s3") as s3:
        try:
            await s3.create_bucket(Bucket=settings.s3_bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        await _configure_media_bucket(s3, settings)
    async with client(settings, "sqs") as sqs:
        for name in QUEUE_NAMES:
            dlq = await sqs.create_queue(QueueName=f"{prefix}-{name}-dlq")
            dlq_arn = (
                await sqs.get_queue_attributes(
                    QueueUrl=dlq["QueueUrl"], AttributeNames=["QueueArn"]
                )
            )["Attributes"]["QueueArn"]
            queue = await sqs.create_queue(
                QueueName=f"{prefix}-{name}",
                Attributes={
                    "VisibilityTimeout": "60",
                    "RedrivePolicy": json.dumps(
                        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(DLQ_MAX_RECEIVES)}
                    ),
                },
            )
            urls[name] = queue["QueueUrl"]
    return urls
