"""Model work: image loading, VLM tasks, embeddings and the answer cache.

Nothing here imports ray, kafka or redis at module level, so the package runs alone on a GPU box.
"""
