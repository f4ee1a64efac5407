"""The persistent skill memory: SQLite (the single source of truth) plus content-addressed
safetensors blobs. Knows arrays, bytes and JSON; never ``nn.Module`` classes."""
