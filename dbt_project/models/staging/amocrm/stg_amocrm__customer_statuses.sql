-- One row per stage of the amoCRM buyer funnel (customers statuses).
with

source as (

    {{ raw_source('amocrm', 'amocrm__customer_statuses') }}

),

latest as (

    {{ latest_version('source') }}

),

renamed as (

    select
        latest.account,
        cast(latest.record_id as bigint) as status_id,
        {{ safe_text(json_str('latest.payload', 'name')) }} as status_name,
        cast({{ json_str('latest.payload', 'sort') }} as integer) as status_sort,
        cast({{ json_str('latest.payload', 'type') }} as integer) as status_type
    from latest

)

select * from renamed
