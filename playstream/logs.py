"""Structured, quiet-by-default logging: one JSON object per line on stderr.

Library code logs with ``extra={...}`` fields (stream, position, game_id, path); the CLI
turns them into JSON so that operators can grep and ship them. Default level is WARNING so
a normal run prints only its progress bar and summary, and the Kafka clients' own loggers are
silenced below CRITICAL unless ``--log-level info`` or ``debug`` is asked for.
"""
from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

_STANDARD = set(vars(logging.makeLogRecord({})))
THIRD_PARTY_LOGGERS = ("kafka", "aiokafka", "faust", "mode")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
               "level": record.levelname.lower(), "logger": record.name,
               "msg": record.getMessage()}
        out.update({k: v for k, v in vars(record).items()
                    if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure(level: str = "warning") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("playstream")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # Kafka clients log every refused connection, at error level, while a broker is down;
    # playstream reports the failure itself (one line naming the broker). So at the default
    # level the clients say only what is CRITICAL; --log-level info or debug shows their view
    # too, in the same JSON form.
    client_level = root.level if root.level <= logging.INFO else logging.CRITICAL
    for name in THIRD_PARTY_LOGGERS:
        client = logging.getLogger(name)
        client.handlers[:] = [handler]
        client.setLevel(client_level)
        client.propagate = False
