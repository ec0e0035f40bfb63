"""Media benchmark (`make bench-media`): uploads through the product against raw presigned
PUTs, and the processing of a 60 s 1080p clip by the real media worker.

Everything runs for real on this machine: PostgreSQL, moto's S3/SQS server over HTTP, the
API (uvicorn, in a subprocess) and the media worker (`courtside worker media`, in a
subprocess), ffmpeg. Tenant, users and sessions are seeded in the database as
bench/feed.py does; requests carry access tokens of those sessions.

1. Uploads, MB = 10^6 bytes. 20 uploads of 50 MB at once, each by its own user:
   - product: POST /media/upload-intent, PUT each part (16 MiB, MEDIA_PART_SIZE_BYTES) to
     its presigned UploadPart URL with httpx (the parts of one upload one after the other,
     as a plain client does), POST /media/{id}/finalize (which completes the multipart
     upload in S3, checks it, settles the quota and writes media.process);
   - raw PUT (the baseline): one presigned put_object PUT of the same 50 MB per upload,
     URLs signed beforehand, same concurrency, same S3 server;
   - raw multipart (for reference): the same parts as the product, created, presigned and
     completed straight against S3, without the API.
   MB/s = all bytes / wall time from the first request to the last answer, over ROUNDS
   interleaved rounds (the order turned around each round). Objects are deleted after
   each run (moto keeps them in memory): the product's through DELETE /media/{id}.
   "of raw PUT" is the issue's ratio; against moto it also carries the cost of multipart
   itself (moto copies and hashes every part again on completion, in one Python process
   that is the bottleneck here), which the raw multipart figure isolates.
2. Processing. A 60 s 1920x1080 30 fps clip (lavfi testsrc2 and a sine tone, x264
   ultrafast, about 18 Mbit/s like a phone's) is generated into a temp dir, uploaded
   through the API like above, and its media.process event relayed to the media queue by
   the outbox relay (workers/outbox_relay.py, in this process). The worker, started and
   idle beforehand, downloads the original, probes it, transcodes it to 720p H.264/AAC,
   makes the poster, uploads both and records the asset ready. Transcode speed = clip
   seconds / job wall time (relay start to the asset's processed_at); the 720p ffmpeg
   step alone is shown too. RSS is sampled every 50 ms with psutil: the worker's Python
   process (its kernel high-water mark VmHWM too) and, separately, its ffmpeg/ffprobe
   children.

Targets (printed, met or not; timings are never asserted): upload >= 0.8 of raw PUT,
transcode >= 1x real time, worker peak RSS <= 300 MB. All processes share this machine's
cores (2 here, with other people's work).
"""

import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
import psutil  # noqa: E402

from app.auth.security import AccessClaims, issue_access_token  # noqa: E402
from app.infra import aws  # noqa: E402
from app.infra.db import asyncpg_dsn  # noqa: E402
from app.infra.settings import Settings  # noqa: E402
from bench.common import Stack, python  # noqa: E402
from courtside.local import devstack  # noqa: E402
from workers.outbox_relay import OutboxRelay, Publisher  # noqa: E402

UPLOADS = 20
ROUNDS = 2
FILE_BYTES = 50 * 1000 * 1000
CLIP_SECONDS, CLIP_SIZE, CLIP_FPS = 60, "1920x1080", 30
SAMPLE_SECONDS = 0.05
PROCESS_TIMEOUT_S = 300
MB = 1e6
MIB = 1024 * 1024
TARGET_RATIO, TARGET_SPEED, TARGET_RSS_MB = 0.8, 1.0, 300


def session_of(user: uuid.UUID) -> uuid.UUID:
    """The bench user's one session: the API checks each token's session is live."""
    return uuid.uuid5(user, "bench-session")


