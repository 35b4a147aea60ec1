"""Pure appraisal core: frameworks, linkage checks, scoring, ranking and roll-ups.

Design: every function here takes plain values (frameworks, decimal values, weights, an
``as_of`` instant) and returns plain results with their explanations. Nothing here reads a
clock, a file, a database or a socket, and nothing imports ``nodes``, ``sync`` or ``gateway``;
that is what lets the same numbers be recomputed by an auditor from signed bytes alone.

Numbers are :class:`decimal.Decimal` throughout; the single published rounding rule is
ROUND_HALF_UP to two decimal places on final scores (see :mod:`aggregator.numbers`).
"""
