"""A plain model with the keystore entry's columns, for the bare Django admin baseline."""
