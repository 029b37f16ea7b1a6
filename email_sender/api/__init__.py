"""The HTTP API: app factory, dependencies, security, middleware and one router per resource."""
