"""Where-used: which integration flows, channels and steps use a keystore alias.

One module per use case, as the admin pages and commands call them:
  parser     flow export ZIP -> key usages; pure, no Django
  importing  import_flow_exports (the index's one write path) and remove_flows
  report     where_used (backend -> flow -> component) and the usage counts of list pages
  pack       the where-used CSV and the renewal pack for backend administrators
  restart    mark_restart_required (by the activation) and restart_flows
  admin      the pages, and the links other admin pages show (whereused_url, renewal_pack_url)
models and querysets hold the index; errors the WhereUsedError they all raise.
"""
