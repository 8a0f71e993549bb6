"""Management commands of the keystore app."""
