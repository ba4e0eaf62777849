"""The HTTP front door (FastAPI): `POST /v1/calls`, health, metrics, OpenAPI."""
