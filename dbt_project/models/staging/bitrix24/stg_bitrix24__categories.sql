-- One row per Bitrix24 deal category (pipeline), from crm.category.list (camelCase fields,
-- native JSON values). Category 0 is the portal's default pipeline.
with

source as (

    {{ raw_source('bitrix24', 'bitrix24__categories') }}

),

latest as (

    {{ latest_version('source') }}

),

renamed as (

    select
        latest.account,
        cast(latest.record_id as integer) as category_id,
        {{ safe_text(json_str('latest.payload', 'name')) }} as category_name,
        cast({{ json_str('latest.payload', 'sort') }} as integer) as category_sort,
        coalesce({{ yn_to_bool(json_str('latest.payload', 'isDefault')) }}, false) as is_default
    from latest
    -- crm.category.list serves every entity type; deals are entityTypeId 2
    where coalesce({{ json_str('latest.payload', 'entityTypeId') }}, '2') = '2'

)

select * from renamed
