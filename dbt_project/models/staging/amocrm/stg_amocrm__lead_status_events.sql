-- One row per lead status change (amoCRM event `lead_status_changed`).
with

source as (

    {{ raw_source('amocrm', 'amocrm__events') }}

),

latest as (

    {{ latest_version('source') }}

),

-- the event's own fields as text, each payload parsed once (macros/json.sql)
fields as (

    select
        latest.account,
        latest.record_id,
        latest.extracted_at,
        {{ json_str_columns('latest.payload', {
            'entity_id': 'entity_id',
            'created_by': 'created_by',
            'pipeline_id_before': 'value_before.0.lead_status.pipeline_id',
            'status_id_before': 'value_before.0.lead_status.id',
            'pipeline_id_after': 'value_after.0.lead_status.pipeline_id',
            'status_id_after': 'value_after.0.lead_status.id',
            'created_at': 'created_at',
            'event_type': 'type',
            'entity_type': 'entity_type',
        }) }}
    from latest

),

renamed as (

    select
        ----------  ids
        fields.account,
        fields.record_id as event_id,
        cast(fields.entity_id as bigint) as lead_id,
        cast(fields.created_by as bigint) as created_by,
        cast(fields.pipeline_id_before as bigint)
            as pipeline_id_before,
        cast(fields.status_id_before as bigint)
            as status_id_before,
        cast(fields.pipeline_id_after as bigint)
            as pipeline_id_after,
        cast(fields.status_id_after as bigint)
            as status_id_after,

        ----------  timestamps (local, reporting time zone)
        {{ epoch_to_local('fields.created_at') }} as changed_at,

        ----------  lineage
        fields.extracted_at as _extracted_at

    from fields
    where fields.event_type = 'lead_status_changed'
        and fields.entity_type = 'lead'

)

select * from renamed
