"""Media processing: what ffprobe says of an uploaded original, and the renditions ffmpeg
makes of it.

A video gets a 720p H.264/AAC MP4 (`+faststart`: playable while it downloads) and a poster
JPEG; an image (jpeg, png, webp) gets a thumbnail JPEG only. All work happens on files in a
scratch directory of its own under MEDIA_SCRATCH_DIR (the chart's size-limited emptyDir),
removed when the job ends however it ends: the original is downloaded to it in chunks and
the renditions are uploaded from it in parts, so memory stays bounded whatever the size.

The media worker runs one job in three steps, so that no database transaction stays open
for the minutes a transcode takes: `load_job` (a short transaction), `process_original`
(S3 and ffmpeg, outside any transaction) and `record_outcome` (a step of the transaction
that also writes the worker's processed_events marker). `transcode` is the local part
alone, for the benchmark.

Failures are of two kinds. A file ffmpeg cannot make sense of ends the asset `failed`
with a stable `error_code` and a readable `error_reason` (MediaUnprocessable): retrying
could not help. Anything else (S3 unreachable or throttling, the scratch volume full,
ffmpeg killed from outside) raises, so the message is retried.
"""

import asyncio
import contextlib
import json
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import structlog
from botocore.exceptions import ClientError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.infra.db import Database
from app.infra.settings import Settings
from app.media import quota
from app.media.models import MediaAsset, MediaStatus

log = structlog.get_logger(__name__)

# error_code values: stable strings clients and dashboards may rely on.
UNREADABLE_MEDIA = "unreadable_media"
NO_VIDEO_STREAM = "no_video_stream"
DIMENSIONS_TOO_LARGE = "dimensions_too_large"
TRANSCODE_FAILED = "transcode_failed"
TRANSCODE_TIMEOUT = "transcode_timeout"
ORIGINAL_MISSING = "original_missing"

