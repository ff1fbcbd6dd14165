"""Audiences: reverse ETL of marketing segments from the marts to the ad platforms (issue 5).

- ``audiences.identifiers``: customers -> normalised phones and e-mails (warehouse);
- ``audiences.destinations``: one adapter per destination (transform + hash, rows, create,
  add/remove, files, minimums) and the ``DESTINATIONS`` registry;
- ``audiences.platforms``: the older names of those (``PLATFORMS``, payload builders);
- ``audiences.export``: hashed export files plus a manifest (file-only mode);
- ``audiences.clients``: upload clients for Meta, Google, Yandex and VK.
"""
