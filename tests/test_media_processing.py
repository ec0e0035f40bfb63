"""Media processing of local files with the real ffmpeg (app/media/processing.py): what
ffprobe reads, the renditions ffmpeg writes, how bad files fail, and that a stopped job
leaves no ffmpeg and no scratch files behind. S3 transfers against moto."""

import asyncio
import os
import tracemalloc
import uuid
from pathlib import Path

import pytest

from app.infra import aws
from app.infra.settings import Settings
from app.media import processing
from app.media.processing import MediaUnprocessable
from tests.media_clips import (
    ended,
    ffmpeg_processes,
    make_clip,
    make_garbage,
    make_image,
    probe,
    top_level_boxes,
    wait_for_transcode,
)

FAST = Settings(media_video_preset="ultrafast")


def _streams(path: Path) -> dict[str, dict]:
    return {s["codec_type"]: s for s in probe(path)["streams"]}


async def test_a_1080p_clip_becomes_a_720p_h264_aac_mp4_with_faststart_and_a_poster(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", 2, 1920, 1080)
    assert top_level_boxes(clip).index("mdat") < top_level_boxes(clip).index("moov")
    work = tmp_path / "work"
    work.mkdir()

    made = await processing.transcode(clip, work, FAST)

    assert (made.probe.width, made.probe.height) == (1920, 1080)
    assert (made.probe.video_codec, made.probe.audio_codec) == ("h264", "aac")
    assert abs(made.probe.duration_ms - 2000) <= 200
    video, poster = made.renditions
    assert (video.name, video.content_type, video.width, video.height) == (
        "720p",
        "video/mp4",
        1280,
        720,
    )
    streams = _streams(video.path)
    assert (streams["video"]["codec_name"], streams["audio"]["codec_name"]) == ("h264", "aac")
    assert (streams["video"]["width"], streams["video"]["height"]) == (1280, 720)
    assert abs(float(probe(video.path)["format"]["duration"]) - 2.0) <= 0.2
    boxes = top_level_boxes(video.path)
    assert boxes.index("moov") < boxes.index("mdat")  # plays while it downloads
    assert (poster.name, poster.content_type, made.thumbnail) == ("poster", "image/jpeg", "poster")
    assert poster.path.read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG
    assert _streams(poster.path)["video"]["codec_name"] == "mjpeg"
    assert (_streams(poster.path)["video"]["width"], poster.height) == (1280, 720)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1280, 960), (960, 720)),  # 4:3: the height bounds it
        ((720, 1280), (720, 1280)),  # portrait 720p stays as it is
        ((1080, 1920), (720, 1280)),  # portrait 1080p: 720 wide
        ((320, 240), (320, 240)),  # never upscaled
        ((2560, 720), (1280, 360)),  # very wide: the width bounds it
    ],
    ids=["4:3", "portrait-720p", "portrait-1080p", "small", "wide"],
)
async def test_the_rendition_keeps_the_aspect_within_720p_and_is_never_upscaled(
    tmp_path, size, expected
):
    clip = make_clip(tmp_path / "in.mp4", 0.5, *size, audio=False)
    made = await processing.transcode(clip, tmp_path, FAST)
    video = made.renditions[0]
    assert (video.width, video.height) == expected
    streams = _streams(video.path)
    assert (streams["video"]["width"], streams["video"]["height"]) == expected
    assert "audio" not in streams and made.probe.audio_codec is None


async def test_a_rotated_phone_video_is_measured_and_transcoded_upright(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", 0.5, 1280, 720)
    rotated = tmp_path / "rotated.mp4"
    proc = await asyncio.create_subprocess_exec(
        *("ffmpeg", "-v", "error", "-y", "-i", str(clip), "-c", "copy"),
        *("-metadata:s:v", "rotate=90", str(rotated)),
    )
    assert await proc.wait() == 0

    made = await processing.transcode(rotated, tmp_path, FAST)

    assert (made.probe.width, made.probe.height) == (720, 1280)
    streams = _streams(made.renditions[0].path)
    assert (streams["video"]["width"], streams["video"]["height"]) == (720, 1280)


@pytest.mark.parametrize("suffix", ["png", "jpg", "webp"])
async def test_an_image_gets_a_thumbnail_jpeg_only(tmp_path, suffix):
    image = make_image(tmp_path / f"in.{suffix}", 1600, 1200)
    made = await processing.transcode(image, tmp_path, FAST, kind="image")
    assert (made.probe.width, made.probe.height, made.probe.duration_ms) == (1600, 1200, None)
    [thumbnail] = made.renditions
    assert (thumbnail.name, thumbnail.content_type, made.thumbnail) == (
        "thumbnail",
        "image/jpeg",
        "thumbnail",
    )
    assert thumbnail.path.read_bytes()[:3] == b"\xff\xd8\xff"
    assert (thumbnail.width, thumbnail.height) == (720, 540)
    stream = _streams(thumbnail.path)["video"]
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("mjpeg", 720, 540)


async def test_random_bytes_are_unreadable_media(tmp_path):
    garbage = make_garbage(tmp_path / "swing.mp4")
    with pytest.raises(MediaUnprocessable) as failed:
        await processing.transcode(garbage, tmp_path, FAST)
    assert failed.value.code == "unreadable_media"
    assert "Invalid data" in failed.value.reason
    assert str(tmp_path) not in failed.value.reason  # no worker paths in what users read


async def test_a_still_image_uploaded_as_a_video_has_no_video_stream(tmp_path):
    image = make_image(tmp_path / "swing.png", 64, 64)
    with pytest.raises(MediaUnprocessable) as failed:
        await processing.transcode(image, tmp_path, FAST, kind="video")
    assert failed.value.code == "no_video_stream"


async def test_sound_alone_has_no_video_stream(tmp_path):
    sound = tmp_path / "sound.m4a"
    proc = await asyncio.create_subprocess_exec(
        *("ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=duration=1"),
        *("-c:a", "aac", str(sound)),
    )
    assert await proc.wait() == 0
    with pytest.raises(MediaUnprocessable) as failed:
        await processing.transcode(sound, tmp_path, FAST)
    assert failed.value.code == "no_video_stream"


async def test_an_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path):
    image = make_image(tmp_path / "big.png", 400, 300)
    settings = FAST.model_copy(update={"media_max_pixels": 400 * 300 - 1})
    with pytest.raises(MediaUnprocessable) as failed:
        await processing.transcode(image, tmp_path, settings, kind="image")
    assert failed.value.code == "dimensions_too_large"
    assert list(tmp_path.glob("thumbnail*")) == []


