"""Message ids for JetStream (``Nats-Msg-Id``) that no other node can know in advance.

JetStream de-duplicates ``Nats-Msg-Id`` across a whole stream, not per subject. An id that another
node can compute (a bundle's or a framework's content hash) lets that node publish first, on its own
subject, under the id of a message it wants suppressed: JetStream then drops the genuine message as
a duplicate and acknowledges it, and the sender counts it delivered (issue 9 item 1). So every outbox
row gets its content id plus 96 random bits when it is written; the id stays the same for the row's
own resends (which JetStream must still de-duplicate) and is unknowable until it has been used.
"""

from __future__ import annotations

import secrets


def message_id(content_id: str) -> str:
    return f"{content_id[:64]}.{secrets.token_hex(12)}"
