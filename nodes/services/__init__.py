"""The node's services, one module per role; each gets its dependencies from the composition
root (``nodes/runtime.py``) and none imports the gateway or the runtime.

| module | role |
|---|---|
| ``context`` | what every service shares: who this node is, its config, store, clock, limits, wake-ups |
| ``outbox`` | relay committed outbox rows to JetStream, with per-subject order and send errors |
| ``trust`` | heartbeats and revocation as a parent; the parent's heartbeat and catch-up as a child |
| ``cascade`` | frameworks: receive and derive (down the cascade), publish an office's own |
| ``results`` | children's bundles over NATS and gRPC, gap repair, our bundles for the parent |
| ``scoring`` | score, rank, grade, roll up, and report upwards when complete |
| ``baseline`` | growth's 上年数值: last cycle's values carried onto this cycle's tree (区划调整), in the assessment documents |
| ``entry`` | values and assessments entered at this node |
| ``review`` | 审核: approve or return a child's bundle held for review |
| ``query`` | the federated drill-down (gRPC Query) |
| ``read_models`` | what the gateway shows: status, sync state, frameworks, rankings, values, audit |
"""
