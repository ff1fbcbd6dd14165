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

consent_field as (

    select
        latest.account,
        latest.record_id,
        -- a checkbox holds one value; any false wins over a true (withdrawal is what counts)
        min(case
            when lower({{ json_str('cf.value', 'values.0.value') }}) in ('true', '1') then 1
            when lower({{ json_str('cf.value', 'values.0.value') }}) in ('false', '0') then 0
        end) as consent_flag
    from latest
    {{ json_array_elements('latest.payload', 'custom_fields_values', 'cf') }}
    where {{ json_str('cf.value', 'field_code') }} = '{{ var("consent_field_code") }}'
    group by latest.account, latest.record_id

),

birthday_field as (

    select
        latest.account,
        latest.record_id,
        min(case
            when {{ json_str('cf.value', 'values.0.value') }} like '____-__-__%'
                then {{ date_prefix(json_str('cf.value', 'values.0.value')) }}
            else cast({{ epoch_to_local(json_str('cf.value', 'values.0.value')) }} as date)
        end) as birthday
    from latest
    {{ json_array_elements('latest.payload', 'custom_fields_values', 'cf') }}
    where {{ json_str('cf.value', 'field_type') }} = 'birthday'
    group by latest.account, latest.record_id

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

renamed as (

    select
        ----------  ids
        latest.account,
        cast(latest.record_id as bigint) as contact_id,
        cast({{ json_str('latest.payload', 'responsible_user_id') }} as bigint)
            as responsible_user_id,

        ----------  text
        {{ safe_text(json_str('latest.payload', 'name')) }} as contact_name,
        {{ safe_text(json_str('latest.payload', 'first_name')) }} as first_name,
        {{ safe_text(json_str('latest.payload', 'last_name')) }} as last_name,

        ----------  booleans
        coalesce({{ json_str('latest.payload', 'is_deleted') }} = 'true', false) as is_deleted,
        -- true = consent given, false = withdrawn, null = never asked
        case consent_field.consent_flag when 1 then true when 0 then false end
            as marketing_consent,
        do_not_contact_tag.record_id is not null as is_do_not_contact,

        ----------  dates
        birthday_field.birthday,

        ----------  timestamps (local, reporting time zone)
        {{ epoch_to_local(json_str('latest.payload', 'created_at')) }} as created_at,
        {{ epoch_to_local(json_str('latest.payload', 'updated_at')) }} as updated_at,

        ----------  lineage
        latest.extracted_at as _extracted_at

    from latest
    left join consent_field
        on latest.account = consent_field.account
        and latest.record_id = consent_field.record_id
    left join birthday_field
        on latest.account = birthday_field.account
        and latest.record_id = birthday_field.record_id
    left join do_not_contact_tag
        on latest.account = do_not_contact_tag.account
        and latest.record_id = do_not_contact_tag.record_id

)

select * from renamed
