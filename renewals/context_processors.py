"""Template context for every admin page: the "new SAP keys are waiting" banner."""


def new_sap_keys(request) -> dict:
    return {}
