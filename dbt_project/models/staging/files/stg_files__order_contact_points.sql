-- One row per phone or e-mail of an orders-file row. The node of the identity graph is the
-- order itself: contact_id is its raw record_id (text).
{{ staged_contact_points('files', 'varchar') }}
