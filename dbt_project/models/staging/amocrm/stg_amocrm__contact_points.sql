-- One row per phone or e-mail of an amoCRM contact (PHONE / EMAIL custom fields).
{{ staged_contact_points('amocrm', 'bigint') }}
