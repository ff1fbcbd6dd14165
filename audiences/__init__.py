"""Audiences: reverse ETL of marketing segments from the marts to the ad platforms (issue 5).

- ``audiences.identifiers``: customers -> normalised phones and e-mails (warehouse);
- ``audiences.platforms``: per-platform transform + hash and payload builders;
- ``audiences.export``: hashed export files plus a manifest (file-only mode);
- ``audiences.clients``: upload clients for Meta, Google, Yandex and VK.
"""
