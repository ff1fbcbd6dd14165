-- One row per Bitrix24 contact (newest landed version). Phones and e-mails live in
-- stg_bitrix24__contact_points, normalised.
with

source as (

    {{ raw_source('bitrix24', 'bitrix24__contacts') }}

),

latest as (

    {{ latest_version('source') }}

),

fields as (

    select
        latest.account,
        latest.record_id,
        nullif(trim({{ json_str('latest.payload', 'NAME') }}), '') as first_name,
        nullif(trim({{ json_str('latest.payload', 'LAST_NAME') }}), '') as last_name,
        latest.payload,
        latest.extracted_at
    from latest

),

renamed as (

    select
        ----------  ids
        account,
        cast(record_id as bigint) as contact_id,
        {{ optional_id(json_str('payload', 'ASSIGNED_BY_ID')) }} as responsible_user_id,

        ----------  text: Bitrix24 keeps only the parts; the full name is "NAME LAST_NAME"
        nullif(trim(coalesce(first_name, '') || ' ' || coalesce(last_name, '')), '')
            as contact_name,
        first_name,
        last_name,

        ----------  timestamps (local, reporting time zone)
        {{ iso_to_local(json_str('payload', 'DATE_CREATE')) }} as created_at,
        {{ iso_to_local(json_str('payload', 'DATE_MODIFY')) }} as updated_at,

        ----------  lineage
        extracted_at as _extracted_at

    from fields

)

select * from renamed
