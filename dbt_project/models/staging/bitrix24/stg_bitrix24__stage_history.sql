-- One row per Bitrix24 stage-history event (crm.stagehistory.list): a lead or deal created,
-- moved, closed, or moved to another category. Rows carry native integers; the extractor adds
-- `_entityTypeId` (1 lead, 2 deal), since lead and deal rows have separate id sequences.
with

source as (

    {{ raw_source('bitrix24', 'bitrix24__stagehistory') }}

),

latest as (

    {{ latest_version('source') }}

),

-- the history record's own fields as text, each payload parsed once (macros/json.sql)
fields as (

    select
        latest.account,
        latest.extracted_at,
        {{ json_str_columns('latest.payload', {
            'history_id': 'ID',
            'entity_type_id': '_entityTypeId',
            'owner_id': 'OWNER_ID',
            'history_type_id': 'TYPE_ID',
            'category_id': 'CATEGORY_ID',
            'stage_id': 'STAGE_ID',
            'status_id': 'STATUS_ID',
            'stage_semantic_id': 'STAGE_SEMANTIC_ID',
            'status_semantic_id': 'STATUS_SEMANTIC_ID',
            'created_time': 'CREATED_TIME',
        }) }}
    from latest

),

renamed as (

    select
        ----------  ids
        fields.account,
        cast(fields.history_id as bigint) as history_id,
        case cast(fields.entity_type_id as integer)
            when 1 then 'lead'
            when 2 then 'deal'
        end as entity_type,
        cast(fields.owner_id as bigint) as owner_id,
        -- 1 created, 2 moved, 3 final stage, 5 category changed
        cast(fields.history_type_id as integer) as history_type_id,

        ----------  stage: deals have CATEGORY_ID / STAGE_*, leads STATUS_*
        cast(fields.category_id as integer) as category_id,
        coalesce(
            fields.stage_id,
            fields.status_id
        ) as stage_id,
        upper(coalesce(
            fields.stage_semantic_id,
            fields.status_semantic_id
        )) as stage_semantic,

        ----------  timestamps (local, reporting time zone)
        {{ iso_to_local('fields.created_time') }} as changed_at,

        ----------  lineage
        fields.extracted_at as _extracted_at

    from fields

)

select * from renamed
