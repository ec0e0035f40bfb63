"""AWS clients configured by settings alone: real AWS, or moto via AWS_ENDPOINT_URL."""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiobotocore.session import get_session

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


async def ensure_resources(settings: Settings, prefix: str = "courtside") -> dict[str, str]:
    """Create the media bucket and each queue with its dead-letter queue (idempotent).

    Returns {"notifications": url, "media": url}. Used by the local stack and the tests;
    production creates these with infrastructure code.
    """
    urls: dict[str, str] = {}
    async with client(settings, "s3") as s3:
        try:
            await s3.create_bucket(Bucket=settings.s3_bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
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
