"""Named model sizes, without importing torch (recipes validate against them)."""

# Named sizes (approximate non-embedding parameter counts in the name; vocab adds the rest).
SIZES: dict[str, dict] = {
    "1m": dict(dim=128, n_layers=4, n_heads=4, n_kv_heads=2, ffn_dim=384),
    "2m": dict(dim=192, n_layers=6, n_heads=6, n_kv_heads=2, ffn_dim=512),  # the demo's model
    "5m": dict(dim=256, n_layers=6, n_heads=4, n_kv_heads=2, ffn_dim=688),
    "20m": dict(dim=384, n_layers=10, n_heads=6, n_kv_heads=2, ffn_dim=1024),
    "125m": dict(dim=768, n_layers=12, n_heads=12, n_kv_heads=4, ffn_dim=2048),
    "350m": dict(dim=1024, n_layers=24, n_heads=16, n_kv_heads=4, ffn_dim=2816),
    "1b": dict(dim=2048, n_layers=20, n_heads=16, n_kv_heads=4, ffn_dim=5632),
}


def resolve_shape(config) -> dict:
    """A TrainConfig's named size with its explicit overrides applied (no torch needed)."""
    shape = dict(SIZES.get(config.size or "", {}))
    for key in ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim"):
        if getattr(config, key, None) is not None:
            shape[key] = getattr(config, key)
    return shape


def estimate_params(config, vocab_size: int) -> int:
    """Parameter count of a TrainConfig's model without building it (for memory checks)."""
    shape = resolve_shape(config)
    dim, layers = shape.get("dim", 0), shape.get("n_layers", 0)
    heads, kv_heads = shape.get("n_heads", 1), shape.get("n_kv_heads") or shape.get("n_heads", 1)
    ffn = shape.get("ffn_dim", 4 * dim)
    kv_dim = dim * kv_heads // max(heads, 1)
    per_layer = 2 * dim * dim + 2 * dim * kv_dim + 3 * dim * ffn + 2 * dim
    embeddings = vocab_size * dim * (1 if config.tie_embeddings else 2)
    return embeddings + layers * per_layer + dim
