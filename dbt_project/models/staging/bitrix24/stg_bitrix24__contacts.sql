-- One row per Bitrix24 contact (newest landed version). Phones and e-mails live in
-- stg_bitrix24__contact_points, normalised.
-- Marketing consent (docs/SOURCES_CONTRACT.md, consent): the user field named by var
-- `bitrix24_consent_field` ('Y' = given, 'N' = withdrawn, absent = unknown); EXPORT = 'N'
-- (the contact is excluded from exports) = do not contact.
-- Birthday: the standard BIRTHDATE ("" when unknown; a calendar day, its offset ignored).
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
        {{ safe_text("nullif(trim(" ~ json_str('latest.payload', 'NAME') ~ "), '')") }}
            as first_name,
        {{ safe_text("nullif(trim(" ~ json_str('latest.payload', 'LAST_NAME') ~ "), '')") }}
            as last_name,
        {{ yn_to_bool(json_str('latest.payload', var('bitrix24_consent_field'))) }}
            as marketing_consent,
        {{ yn_to_bool(json_str('latest.payload', 'EXPORT')) }} as export_allowed,
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

        ----------  consent: true = given, false = withdrawn, null = never asked
        marketing_consent,
        coalesce(export_allowed = false, false) as is_do_not_contact,

        ----------  dates
        {{ date_prefix(json_str('payload', 'BIRTHDATE')) }} as birthday,

        ----------  timestamps (local, reporting time zone)
        {{ iso_to_local(json_str('payload', 'DATE_CREATE')) }} as created_at,
        {{ iso_to_local(json_str('payload', 'DATE_MODIFY')) }} as updated_at,

        ----------  lineage
        extracted_at as _extracted_at

    from fields

)

select * from renamed
