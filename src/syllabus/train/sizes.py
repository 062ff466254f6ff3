"""Named model sizes, without importing torch (recipes validate against them)."""

# Named sizes (approximate non-embedding parameter counts in the name; vocab adds the rest).
SIZES: dict[str, dict] = {
    "1m": dict(dim=128, n_layers=4, n_heads=4, n_kv_heads=2, ffn_dim=384),
    "5m": dict(dim=256, n_layers=6, n_heads=4, n_kv_heads=2, ffn_dim=688),
    "20m": dict(dim=384, n_layers=10, n_heads=6, n_kv_heads=2, ffn_dim=1024),
    "125m": dict(dim=768, n_layers=12, n_heads=12, n_kv_heads=4, ffn_dim=2048),
    "350m": dict(dim=1024, n_layers=24, n_heads=16, n_kv_heads=4, ffn_dim=2816),
    "1b": dict(dim=2048, n_layers=20, n_heads=16, n_kv_heads=4, ffn_dim=5632),
}
