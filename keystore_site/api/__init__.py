"""The Cloud Integration keystore API: OData V2 at /api/v1, as SAP's "Security Content" API, for
API clients per tenant (OAuth 2.0 client credentials). One more thin caller of the keystore's
and the renewals' service functions; see README "API"."""