# The video rendition fits a 1280x720 box (720x1280 for portrait): "720p" either way.
VIDEO_LONG_SIDE, VIDEO_SHORT_SIDE = 1280, 720
THUMBNAIL_SIDE = 720
AUDIO_BITRATE = "128k"
# Demuxers ffprobe names for a single still image.
_IMAGE_FORMATS = frozenset(
    {"image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "gif", "tiff_pipe"}
)
# What S3 (and moto) answer for a key that does not exist.
_MISSING_OBJECT_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_REASON_MAX = 1000  # media_assets.error_reason
_STDERR_TAIL = 2000


class MediaUnprocessable(Exception):
    """The file itself cannot be processed: the asset ends `failed`, never retried."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason[:_REASON_MAX]


class ScratchSpaceExhausted(OSError):
    """The scratch volume filled up: retried (later, or on another pod)."""


class ToolKilled(Exception):
    """ffmpeg/ffprobe killed by a signal from outside (the OOM killer, an operator):
    nothing says the file is at fault, so the job is retried."""


# --- ffprobe and ffmpeg, as child processes that never outlive their job -------------------


async def _run(args: Sequence[str], *, workdir: Path, limit: float) -> tuple[int, bytes, str]:
    """Run a tool; returns (exit code, stdout, the tail of its stderr).

    Its stderr goes to a file (a chatty decoder can't fill memory). It runs in a session
    of its own so a terminal's Ctrl-C reaches the worker only, which then decides; if the
    job is cancelled (the worker's shutdown grace ran out) or times out, the tool is killed
    and reaped before this returns or raises: no orphan keeps transcoding."""
    log_file = workdir / f"{Path(args[0]).name}-{uuid.uuid4().hex[:8]}.log"
    with log_file.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            stdout, _ = await asyncio.wait_for(process.communicate(), timeout=limit)
        except BaseException as exc:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            # Reap it even if cancelled again meanwhile: the kill is already sent.
            with contextlib.suppress(BaseException):
                await asyncio.shield(process.wait())
            if isinstance(exc, TimeoutError):
                raise MediaUnprocessable(
                    TRANSCODE_TIMEOUT,
                    f"{Path(args[0]).name} still ran after {limit:g} s and was stopped",
                ) from None
            raise
    # Reasons reach users: name the file, not the worker's scratch path.
    tail = _tail(log_file).replace(f"{workdir}/", "")
    log_file.unlink(missing_ok=True)
    code = process.returncode if process.returncode is not None else -1
    if code < 0:
        raise ToolKilled(f"{Path(args[0]).name} was killed by signal {-code}")
    if "No space left on device" in tail:
        raise ScratchSpaceExhausted(f"scratch volume full: {tail[-300:]}")
    return code, stdout, tail


def _tail(path: Path) -> str:
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - _STDERR_TAIL))
        return f.read().decode(errors="replace").strip()


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no error output"


def ffmpeg_threads(settings: Settings) -> int:
    """MEDIA_FFMPEG_THREADS, or the CPUs the container may use: ffmpeg alone would count
    the node's, start that many threads and take their memory under a 2-CPU limit."""
    if settings.media_ffmpeg_threads:
        return settings.media_ffmpeg_threads
    cpus = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, ValueError):
        limit, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if limit != "max":
            cpus = min(cpus, math.ceil(int(limit) / int(period)))
    return max(1, cpus)


# --- What the original is ------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """What ffprobe says of a file. Width and height as displayed (rotation and
    non-square pixels applied)."""

    format_name: str
    duration_ms: int | None
    width: int
    height: int
    video_codec: str
    audio_codec: str | None

    @property
    def is_still_image(self) -> bool:
        return self.format_name in _IMAGE_FORMATS


async def probe(path: Path, settings: Settings, *, workdir: Path) -> Probe:
    """ffprobe `path`; MediaUnprocessable if it is not media or has no picture."""
    entries = (
        "format=format_name,duration:stream=codec_type,codec_name,width,height,"
        "sample_aspect_ratio,duration:stream_tags=rotate:stream_side_data=rotation"
    )
    code, stdout, stderr = await _run(
        ["ffprobe", "-v", "error", "-show_entries", entries, "-of", "json", str(path)],
        workdir=workdir,
        limit=settings.media_transcode_timeout_seconds,
    )
    if code != 0:
        raise MediaUnprocessable(
            UNREADABLE_MEDIA, f"not a readable video or image: {_last_line(stderr)}"
        )
    try:
        data = json.loads(stdout)
    except ValueError:
        raise MediaUnprocessable(UNREADABLE_MEDIA, "ffprobe gave no readable answer") from None
    streams: list[dict[str, Any]] = data.get("streams") or []
    fmt: dict[str, Any] = data.get("format") or {}
    videos = [s for s in streams if s.get("codec_type") == "video" and s.get("width")]
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    if not fmt or not streams:
        raise MediaUnprocessable(UNREADABLE_MEDIA, "not a readable video or image")
    if not videos:
        raise MediaUnprocessable(NO_VIDEO_STREAM, "the file has no video stream or picture")
    video = videos[0]
    width, height = _display_size(video)
    return Probe(
        format_name=str(fmt.get("format_name", "")),
        duration_ms=_duration_ms(fmt, video),
        width=width,
        height=height,
        video_codec=str(video.get("codec_name", "unknown")),
        audio_codec=str(audios[0].get("codec_name", "unknown")) if audios else None,
    )


def _display_size(video: dict[str, Any]) -> tuple[int, int]:
    width, height = int(video["width"]), int(video["height"])
    sar = str(video.get("sample_aspect_ratio") or "1:1")
    num, _, den = sar.partition(":")
    with contextlib.suppress(ValueError, ZeroDivisionError):
        if int(num) > 0 and int(den) > 0 and int(num) != int(den):
            width = round(width * int(num) / int(den))
    rotation = 0.0
    with contextlib.suppress(ValueError, TypeError):
        rotation = float((video.get("tags") or {}).get("rotate", 0))
    for side_data in video.get("side_data_list") or []:
        with contextlib.suppress(ValueError, TypeError):
            rotation = float(side_data.get("rotation", rotation))
    # ffmpeg turns the picture upright when it decodes: a quarter turn swaps the sides.
    if round(abs(rotation)) % 180 == 90:
        width, height = height, width
    return width, height


def _duration_ms(fmt: dict[str, Any], video: dict[str, Any]) -> int | None:
    for source in (fmt, video):
        with contextlib.suppress(TypeError, ValueError):
            seconds = float(source.get("duration"))  # type: ignore[arg-type]
            if math.isfinite(seconds) and seconds > 0:
                return round(seconds * 1000)
    return None


def fit(width: int, height: int, long_side: int, short_side: int) -> tuple[int, int]:
    """The largest size of the same aspect within long_side x short_side (either
    orientation), never larger than the original, both sides even (H.264 wants them so)."""
    # Exact fractions: 1920 * (1280 / 1920) in floats may floor to 1279.
    scale = min(
        Fraction(1),
        Fraction(long_side, max(width, height)),
        Fraction(short_side, min(width, height)),
    )
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


# --- Renditions of a local file ------------------------------------------------------------


@dataclass(frozen=True)
class LocalRendition:
    """A rendition written to the scratch directory."""

    name: str  # "720p", "poster", "thumbnail"
    path: Path
    content_type: str
    width: int
    height: int

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


@dataclass(frozen=True)
class Transcoded:
    probe: Probe
    renditions: list[LocalRendition]
    thumbnail: str  # the name of the rendition that serves as its thumbnail


async def transcode(
    src: Path, workdir: Path, settings: Settings, *, kind: Literal["video", "image"] = "video"
) -> Transcoded:
    """Probe `src` and write its renditions into `workdir`: for a video a 720p H.264/AAC
    MP4 (`+faststart`) and a poster JPEG, for an image a thumbnail JPEG (at most 720 px).
    Raises MediaUnprocessable when the file can't be, ToolKilled/ScratchSpaceExhausted
    when it is not the file's fault. No S3, no database: the benchmark calls it as is."""
    found = await probe(src, settings, workdir=workdir)
    if found.width * found.height > settings.media_max_pixels:
        raise MediaUnprocessable(
            DIMENSIONS_TOO_LARGE,
            f"{found.width}x{found.height} is more than {settings.media_max_pixels} pixels",
        )
    if kind == "image":
        return await _thumbnail(src, workdir, settings, found)
    if found.is_still_image:
        raise MediaUnprocessable(
            NO_VIDEO_STREAM, f"the file is a still image ({found.format_name}), not a video"
        )
    return await _video(src, workdir, settings, found)


_FFMPEG = "ffmpeg -nostdin -hide_banner -v error -y".split()
# The first video and (if any) audio stream; no subtitles, data, chapters or metadata (a
# phone's video carries its GPS position there).
_VIDEO_STREAMS = "-map 0:v:0 -map 0:a:0? -sn -dn -map_metadata -1 -map_chapters -1".split()
_H264_AAC = f"-c:v libx264 -pix_fmt yuv420p -c:a aac -b:a {AUDIO_BITRATE} -ac 2".split()
_JPEG = "-frames:v 1 -q:v 3".split()


async def _ffmpeg(settings: Settings, workdir: Path, output: Path, what: str, *args: str) -> None:
    """ffmpeg `args` writing `output`; MediaUnprocessable if it fails or writes nothing."""
    code, _, stderr = await _run(
        [*_FFMPEG, *args, str(output)],
        workdir=workdir,
        limit=settings.media_transcode_timeout_seconds,
    )
    if code != 0 or not _written(output):
        raise MediaUnprocessable(TRANSCODE_FAILED, f"{what} failed: {_last_line(stderr)}")


def _written(output: Path) -> bool:
    """Whether ffmpeg wrote something; an empty file is removed."""
    if output.exists() and output.stat().st_size > 0:
        return True
    output.unlink(missing_ok=True)
    return False


def _scale(width: int, height: int) -> list[str]:
    return ["-vf", f"scale={width}:{height},setsar=1"]


async def _video(src: Path, workdir: Path, settings: Settings, found: Probe) -> Transcoded:
    width, height = fit(found.width, found.height, VIDEO_LONG_SIDE, VIDEO_SHORT_SIDE)
    video, poster = workdir / "720p.mp4", workdir / "poster.jpg"
    await _ffmpeg(
        settings,
        workdir,
        video,
        "transcoding to H.264/AAC",
        *("-i", str(src), *_VIDEO_STREAMS, *_scale(width, height), *_H264_AAC),
        *("-preset", settings.media_video_preset, "-crf", str(settings.media_video_crf)),
        *("-threads", str(ffmpeg_threads(settings)), "-movflags", "+faststart"),
    )
    # A frame a little into the clip (the first is often black), from the small rendition.
    at = min(1.0, (found.duration_ms or 0) / 1000 / 10)
    await _ffmpeg(
        settings, workdir, poster, "the poster frame", "-ss", f"{at:.3f}", "-i", str(video), *_JPEG
    )
    return Transcoded(
        probe=found,
        renditions=[
            LocalRendition("720p", video, "video/mp4", width, height),
            LocalRendition("poster", poster, "image/jpeg", width, height),
        ],
        thumbnail="poster",
    )


async def _thumbnail(src: Path, workdir: Path, settings: Settings, found: Probe) -> Transcoded:
    width, height = fit(found.width, found.height, THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    thumbnail = workdir / "thumbnail.jpg"
    await _ffmpeg(
        settings,
        workdir,
        thumbnail,
        "the thumbnail",
        *("-i", str(src), *_scale(width, height), *_JPEG),
        *("-threads", str(ffmpeg_threads(settings))),
    )
    # An image has no duration; what a decoder may report for a still is meaningless.
    still = Probe(found.format_name, None, found.width, found.height, found.video_codec, None)
    return Transcoded(
        probe=still,
        renditions=[LocalRendition("thumbnail", thumbnail, "image/jpeg", width, height)],
        thumbnail="thumbnail",
    )


@contextlib.asynccontextmanager
async def scratch_dir(settings: Settings) -> AsyncIterator[Path]:
    """A directory of its own under MEDIA_SCRATCH_DIR, removed when the block ends
    (cancellation included: the removal is synchronous)."""
    path = _new_workdir(Path(settings.media_scratch_dir or tempfile.gettempdir()))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _new_workdir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="courtside-media-", dir=root))


