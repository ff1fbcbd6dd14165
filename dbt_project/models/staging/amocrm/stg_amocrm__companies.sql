-- One row per amoCRM company (newest landed version), typed, timestamps in the reporting zone.
with

source as (

    {{ raw_source('amocrm', 'amocrm__companies') }}

),

latest as (

    {{ latest_version('source') }}

),

renamed as (

    select
        ----------  ids
        latest.account,
        cast(latest.record_id as bigint) as company_id,
        cast({{ json_str('latest.payload', 'responsible_user_id') }} as bigint)
            as responsible_user_id,

        ----------  text
        {{ safe_text(json_str('latest.payload', 'name')) }} as company_name,

        ----------  booleans
        coalesce({{ json_str('latest.payload', 'is_deleted') }} = 'true', false) as is_deleted,

        ----------  timestamps (local, reporting time zone)
        {{ epoch_to_local(json_str('latest.payload', 'created_at')) }} as created_at,
        {{ epoch_to_local(json_str('latest.payload', 'updated_at')) }} as updated_at,

        ----------  lineage
        latest.extracted_at as _extracted_at

    from latest

)

select * from renamed
