"""The records every layer shares, below all of them.

- `contracts.errors`: `Stage` and `ModerationError`, the base of every error raised on purpose.
  Standard library only, so `operators` can import it on a GPU box without pydantic.
- `contracts.records`: `Post`, `Verdict`, `DeadLetter`, `Signals` and the pieces they share, as
  frozen pydantic models; `vlmod schema NAME` prints their JSON Schemas.
- `contracts.history`: `PostRecord`, every input a post's decisions read, kept for replay.
- `contracts.decoding`: Kafka message bytes to a bounded, normalized `Post`.
- `contracts.backoff` (retry delays) and `contracts.lazy` (the other packages' public names,
  imported on first use): small pieces every layer above shares.

Nothing is imported here, so importing `contracts.errors` never pulls in pydantic.
"""
