"""What every HTTP surface shares: the request's services and context
(``scope``), the access gate (``access`` declares, ``gate`` enforces), the
unit of work, cookies, rate-limit keys, and the surfaces that turn errors and
headers into each surface's own form (JSON problems, HTML pages, OAuth
errors). Surfaces themselves live in their capability's package."""