async def seed(dsn: str) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """One tenant (the platform's default storage limits) with an athlete per upload."""
    tenant = uuid.uuid4()
    users = [uuid.uuid4() for _ in range(UPLOADS)]
    now = datetime.now(UTC)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO tenants (id, slug, name) VALUES ($1, $2, 'Bench media')",
            tenant,
            f"bench-media-{tenant.hex[:8]}",
        )
        await conn.copy_records_to_table(
            "users",
            records=[
                (u, f"m{i}-{u.hex[:8]}@bench.test", "Bench", "x", tenant)
                for i, u in enumerate(users)
            ],
            columns=["id", "email", "name", "password_hash", "default_tenant_id"],
        )
        await conn.copy_records_to_table(
            "tenant_memberships",
            records=[(tenant, u, "ATHLETE", now) for u in users],
            columns=["tenant_id", "user_id", "role", "created_at"],
        )
        await conn.copy_records_to_table(
            "refresh_tokens",
            records=[
                (tenant, u, session_of(u), uuid.uuid4().hex, now + timedelta(days=1)) for u in users
            ],
            columns=["tenant_id", "user_id", "family_id", "token_hash", "expires_at"],
        )
    finally:
        await conn.close()
    return tenant, users


# --- Phase 1: uploads ----------------------------------------------------------------------


@dataclass
class Steps:
    """Per-upload step durations (seconds) of one phase."""

    before: list[float] = field(default_factory=list)  # intent / create+sign
    puts: list[float] = field(default_factory=list)  # all of one upload's PUTs
    after: list[float] = field(default_factory=list)  # finalize / complete
    wall: float = 0.0  # first request to last answer, all uploads
    cleanup: float = 0.0  # deleting what the run stored

    @staticmethod
    def _show(values: list[float]) -> str:
        if not values:
            return "-"
        return f"median {statistics.median(values):.2f} s, max {max(values):.2f} s"

    def describe(self, before: str, after: str) -> str:
        parts = []
        if self.before:
            parts.append(f"{before} {self._show(self.before)}")
        parts.append(f"PUTs {self._show(self.puts)}")
        if self.after:
            parts.append(f"{after} {self._show(self.after)}")
        return "; ".join(parts)


def _client() -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=UPLOADS * 2, max_keepalive_connections=UPLOADS * 2)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(300.0))


async def _put_parts(
    http: httpx.AsyncClient, urls: list[tuple[int, str]], data: bytes, part_size: int
) -> list[dict[str, object]]:
    """PUT each part to its URL in turn; the ETags S3 answered."""
    etags: list[dict[str, object]] = []
    for number, url in urls:
        chunk = data[(number - 1) * part_size : number * part_size]
        response = await http.put(url, content=chunk)
        response.raise_for_status()
        etags.append({"part_number": number, "etag": response.headers["ETag"]})
    return etags


async def product_upload(
    http: httpx.AsyncClient,
    api: str,
    token: str,
    data: bytes,
    steps: Steps,
    *,
    filename: str = "swing.mp4",
) -> str:
    """The product's flow for one file; its media id."""
    auth = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    response = await http.post(
        f"{api}/media/upload-intent",
        json={"filename": filename, "content_type": "video/mp4", "size_bytes": len(data)},
        headers=auth,
    )
    response.raise_for_status()
    intent = response.json()
    intent_done = time.perf_counter()
    urls = [(p["part_number"], p["url"]) for p in intent["parts"]]
    etags = await _put_parts(http, urls, data, intent["part_size"])
    puts_done = time.perf_counter()
    response = await http.post(
        f"{api}/media/{intent['media_id']}/finalize", json={"parts": etags}, headers=auth
    )
    response.raise_for_status()
    if response.json()["status"] != "processing":
        raise RuntimeError(f"finalize answered {response.json()}")
    steps.before.append(intent_done - started)
    steps.puts.append(puts_done - intent_done)
    steps.after.append(time.perf_counter() - puts_done)
    return str(intent["media_id"])


async def raw_put(http: httpx.AsyncClient, url: str, data: bytes, steps: Steps) -> None:
    started = time.perf_counter()
    response = await http.put(url, content=data)
    response.raise_for_status()
    steps.puts.append(time.perf_counter() - started)


async def raw_multipart(
    http: httpx.AsyncClient, s3, bucket: str, key: str, data: bytes, part_size: int, steps: Steps
) -> None:  # noqa: ANN001
    """What the product does, straight against S3: create, sign, PUT parts, complete."""
    started = time.perf_counter()
    upload_id = (await s3.create_multipart_upload(Bucket=bucket, Key=key))["UploadId"]
    count = -(-len(data) // part_size)
    urls = [
        (
            n,
            await s3.generate_presigned_url(
                "upload_part",
                Params={"Bucket": bucket, "Key": key, "UploadId": upload_id, "PartNumber": n},
                ExpiresIn=900,
            ),
        )
        for n in range(1, count + 1)
    ]
    signed = time.perf_counter()
    etags = await _put_parts(http, urls, data, part_size)
    puts_done = time.perf_counter()
    await s3.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={
            "Parts": [{"PartNumber": e["part_number"], "ETag": e["etag"]} for e in etags]
        },
    )
    steps.before.append(signed - started)
    steps.puts.append(puts_done - signed)
    steps.after.append(time.perf_counter() - puts_done)


