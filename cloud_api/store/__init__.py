"""The cloud's store: the database engine and the batched shadow writer (DESIGN §11).

Everything that talks SQL on a hot path lives here; the per-resource services
(``cloud_api/services``) keep the database work of the REST API.
"""
