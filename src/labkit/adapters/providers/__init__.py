"""Provider interface and registry."""
