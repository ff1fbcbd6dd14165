-- One row per amoCRM lead reported deleted (`/api/v4/leads?with=only_deleted`): the API
-- gives just {id, updated_at, is_deleted}, so deleted_at is that updated_at. A lead restored
-- later comes back in the normal list with a newer updated_at; stg_amocrm__leads compares
-- the two (see there).
with

source as (

    {{ raw_source('amocrm', 'amocrm__deleted_leads') }}

),

latest as (

    {{ latest_version('source') }}

),

renamed as (

    select
        latest.account,
        cast(latest.record_id as bigint) as lead_id,
        {{ epoch_to_local(json_str('latest.payload', 'updated_at')) }} as deleted_at
    from latest
    -- the endpoint only returns deleted leads; the flag is checked in case that changes
    where coalesce({{ json_str('latest.payload', 'is_deleted') }}, 'true') = 'true'

)

select * from renamed
