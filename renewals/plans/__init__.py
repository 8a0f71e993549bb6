"""Renewal plans (issue 17): for each waiting SAP key, the backends that must take the new
certificate, each with its contact and status, the planned window, the gate and the evidence."""
