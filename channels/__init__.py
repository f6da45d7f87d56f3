"""Channel adapters: each platform's traffic in, replies out through the platform's official SDK."""
