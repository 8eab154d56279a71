"""Model work: image loading, VLM tasks over whole posts, embeddings and the answer cache.

Nothing here imports ray, kafka or redis at module level, so the package runs alone on a GPU box.

Where things are:
- `spec.ModelSpec`, `loading.load_vlm`: what to load and the AutoProcessor/AutoModel seam.
- `images.ImageLoader` (with `fetch` for SSRF-safe http): bytes, base64, file://, http(s)://.
- `jobs`: `PostJob` (images, text, `VlmTask`s) in, `PostSignals` (a value per task) out;
  `VlmTask`/`About`/`TaskKind` come from `contracts.vlm`. `ImageJob`/`ImageSignals` are the
  one-image view.
- `tasks.VlmOperator.run_posts` (and `run` over one-image `ImageJob`s):
  `work` decides what the cache already answered (image-level answers per image hash, post-level
  per text + image hashes), `assembly` lays out one forward's prefix rows (one per image, one
  per post) and task rows, `forward` is the only model-touching code.
- `prompts.PromptBook`: the chat template rendered and tokenized once per image count, and the
  frame around the post text; `prefixes` builds prefix token ids piece by piece, the post text
  as untrusted plain text cut to `max_text_tokens`; `batching` runs the processor per image and
  pads.
- `cache.SignalCache`: Redis (or in-process) store of answers, captions and embeddings.
- `tiny.make_tiny` / `ensure_tiny`: seeded random-weight checkpoints of real architectures.
"""
