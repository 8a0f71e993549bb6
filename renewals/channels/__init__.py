"""Chat and webhook channels of a tenant (Teams, Slack, JSON webhooks ... through apprise)."""
