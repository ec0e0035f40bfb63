"""Background workers, each run as `courtside worker NAME`.

WORKERS maps a worker's name to "module:function", an async function taking Settings.
"""

WORKERS: dict[str, str] = {
    "outbox-relay": "workers.outbox_relay:run",
    "notifications": "workers.notifications:run",
    "scheduler": "workers.scheduler:run",
    "media": "workers.media:run",
}
