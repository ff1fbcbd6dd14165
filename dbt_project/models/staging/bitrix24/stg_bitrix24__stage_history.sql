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

renamed as (

    select
        ----------  ids
        latest.account,
        cast({{ json_str('latest.payload', 'ID') }} as bigint) as history_id,
        case cast({{ json_str('latest.payload', '_entityTypeId') }} as integer)
            when 1 then 'lead'
            when 2 then 'deal'
        end as entity_type,
        cast({{ json_str('latest.payload', 'OWNER_ID') }} as bigint) as owner_id,
        -- 1 created, 2 moved, 3 final stage, 5 category changed
        cast({{ json_str('latest.payload', 'TYPE_ID') }} as integer) as history_type_id,

        ----------  stage: deals have CATEGORY_ID / STAGE_*, leads STATUS_*
        cast({{ json_str('latest.payload', 'CATEGORY_ID') }} as integer) as category_id,
        coalesce(
            {{ json_str('latest.payload', 'STAGE_ID') }},
            {{ json_str('latest.payload', 'STATUS_ID') }}
        ) as stage_id,
        upper(coalesce(
            {{ json_str('latest.payload', 'STAGE_SEMANTIC_ID') }},
            {{ json_str('latest.payload', 'STATUS_SEMANTIC_ID') }}
        )) as stage_semantic,

        ----------  timestamps (local, reporting time zone)
        {{ iso_to_local(json_str('latest.payload', 'CREATED_TIME')) }} as changed_at,

        ----------  lineage
        latest.extracted_at as _extracted_at

    from latest

)

select * from renamed
