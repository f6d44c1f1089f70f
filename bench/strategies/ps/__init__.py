"""``ps`` and ``ssp``: the sharded parameter server. strategy (hooks and layout), worker (push and pull),
server (the lock-step server and shared state), events (the event-driven server of async and ssp), protocol
(headers and tags on the wire)."""
