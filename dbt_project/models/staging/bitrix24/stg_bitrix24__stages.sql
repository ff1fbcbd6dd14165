-- One row per Bitrix24 funnel stage: the deal stages of every category (ENTITY_ID
-- DEAL_STAGE for category 0, DEAL_STAGE_{n} for category n) and the lead statuses
-- (ENTITY_ID STATUS), from crm.status.list. The other reference lists that method returns
-- (sources, contact types, ...) are not stages and are left out.
with

source as (

    {{ raw_source('bitrix24', 'bitrix24__statuses') }}

),

latest as (

    {{ latest_version('source') }}

),

fields as (

    select
        latest.account,
        {{ json_str('latest.payload', 'ENTITY_ID') }} as entity_id,
        {{ json_str('latest.payload', 'STATUS_ID') }} as status_id,
        {{ safe_text(json_str('latest.payload', 'NAME')) }} as stage_name,
        nullif(trim({{ json_str('latest.payload', 'SORT') }}), '') as sort_text,
        nullif(trim({{ json_str('latest.payload', 'CATEGORY_ID') }}), '') as category_text,
        upper({{ json_str('latest.payload', 'SEMANTICS') }}) as semantics_code,
        lower({{ json_str('latest.payload', 'EXTRA.SEMANTICS') }}) as extra_semantics
    from latest

),

stages as (

    select * from fields
    where entity_id = 'STATUS'
        or entity_id = 'DEAL_STAGE'
        -- DEAL_STAGE_{n}: digits only after the prefix (11 characters)
        or (
            entity_id like 'DEAL_STAGE_%'
            and length(entity_id) > 11
            and ltrim(substr(entity_id, 12), '0123456789') = ''
        )

),

renamed as (

    select
        account,
        entity_id,
        -- lead statuses have no category; deal stages: CATEGORY_ID, else the n of
        -- DEAL_STAGE_{n} (0 for DEAL_STAGE)
        case
            when entity_id = 'STATUS' then null
            when category_text is not null then cast(category_text as integer)
            when entity_id = 'DEAL_STAGE' then 0
            else cast(substr(entity_id, 12) as integer)
        end as category_id,
        status_id,
        stage_name,
        cast(sort_text as integer) as stage_sort,
        -- SEMANTICS is S / F (null for process stages); EXTRA.SEMANTICS spells it out
        -- (success / failure, and apology for a lead's "junk"-like closing statuses)
        case
            when semantics_code in ('S', 'F') then semantics_code
            when extra_semantics = 'success' then 'S'
            when extra_semantics in ('failure', 'apology') then 'F'
            else 'P'
        end as semantics
    from stages

),

flagged as (

    select
        renamed.*,
        semantics = 'S' as is_won,
        semantics = 'F' as is_lost,
        semantics = 'P' as is_open_stage
    from renamed

)

select * from flagged
