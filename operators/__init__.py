"""Model work: image loading, VLM tasks, embeddings and the answer cache.

Nothing here imports ray, kafka or redis at module level, so the package runs alone on a GPU box.

Where things are:
- `spec.ModelSpec`, `loading.load_vlm`: what to load and the AutoProcessor/AutoModel seam.
- `images.ImageLoader` (with `fetch` for SSRF-safe http): bytes, base64, file://, http(s)://.
- `tasks.VlmOperator`: ask, classify, describe, embed over `jobs.ImageJob`s; `work` decides
  what the cache already answered, `batching` pads, `forward` is the only model-touching code.
- `cache.SignalCache`: Redis (or in-process) store of answers, captions and embeddings.
- `tiny.make_tiny` / `ensure_tiny`: seeded random-weight checkpoints of real architectures.
"""