async def delete_prefix(s3, bucket: str, prefix: str) -> int:  # noqa: ANN001
    deleted = 0
    while True:
        page = await s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if not keys:
            return deleted
        await s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        deleted += len(keys)


def _size(size_bytes: int) -> str:
    return f"{size_bytes / MB:.1f} MB" if size_bytes >= MB else f"{size_bytes / 1000:.0f} kB"


def _rate(seconds: float) -> float:
    return UPLOADS * FILE_BYTES / MB / seconds


async def _raw_put_round(s3, http: httpx.AsyncClient, bucket: str, data: bytes) -> Steps:  # noqa: ANN001
    # URLs signed beforehand, as a client handed them would hold them.
    prefix = f"bench-raw-{uuid.uuid4().hex[:8]}/"
    urls = [
        await s3.generate_presigned_url(
            "put_object", Params={"Bucket": bucket, "Key": f"{prefix}{i}"}, ExpiresIn=900
        )
        for i in range(UPLOADS)
    ]
    steps = Steps()
    started = time.perf_counter()
    await asyncio.gather(*(raw_put(http, url, data, steps) for url in urls))
    steps.wall = time.perf_counter() - started
    started = time.perf_counter()
    await delete_prefix(s3, bucket, prefix)
    steps.cleanup = time.perf_counter() - started
    return steps


async def _multipart_round(
    s3,  # noqa: ANN001
    http: httpx.AsyncClient,
    bucket: str,
    data: bytes,
    part_size: int,
) -> Steps:
    prefix = f"bench-multipart-{uuid.uuid4().hex[:8]}/"
    steps = Steps()
    started = time.perf_counter()
    await asyncio.gather(
        *(
            raw_multipart(http, s3, bucket, f"{prefix}{i}", data, part_size, steps)
            for i in range(UPLOADS)
        )
    )
    steps.wall = time.perf_counter() - started
    started = time.perf_counter()
    await delete_prefix(s3, bucket, prefix)
    steps.cleanup = time.perf_counter() - started
    return steps


async def _product_round(
    http: httpx.AsyncClient, api: str, tokens: list[str], data: bytes, dsn: str
) -> Steps:
    steps = Steps()
    started = time.perf_counter()
    media_ids = await asyncio.gather(
        *(product_upload(http, api, token, data, steps) for token in tokens)
    )
    steps.wall = time.perf_counter() - started
    # The product's own deletion: S3 objects and the quota.
    started = time.perf_counter()
    deletions = await asyncio.gather(
        *(
            http.delete(f"{api}/media/{media_id}", headers={"Authorization": f"Bearer {t}"})
            for media_id, t in zip(media_ids, tokens, strict=True)
        )
    )
    for response in deletions:
        response.raise_for_status()
    steps.cleanup = time.perf_counter() - started
    # Their media.process events are not the processing phase's work.
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "DELETE FROM outbox_events WHERE event_type = 'media.process' "
            "AND aggregate_id = ANY($1::text[])",
            list(media_ids),
        )
    finally:
        await conn.close()
    return steps


@dataclass
class Uploads:
    raw: float  # MB/s
    product: float
    multipart: float