# --- S3, streamed ---------------------------------------------------------------------------


async def download(s3: Any, bucket: str, key: str, dest: Path, chunk_bytes: int) -> int:
    """Stream an object to `dest` a chunk at a time; returns its size. A missing object
    is MediaUnprocessable; every other S3 error raises as it is (retried)."""
    try:
        response = await s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in _MISSING_OBJECT_CODES:
            raise MediaUnprocessable(ORIGINAL_MISSING, "the uploaded file is gone") from None
        raise
    size = 0
    body = response["Body"]
    try:
        with dest.open("wb") as out:
            async for chunk in body.iter_chunks(chunk_bytes):
                out.write(chunk)
                size += len(chunk)
    finally:
        body.close()
    return size


async def upload(
    s3: Any, bucket: str, key: str, path: Path, content_type: str, chunk_bytes: int
) -> None:
    """Upload a file: in one PUT up to `chunk_bytes`, else as a multipart upload of parts
    of that size read one at a time (aborted if it fails)."""
    with path.open("rb") as f:
        first = await asyncio.to_thread(f.read, chunk_bytes + 1)
    if len(first) <= chunk_bytes:
        await s3.put_object(Bucket=bucket, Key=key, Body=first, ContentType=content_type)
        return
    del first
    upload_id = (
        await s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType=content_type)
    )["UploadId"]
    try:
        parts = []
        with path.open("rb") as f:
            number = 1
            while chunk := await asyncio.to_thread(f.read, chunk_bytes):
                part = await s3.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
                )
                parts.append({"PartNumber": number, "ETag": part["ETag"]})
                number += 1
        await s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.shield(
                s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            )
        raise


