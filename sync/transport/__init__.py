"""Transports. ``nats``: JetStream streams for the cascade (down) and result bundles (up), with
durable pull consumers that survive restarts and ``Nats-Msg-Id`` de-duplication. ``grpc``: the
Federation service between a parent and its children (catch-up, direct submission, query).
Neither decides what a message means; the protocol roles in ``sync`` do.
"""