def _slow(settings: Settings = FAST) -> Settings:
    """Settings under which a transcode of long_clip runs for many seconds."""
    return settings.model_copy(update={"media_video_preset": "veryslow", "media_ffmpeg_threads": 1})


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "long.mp4", 30, 640, 480)


async def test_a_transcode_past_the_timeout_is_stopped_and_fails(tmp_path, long_clip):
    settings = _slow().model_copy(update={"media_transcode_timeout_seconds": 1})
    with pytest.raises(MediaUnprocessable) as failed:
        await processing.transcode(long_clip, tmp_path, settings)
    assert failed.value.code == "transcode_timeout"
    assert ffmpeg_processes(os.getpid()) == {}


async def test_a_cancelled_job_kills_ffmpeg_and_removes_its_scratch_files(tmp_path, long_clip):
    settings = _slow().model_copy(update={"media_scratch_dir": str(tmp_path / "scratch")})
    workdirs: list[Path] = []

    async def job() -> None:
        async with processing.scratch_dir(settings) as workdir:
            workdirs.append(workdir)
            await processing.transcode(long_clip, workdir, settings)

    task = asyncio.create_task(job())
    running = await wait_for_transcode(os.getpid())
    assert any(workdirs[0].iterdir())  # files in the scratch directory
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert ffmpeg_processes(os.getpid()) == {}
    assert ended(running)  # killed and reaped
    assert list((tmp_path / "scratch").iterdir()) == []


def test_ffmpeg_threads_follow_the_setting_or_the_cpus_this_process_may_use():
    assert processing.ffmpeg_threads(FAST.model_copy(update={"media_ffmpeg_threads": 3})) == 3
    assert 1 <= processing.ffmpeg_threads(FAST) <= len(os.sched_getaffinity(0))


async def test_transfers_stream_in_chunks_and_a_big_file_goes_up_in_parts(settings, tmp_path):
    chunk = 5 * 1024 * 1024
    original = tmp_path / "big.bin"
    original.write_bytes(os.urandom(4 * chunk + 1234))
    key = f"tenants/{uuid.uuid4()}/media/{uuid.uuid4()}/test/big.bin"
    async with aws.client(settings, "s3") as s3:
        tracemalloc.start()
        try:
            await processing.upload(
                s3, settings.s3_bucket, key, original, "video/mp4", chunk_bytes=chunk
            )
            _, upload_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            copy = tmp_path / "copy.bin"
            size = await processing.download(s3, settings.s3_bucket, key, copy, chunk)
            _, download_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        head = await s3.head_object(Bucket=settings.s3_bucket, Key=key)

    assert size == original.stat().st_size == head["ContentLength"]
    assert copy.read_bytes() == original.read_bytes()
    assert head["ContentType"] == "video/mp4"
    assert head["ETag"].strip('"').endswith("-5")  # five parts, not one PUT
    # A part or a chunk at a time, never the whole 20 MiB file.
    assert upload_peak < 3 * chunk, upload_peak
    assert download_peak < 3 * chunk, download_peak


async def test_a_missing_original_is_unprocessable_not_retried(settings, tmp_path):
    async with aws.client(settings, "s3") as s3:
        with pytest.raises(MediaUnprocessable) as failed:
            await processing.download(
                s3, settings.s3_bucket, f"tenants/{uuid.uuid4()}/nothing", tmp_path / "x", 1024
            )
    assert failed.value.code == "original_missing"