async def delete_objects(s3: Any, bucket: str, keys: Sequence[str]) -> None:
    """Delete these keys (renditions nobody will record); errors are logged, not raised:
    what is left lies under the asset's prefix, which deleting the asset removes."""
    if not keys:
        return
    try:
        await s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
        )
    except Exception as exc:  # noqa: BLE001 - best effort, see above
        log.warning("media_rendition_cleanup_failed", keys=list(keys), error=str(exc))


# --- The job: load, process, record ---------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """What processing needs of an asset, read in a short transaction."""

    media_id: uuid.UUID
    tenant_id: uuid.UUID
    s3_key: str
    content_type: str

    @property
    def prefix(self) -> str:
        return f"tenants/{self.tenant_id}/media/{self.media_id}/"

    @property
    def kind(self) -> Literal["video", "image"]:
        return "image" if self.content_type.startswith("image/") else "video"


@dataclass(frozen=True)
class Rendition:
    """An uploaded rendition, as the asset's `renditions` list records it."""

    name: str
    key: str
    content_type: str
    size_bytes: int
    width: int
    height: int


@dataclass(frozen=True)
class Ready:
    """Renditions made and uploaded (not yet recorded)."""

    probe: Probe
    renditions: list[Rendition]
    thumbnail_key: str

    @property
    def keys(self) -> list[str]:
        return [r.key for r in self.renditions]


