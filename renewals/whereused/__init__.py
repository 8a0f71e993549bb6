"""Where-used: which integration flows, channels and steps use a keystore alias.

`parser` is the pure part (flow export ZIP -> key usages, no Django); the index service that
stores the usages per tenant builds on it.
"""
