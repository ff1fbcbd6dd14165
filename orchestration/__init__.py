"""Dagster definitions for voronka; the front door is `orchestration.definitions.defs`."""
