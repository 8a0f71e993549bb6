"""TLS connectivity tests of a tenant's backends, with a key pair of its keystore.

The pure handshake lives in probe.py (no Django); this app adds the Django side: the recorded run
(models), the one service function that validates, resolves key material and records
(services), the addresses a test may reach (addresses, pure), how many tests may run (limits),
their settings (conf), the admin page and result page (admin), and the `connectivity_test`
command.
"""
