-- One row per amoCRM contact (newest landed version). Phones and e-mails live in
-- stg_amocrm__contact_points, normalised.
-- Marketing consent (docs/SOURCES_CONTRACT.md, consent): a checkbox custom field found by its
-- field_code, var `consent_field_code` (true = given, false = withdrawn, absent = unknown), and
-- a contact tag named var `do_not_contact_tag` (= do not contact).
-- Birthday: the first custom field of type "birthday" (user-created, so found by its type, not
-- a code): Unix time (midnight, account time zone), or an ISO date string.
with

source as (

    {{ raw_source('amocrm', 'amocrm__contacts') }}

),

latest as (

    {{ latest_version('source') }}

),

-- every custom field of the contact: code, type and first value, each element parsed once
custom_fields as (

    select
        latest.account,
        latest.record_id,
        {{ json_str_columns('cf.value', {
            'field_code': 'field_code',
            'field_type': 'field_type',
            'field_value': 'values.0.value',
        }) }}
    from latest
    {{ json_array_elements('latest.payload', 'custom_fields_values', 'cf') }}

),

consent_field as (

    select
        account,
        record_id,
        -- a checkbox holds one value; any false wins over a true (withdrawal is what counts)
        min(case
            when lower(field_value) in ('true', '1') then 1
            when lower(field_value) in ('false', '0') then 0
        end) as consent_flag
    from custom_fields
    where field_code = '{{ var("consent_field_code") }}'
    group by account, record_id

),

birthday_field as (

    select
        account,
        record_id,
        min(case
            when field_value like '____-__-__%'
                then {{ date_prefix('field_value') }}
            else cast({{ epoch_to_local('field_value') }} as date)
        end) as birthday
    from custom_fields
    where field_type = 'birthday'
    group by account, record_id

),

do_not_contact_tag as (

    select distinct
        latest.account,
        latest.record_id
    from latest
    {{ json_array_elements('latest.payload', '_embedded.tags', 'tag') }}
    where lower(trim({{ json_str('tag.value', 'name') }}))
        = lower('{{ var("do_not_contact_tag") }}')

),

-- the contact's own fields as text, each payload parsed once (macros/json.sql)
fields as (

    select
        latest.account,
        latest.record_id,
        latest.extracted_at,
        {{ json_str_columns('latest.payload', {
            'responsible_user_id': 'responsible_user_id',
            'contact_name': 'name',
            'first_name': 'first_name',
            'last_name': 'last_name',
            'is_deleted': 'is_deleted',
            'created_at': 'created_at',
            'updated_at': 'updated_at',
        }) }}
    from latest

),

renamed as (

    select
        ----------  ids
        fields.account,
        cast(fields.record_id as bigint) as contact_id,
        cast(fields.responsible_user_id as bigint)
            as responsible_user_id,

        ----------  text
        {{ safe_text('fields.contact_name') }} as contact_name,
        {{ safe_text('fields.first_name') }} as first_name,
        {{ safe_text('fields.last_name') }} as last_name,

        ----------  booleans
        coalesce(fields.is_deleted = 'true', false) as is_deleted,
        -- true = consent given, false = withdrawn, null = never asked
        case consent_field.consent_flag when 1 then true when 0 then false end
            as marketing_consent,
        do_not_contact_tag.record_id is not null as is_do_not_contact,

        ----------  dates
        birthday_field.birthday,

        ----------  timestamps (local, reporting time zone)
        {{ epoch_to_local('fields.created_at') }} as created_at,
        {{ epoch_to_local('fields.updated_at') }} as updated_at,

        ----------  lineage
        fields.extracted_at as _extracted_at

    from fields
    left join consent_field
        on fields.account = consent_field.account
        and fields.record_id = consent_field.record_id
    left join birthday_field
        on fields.account = birthday_field.account
        and fields.record_id = birthday_field.record_id
    left join do_not_contact_tag
        on fields.account = do_not_contact_tag.account
        and fields.record_id = do_not_contact_tag.record_id

)

select * from renamed
