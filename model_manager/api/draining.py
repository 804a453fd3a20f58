"""A grpclib server that shuts down in two steps: stop taking connections, then close what is left.

grpclib's own `close` cancels every running call and leaves the connections open. A call whose task was created
but had not run yet is cancelled before it could answer, and its client waits, with nothing to tell it otherwise,
until the connection closes (at process exit) or its deadline passes. So shutdown here:

1. `stop_accepting` closes the listener; calls on open connections go on (h2 cannot send a GOAWAY and still
   answer the calls under way, so clients learn of the shutdown at step 3);
2. the caller waits for in-flight calls;
3. `close_connections` cancels what still runs and closes every connection, so a client whose call will never be
   answered sees UNAVAILABLE at once.
"""

from __future__ import annotations

import weakref
from typing import Any

from grpclib.protocol import H2Protocol
from grpclib.server import Server


class DrainingServer(Server):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._protocols: weakref.WeakSet[H2Protocol] = weakref.WeakSet()

    def _protocol_factory(self) -> H2Protocol:
        protocol = super()._protocol_factory()
        self._protocols.add(protocol)
        return protocol

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()

    async def close_connections(self) -> None:
        self.close()
        await self.wait_closed()
        for protocol in list(self._protocols):
            connection = getattr(protocol, "connection", None)  # set once the connection is made
            if connection is not None:
                connection._transport.close()  # grpclib keeps its transport private and has no way to close it
