"""Built-in presets: one TOML file each."""
