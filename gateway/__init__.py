"""The HTTP gateway of one node (Litestar): JSON API with OpenAPI, a small dashboard, and
cross-level queries answered from the node's store or forwarded down over gRPC.

Design: the gateway holds no state of its own; every handler reads the node's store or asks
the node (for writes that must be signed, and for federated queries). Writes need the node's
admin token (``Authorization: Bearer …``).
"""
