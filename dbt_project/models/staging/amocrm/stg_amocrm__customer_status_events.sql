-- One row per buyer status change (amoCRM event `customer_status_changed`): the buyer funnel's
-- history, landed as its own entity (raw amocrm__customer_events) beside the lead events.
with

source as (

    {{ raw_source('amocrm', 'amocrm__customer_events') }}

),

latest as (

    {{ latest_version('source') }}

),

renamed as (

    select
        ----------  ids
        latest.account,
        latest.record_id as event_id,
        cast({{ json_str('latest.payload', 'entity_id') }} as bigint) as amocrm_customer_id,
        cast({{ json_str('latest.payload', 'created_by') }} as bigint) as created_by,
        cast({{ json_str('latest.payload', 'value_before.0.customer_status.id') }} as bigint)
            as status_id_before,
        cast({{ json_str('latest.payload', 'value_after.0.customer_status.id') }} as bigint)
            as status_id_after,

        ----------  timestamps (local, reporting time zone)
        {{ epoch_to_local(json_str('latest.payload', 'created_at')) }} as changed_at,

        ----------  lineage
        latest.extracted_at as _extracted_at

    from latest
    where {{ json_str('latest.payload', 'type') }} = 'customer_status_changed'
        and {{ json_str('latest.payload', 'entity_type') }} = 'customer'

)

select * from renamed