@dataclass(frozen=True)
class Failed:
    code: str
    reason: str


Outcome = Ready | Failed


async def load_job(db: Database, tenant_id: uuid.UUID, media_id: uuid.UUID) -> Job | None:
    """The asset to process, read in a short transaction of the tenant; None if there is
    nothing to do (deleted, or no longer `processing`: processed already)."""
    async with db.transaction(tenant_id) as session:
        asset = await session.scalar(
            select(MediaAsset).where(MediaAsset.tenant_id == tenant_id, MediaAsset.id == media_id)
        )
        if asset is None or asset.status != MediaStatus.PROCESSING:
            return None
        return Job(asset.id, asset.tenant_id, asset.s3_key, asset.content_type)


async def process_original(s3: Any, settings: Settings, job: Job) -> Outcome:
    """Download the job's original, make its renditions and upload them under the
    asset's prefix. Outside any transaction (it takes minutes). Returns Ready (uploaded,
    to be recorded) or Failed (the file's fault); raises on anything worth a retry, and
    when cancelled, with ffmpeg killed, the scratch directory removed and whatever it
    had uploaded deleted."""
    # Each attempt writes keys of its own: two deliveries of one event racing each other
    # can't overwrite the objects the winner records, and the loser deletes its own.
    attempt = uuid.uuid4().hex[:12]
    uploaded: list[str] = []
    try:
        async with scratch_dir(settings) as workdir:
            original = workdir / "original"
            await download(
                s3, settings.s3_bucket, job.s3_key, original, settings.media_transfer_chunk_bytes
            )
            made = await transcode(original, workdir, settings, kind=job.kind)
            original.unlink()  # free the scratch space before uploading
            renditions = []
            for local in made.renditions:
                key = f"{job.prefix}{attempt}/{local.path.name}"
                uploaded.append(key)
                await upload(
                    s3,
                    settings.s3_bucket,
                    key,
                    local.path,
                    local.content_type,
                    settings.media_transfer_chunk_bytes,
                )
                size = local.size_bytes
                renditions.append(
                    Rendition(local.name, key, local.content_type, size, local.width, local.height)
                )
    except MediaUnprocessable as exc:
        log.info("media_unprocessable", media_id=str(job.media_id), code=exc.code)
        return Failed(exc.code, exc.reason)
    except BaseException:
        await asyncio.shield(delete_objects(s3, settings.s3_bucket, uploaded))
        raise
    thumbnail = next(r.key for r in renditions if r.name == made.thumbnail)
    return Ready(made.probe, renditions, thumbnail)


RecordResult = Literal["ready", "failed", "gone", "superseded"]


async def record_outcome(session: AsyncSession, job: Job, outcome: Outcome) -> RecordResult:
    """Record what processing made of the asset: `ready` with its metadata and renditions
    (their bytes counted in the tenant's storage), or `failed` with the reason.

    A step of the caller's transaction (the media worker's, with its processed_events
    marker): takes that session, never begins or commits. Locks the asset and re-checks
    it: "gone" (deleted meanwhile) or "superseded" (no longer processing) records nothing,
    and the caller deletes the renditions it uploaded."""
    asset = await session.scalar(
        select(MediaAsset)
        .where(MediaAsset.tenant_id == job.tenant_id, MediaAsset.id == job.media_id)
        .with_for_update()
    )
    if asset is None:
        return "gone"
    if asset.status != MediaStatus.PROCESSING:
        return "superseded"
    asset.processed_at = datetime.now(UTC)
    if isinstance(outcome, Failed):
        asset.status = MediaStatus.FAILED
        asset.error_code = outcome.code
        asset.error_reason = outcome.reason
        return "failed"
    found = outcome.probe
    asset.duration_ms = found.duration_ms
    asset.width = found.width
    asset.height = found.height
    asset.video_codec = found.video_codec
    asset.audio_codec = found.audio_codec
    asset.renditions = [asdict(r) for r in outcome.renditions]
    asset.thumbnail_key = outcome.thumbnail_key
    asset.error_code = None
    asset.error_reason = None
    asset.status = MediaStatus.READY
    await quota.add_stored(session, asset, sum(r.size_bytes for r in outcome.renditions))
    return "ready"
