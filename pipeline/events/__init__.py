"""Typed records to ECS event dicts: the schema mapping and its helpers."""
