-- One row per phone or e-mail of a Bitrix24 contact (PHONE / EMAIL multifields).
{{ staged_contact_points('bitrix24', 'bigint') }}
