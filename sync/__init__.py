"""Signing, trust and the two directions of federation traffic.

Design:
- ``envelope``: DSSE-style signed envelopes over exact payload bytes. Verification works on the
  bytes as received; nothing is re-encoded before a signature check.
- ``keys`` / ``trust``: Ed25519 keys, node certificates issued by the parent, and verification of
  a certificate chain up to the pinned province key, including scope (a node speaks only for
  its own code, and only for codes below its issuer's).
- ``codec``: protobuf <-> domain conversion, used only at these edges.
- ``cascade_sender`` / ``cascade_receiver``: frameworks flowing down.
- ``results_sender`` / ``results_receiver``: signed result bundles flowing up.
- ``transport/nats`` (JetStream streams, durable consumers, message-id de-duplication) and
  ``transport/grpc`` (catch-up, direct submission, federated query).

Receiving is idempotent: every effect is written in the same transaction as an inbox row keyed
by (origin, message id); a retry finds the row and changes nothing.
"""