async def upload_phases(settings: Settings, api: str, tokens: list[str], dsn: str) -> Uploads:
    """Raw PUT, product and raw multipart, in ROUNDS interleaved rounds (the order turned
    around each round, so a burst of other work on the machine hits all three)."""
    data = os.urandom(FILE_BYTES)
    bucket, part_size = settings.s3_bucket, settings.media_part_size_bytes
    print(
        f"uploads: {UPLOADS} at once x {FILE_BYTES / MB:.0f} MB "
        f"({UPLOADS * FILE_BYTES / MB:.0f} MB a run), part size {part_size / MIB:.0f} MiB, "
        f"{ROUNDS} interleaved rounds; httpx client in this process"
    )
    labels = {
        "raw PUT": ("", ""),
        "product": ("intent", "finalize"),
        "raw multipart": ("create+sign", "complete"),
    }
    walls: dict[str, list[float]] = {name: [] for name in labels}
    async with aws.client(settings, "s3") as s3, _client() as http:
        runs = {
            "raw PUT": lambda: _raw_put_round(s3, http, bucket, data),
            "product": lambda: _product_round(http, api, tokens, data, dsn),
            "raw multipart": lambda: _multipart_round(s3, http, bucket, data, part_size),
        }
        for round_number in range(1, ROUNDS + 1):
            order = list(runs) if round_number % 2 else list(reversed(runs))
            for name in order:
                steps = await runs[name]()
                walls[name].append(steps.wall)
                before, after = labels[name]
                print(
                    f"  #{round_number} {name:13s} {_rate(steps.wall):6.1f} MB/s "
                    f"({steps.wall:5.2f} s; {steps.describe(before, after)}; "
                    f"deleted in {steps.cleanup:.2f} s)"
                )
    # All bytes over all the time: a round slowed by a neighbour counts for its length.
    rate = {name: _rate(sum(w) / len(w)) for name, w in walls.items()}
    print(
        f"  over {ROUNDS} rounds: raw PUT {rate['raw PUT']:.1f} MB/s, product "
        f"{rate['product']:.1f} MB/s, raw multipart {rate['raw multipart']:.1f} MB/s"
    )
    return Uploads(rate["raw PUT"], rate["product"], rate["raw multipart"])


# --- Phase 2: processing -------------------------------------------------------------------


def generate_clip(path: Path) -> None:
    subprocess.run(
        [  # noqa: S607
            "ffmpeg",
            "-nostdin",
            "-hide_banner",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={CLIP_SIZE}:rate={CLIP_FPS}:duration={CLIP_SECONDS}",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=440:sample_rate=48000:duration={CLIP_SECONDS}",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-crf",
            "20",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-shortest",
            str(path),
        ],
        check=True,
    )


@dataclass
class Child:
    """One ffmpeg/ffprobe child of the worker, as sampled."""

    name: str
    role: str
    first_seen: float
    last_seen: float
    peak_rss: int = 0


class RssSampler(threading.Thread):
    """Samples the worker's RSS and its children's every SAMPLE_SECONDS."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.stop_event = threading.Event()
        self.worker_peak = 0
        self.worker_samples: list[int] = []
        self.children: dict[int, Child] = {}
        self.samples = 0

    @staticmethod
    def _role(cmdline: list[str]) -> str:
        out = cmdline[-1] if cmdline else ""
        if out.endswith("720p.mp4"):
            return "720p transcode"
        if out.endswith("poster.jpg"):
            return "poster"
        if out.endswith("thumbnail.jpg"):
            return "thumbnail"
        return "probe"

    def run(self) -> None:
        while not self.stop_event.is_set():
            now = time.perf_counter()
            try:
                rss = self.process.memory_info().rss
                children = self.process.children(recursive=True)
            except psutil.NoSuchProcess:
                return
            self.worker_peak = max(self.worker_peak, rss)
            self.worker_samples.append(rss)
            self.samples += 1
            for child in children:
                try:
                    child_rss = child.memory_info().rss
                    seen = self.children.get(child.pid)
                    if seen is None:
                        seen = Child(child.name(), self._role(child.cmdline()), now, now)
                        self.children[child.pid] = seen
                    seen.last_seen = now
                    seen.peak_rss = max(seen.peak_rss, child_rss)
                except psutil.NoSuchProcess:
                    continue
            self.stop_event.wait(SAMPLE_SECONDS)

    def high_water_mark(self) -> int | None:
        """The kernel's own peak RSS of the worker (VmHWM), which no sample can miss."""
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None


@dataclass
class Processing:
    speed: float
    job_s: float
    worker_peak_mb: float
    worker_hwm_mb: float | None
    ffmpeg_peak_mb: float


