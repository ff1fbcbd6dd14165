-- One row per phone or e-mail typed on a Bitrix24 lead (PHONE / EMAIL multifields): a lead
-- that never got a contact is still someone, found through these.
{{ staged_contact_points('bitrix24_lead', 'bigint') }}
