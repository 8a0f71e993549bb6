"""Date formats (FORMAT_MODULE_PATH): every page writes a moment as keystore.timefmt.utc does."""
