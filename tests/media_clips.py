"""Media files made by the real ffmpeg, for tests and benchmarks.

make_clip(path, seconds, width, height)   an H.264/AAC MP4: lavfi testsrc + a sine tone
make_image(path, width, height)           a still image; its format from the suffix
                                          (.png, .jpg/.jpeg, .webp)
make_garbage(path, nbytes)                random bytes (a "video" no decoder can read)
probe(path)                               ffprobe's JSON of format and streams
top_level_boxes(path)                     an MP4's top-level box types, in file order
ffmpeg_processes(parent_pid)              running ffmpeg/ffprobe children, from /proc
await wait_for_transcode(parent_pid)      ... once one of them transcodes
"""

import asyncio
import json
import os
import random
import struct
import subprocess
from collections.abc import Iterable
from pathlib import Path


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", *args],
        check=True,
        timeout=600,
    )


def make_clip(
    path: Path | str,
    seconds: float,
    width: int,
    height: int,
    *,
    rate: int = 25,
    audio: bool = True,
    preset: str = "ultrafast",
) -> Path:
    """An MP4 of `seconds` of ffmpeg's test pattern at width x height, with a 440 Hz tone
    (AAC) unless audio=False. The moov atom stays at the end (no +faststart), as a camera
    or a phone writes it."""
    path = Path(path)
    source = f"testsrc=size={width}x{height}:rate={rate}:duration={seconds}"
    inputs = ["-f", "lavfi", "-i", source]
    codecs = ["-c:v", "libx264", "-preset", preset, "-pix_fmt", "yuv420p"]
    if audio:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
        codecs += ["-c:a", "aac", "-b:a", "96k"]
    _ffmpeg(*inputs, *codecs, "-t", str(seconds), str(path))
    return path


def make_image(path: Path | str, width: int = 1600, height: int = 1200) -> Path:
    """One frame of the test pattern, encoded by the path's suffix (.png, .jpg, .webp)."""
    path = Path(path)
    _ffmpeg("-f", "lavfi", "-i", f"testsrc=size={width}x{height}", "-frames:v", "1", str(path))
    return path


def make_garbage(path: Path | str, nbytes: int = 256 * 1024, *, seed: int = 0) -> Path:
    """Pseudo-random bytes that no demuxer recognises, whatever the name says. Seeded: now
    and then truly random bytes hold something ffprobe takes for an audio stream, and a
    test must get the same file every run."""
    path = Path(path)
    path.write_bytes(random.Random(seed).randbytes(nbytes))
    return path


def probe(path: Path | str) -> dict:
    """ffprobe's view of a file: {"format": {...}, "streams": [...]}."""
    result = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "format=format_name,duration:stream=codec_type,codec_name,width,height,duration",
            "-of",
            "json",
            str(path),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return json.loads(result.stdout)


def top_level_boxes(path: Path | str) -> list[str]:
    """The types of an MP4's top-level boxes in file order (faststart: moov before mdat)."""
    boxes = []
    with Path(path).open("rb") as f:
        while header := f.read(8):
            if len(header) < 8:
                break
            size, kind = struct.unpack(">I4s", header)
            boxes.append(kind.decode("latin-1"))
            if size == 1:  # a 64-bit size follows
                size = struct.unpack(">Q", f.read(8))[0]
                f.seek(size - 16, os.SEEK_CUR)
            elif size == 0:  # to the end of the file
                break
            else:
                f.seek(size - 8, os.SEEK_CUR)
    return boxes


def ffmpeg_processes(parent_pid: int | None = None) -> dict[int, list[str]]:
    """Running ffmpeg/ffprobe processes (pid: command line), children of `parent_pid` if
    given, read from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # ended meanwhile
        # stat: "pid (comm) state ppid ...": comm may hold spaces, so split after ")".
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        if comm not in ("ffmpeg", "ffprobe") or state == "Z":
            continue
        if parent_pid is None or int(ppid) == parent_pid:
            found[int(entry.name)] = [part.decode(errors="replace") for part in cmdline if part]
    return found


async def wait_for_transcode(parent_pid: int, timeout: float = 60) -> dict[int, list[str]]:
    """The ffmpeg/ffprobe children of `parent_pid` once one of them transcodes (its
    command line carries +faststart); AssertionError if none does within `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        running = ffmpeg_processes(parent_pid)
        if any("+faststart" in args for args in running.values()):
            return running
        await asyncio.sleep(0.02)
    raise AssertionError(f"no transcode started under pid {parent_pid} in {timeout:g} s")


def ended(pids: Iterable[int]) -> bool:
    """Whether none of these processes exists any more (killed and reaped)."""
    return not any(Path(f"/proc/{pid}").exists() for pid in pids)
