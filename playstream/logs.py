"""Structured, quiet-by-default logging: one JSON object per line on stderr.

Library code logs with ``extra={...}`` fields (stream, position, game_id, path); the CLI
turns them into JSON so that operators can grep and ship them. Default level is WARNING so
a normal run prints only its progress bar and summary, and the Kafka clients' own loggers
(kafka-python, aiokafka) are silenced below CRITICAL unless ``--log-level info`` or ``debug``
is asked for.
"""
from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

_STANDARD = set(vars(logging.makeLogRecord({})))
# The level of each third-party logger at the default (or a higher) log level.
THIRD_PARTY_LOGGERS = {"kafka": logging.CRITICAL, "aiokafka": logging.CRITICAL,
                       "faust": logging.ERROR, "mode": logging.ERROR}


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
    # The Kafka clients log every refused connection, at error level, while a broker is down;
    # playstream reports the failure itself (one line naming the broker). So at the default
    # level they say only what is CRITICAL. faust and mode stay at ERROR: their error lines
    # are a stream worker's crash report (the agent's traceback). --log-level info or debug
    # shows all of them at that level, in the same JSON form.
    asked = root.level <= logging.INFO
    for name, quiet_level in THIRD_PARTY_LOGGERS.items():
        client = logging.getLogger(name)
        client.handlers[:] = [handler]
        client.setLevel(root.level if asked else max(quiet_level, root.level))
        client.propagate = False