async def processing_phase(
    stack: Stack, api: str, token: str, queue_urls: dict[str, str]
) -> Processing:
    settings = stack.settings
    workdir = stack.workdir / "clip"
    workdir.mkdir()
    clip = workdir / "clip.mp4"
    started = time.perf_counter()
    await asyncio.to_thread(generate_clip, clip)
    size = clip.stat().st_size
    print(
        f"processing: {CLIP_SECONDS} s {CLIP_SIZE} {CLIP_FPS} fps clip (testsrc2 + sine, "
        f"x264 ultrafast crf 20), {size / MB:.0f} MB "
        f"({size * 8 / CLIP_SECONDS / 1e6:.1f} Mbit/s), generated in "
        f"{time.perf_counter() - started:.1f} s"
    )

    # The worker, started and idle before its job arrives, with a scratch dir of its own.
    metrics_port = devstack.free_port()
    scratch = stack.workdir / "scratch"
    worker = stack.serve(
        [python(), "-m", "courtside.cli", "worker", "media"],
        metrics_port,
        env={
            "METRICS_PORT": str(metrics_port),
            "SQS_MEDIA_QUEUE_URL": queue_urls["media"],
            "SQS_NOTIFICATIONS_QUEUE_URL": queue_urls["notifications"],
            "MEDIA_SCRATCH_DIR": str(scratch),
        },
    )
    sampler = RssSampler(worker.pid)
    sampler.start()

    async with _client() as http:
        started = time.perf_counter()
        data = clip.read_bytes()
        media_id = await product_upload(http, api, token, data, Steps(), filename="clip.mp4")
        del data
        print(
            f"  uploaded through the API (intent, parts, finalize) in "
            f"{time.perf_counter() - started:.1f} s"
        )

    pool = await asyncpg.create_pool(
        asyncpg_dsn(settings.relay_database_url), min_size=1, max_size=2
    )
    conn = await asyncpg.connect(stack.superuser_dsn)
    try:
        async with aws.client(settings, "sqs") as sqs:
            relay = OutboxRelay(settings, Publisher(sqs, queue_urls), pool)
            job_started = datetime.now(UTC)
            job_started_perf = time.perf_counter()
            sent = await relay.drain()
        if sent != 1:
            raise RuntimeError(f"the relay sent {sent} events, expected the clip's one")
        deadline = time.perf_counter() + PROCESS_TIMEOUT_S
        while True:
            row = await conn.fetchrow(
                "SELECT status, processed_at, duration_ms, width, height, renditions, "
                "error_reason FROM media_assets WHERE id = $1",
                uuid.UUID(media_id),
            )
            if row["status"] in ("ready", "failed"):
                break
            if worker.poll() is not None:
                raise RuntimeError(f"the media worker exited ({worker.returncode})")
            if time.perf_counter() > deadline:
                raise RuntimeError(f"not processed within {PROCESS_TIMEOUT_S} s")
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
        await pool.close()
    hwm = sampler.high_water_mark()
    sampler.stop_event.set()
    sampler.join()
    if row["status"] != "ready":
        raise RuntimeError(f"the clip ended {row['status']}: {row['error_reason']}")
    job_s = (row["processed_at"] - job_started).total_seconds()
    speed = CLIP_SECONDS / job_s

    steps = {}
    for child in sampler.children.values():
        seconds = child.last_seen - child.first_seen
        name = child.role
        steps.setdefault(name, [0.0, 0, 0])
        steps[name][0] += seconds
        steps[name][1] = max(steps[name][1], child.peak_rss)
        steps[name][2] += 1
    transcode_s = steps.get("720p transcode", [0.0])[0]
    first_tool = min((c.first_seen for c in sampler.children.values()), default=job_started_perf)
    last_tool = max((c.last_seen for c in sampler.children.values()), default=job_started_perf)
    ffmpeg_peak = max((c.peak_rss for c in sampler.children.values()), default=0)
    renditions = row["renditions"]
    renditions = json.loads(renditions) if isinstance(renditions, str) else renditions or []
    print(
        f"  ready: original {row['duration_ms'] / 1000:.2f} s {row['width']}x{row['height']}; "
        + ", ".join(
            f"{r['name']} {r.get('width')}x{r.get('height')} {_size(r['size_bytes'])}"
            for r in renditions
        )
    )
    print(
        f"  job (relay start -> processed_at): {job_s:.1f} s = {speed:.2f}x real time; "
        f"until the first ffprobe (SQS receive + download {size / MB:.0f} MB): "
        f"{first_tool - job_started_perf:.1f} s; after the last ffmpeg (upload renditions, "
        f"record): {job_s - (last_tool - job_started_perf):.1f} s"
    )
    for name, (seconds, peak, count) in sorted(steps.items(), key=lambda s: -s[1][0]):
        print(
            f"  ffmpeg step {name:15s} ~{seconds:5.1f} s ({count} process{'es' * (count > 1)}), "
            f"peak RSS {peak / MIB:.0f} MB"
        )
    if transcode_s:
        print(f"  720p transcode alone: {CLIP_SECONDS / transcode_s:.2f}x real time")
    worker_peak = sampler.worker_peak / MIB
    idle = sampler.worker_samples[0] / MIB if sampler.worker_samples else 0.0
    print(
        f"  RSS, worker Python process: peak {worker_peak:.0f} MB sampled "
        f"({sampler.samples} samples, idle at {idle:.0f} MB), kernel high-water mark "
        f"{(hwm or 0) / MIB:.0f} MB; its ffmpeg/ffprobe children: peak {ffmpeg_peak / MIB:.0f} "
        f"MB (sampled; MB = MiB here)"
    )
    return Processing(
        speed=speed,
        job_s=job_s,
        worker_peak_mb=max(worker_peak, (hwm or 0) / MIB),
        worker_hwm_mb=(hwm / MIB) if hwm else None,
        ffmpeg_peak_mb=ffmpeg_peak / MIB,
    )


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> None:
    stack = Stack()
    moto = None
    try:
        if not os.environ.get("AWS_ENDPOINT_URL"):
            moto = devstack.MotoServer(stack.workdir).start()
            aws_env = {
                "AWS_ENDPOINT_URL": moto.url,
                "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test",
            }
            os.environ.update(aws_env)
            stack.env.update(aws_env)
            stack.settings = Settings()
        settings = stack.settings
        queue_urls = asyncio.run(aws.ensure_resources(settings, prefix="bench-media"))
        tenant, users = asyncio.run(seed(stack.superuser_dsn))
        tokens = [
            issue_access_token(settings, AccessClaims(u, tenant, session_of(u)), role="ATHLETE")
            for u in users
        ]
        api_port = devstack.free_port()
        stack.serve_api(
            api_port,
            env={
                "RATE_LIMIT_MAX_PER_IP": "100000000",
                "RATE_LIMIT_MAX_PER_USER": "100000000",
                "RATE_LIMIT_MAX_PER_TENANT": "100000000",
                "RATE_LIMIT_BURST": "1000000",  # the burst is in units of the steady rate
                "METRICS_PORT": str(devstack.free_port()),
            },
        )
        api = f"http://127.0.0.1:{api_port}"
        print(
            f"one uvicorn API worker, moto server, PostgreSQL, the client (and later the media "
            f"worker and ffmpeg) share this machine's {os.cpu_count()} cores"
        )
        uploads = asyncio.run(upload_phases(settings, api, tokens, stack.superuser_dsn))
        product, ratio = uploads.product, uploads.product / uploads.raw
        print(
            f"  product / raw PUT {ratio:.2f}; product / raw multipart "
            f"{product / uploads.multipart:.2f}; raw multipart / raw PUT "
            f"{uploads.multipart / uploads.raw:.2f}"
        )
        processed = asyncio.run(processing_phase(stack, api, tokens[0], queue_urls))
        print(
            f"targets: upload >= {TARGET_RATIO} of raw PUT ({_met(ratio >= TARGET_RATIO)}, "
            f"{ratio:.2f}); transcode >= {TARGET_SPEED:g}x real time "
            f"({_met(processed.speed >= TARGET_SPEED)}, {processed.speed:.2f}x); worker peak "
            f"RSS <= {TARGET_RSS_MB} MB ({_met(processed.worker_peak_mb <= TARGET_RSS_MB)}, "
            f"{processed.worker_peak_mb:.0f} MB; ffmpeg's own peak "
            f"{processed.ffmpeg_peak_mb:.0f} MB, not counted)"
        )
        print(
            f"media: {product:.0f} MB/s upload, {ratio:.2f} of raw PUT, transcode "
            f"{processed.speed:.1f}x real time, worker peak RSS {processed.worker_peak_mb:.0f} MB"
        )
    finally:
        if moto is not None:
            moto.stop()
        stack.close()


if __name__ == "__main__":
    main()
