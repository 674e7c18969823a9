"""The kafka-python network client of playstream's consumers, with a race-free close.

kafka-python 3.0.12 drives each consumer's sockets from a background IO thread, but
``KafkaNetClient.close()`` closes the connections from the caller's thread *before* it stops
that IO thread. A fetch response still being read at that moment (the IO thread loops over
``sock.recv`` until the socket would block) then finds the transport's socket set to None
under it, and kafka.net.transport logs an error-level traceback,
``AttributeError: 'NoneType' object has no attribute 'recv'``, on every unlucky shutdown
(reproduced: 1 in 20 closes of a consumer fetching 20 kB records). Nothing is lost, but an
operator reading the log sees a crash.

`StopIOFirstClient` stops (joins) the IO thread first, so the connections are closed by the
one thread left. The consumer has already left its group by then (``KafkaConsumer.close``
closes the coordinator before the client), and with no IO thread kafka-python drives any
remaining work on the caller's thread. Pass it as ``kafka_client=`` to ``KafkaConsumer``.
"""
from __future__ import annotations

from kafka.net.compat import KafkaNetClient


class StopIOFirstClient(KafkaNetClient):  # type: ignore[misc]
    """``KafkaNetClient`` whose full close stops the IO thread before closing connections."""

    def close(self, node_id: str | int | None = None) -> None:
        if node_id is None:
            self._net.stop()
        super().close(node_id=node_id)
