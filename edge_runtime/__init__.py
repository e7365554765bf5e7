"""The edge agent: activation, shadow sync, TinyDB cache, engine and backends.
Imports schemas only."""
