-- One row per amoCRM loss reason.
with

source as (

    {{ raw_source('amocrm', 'amocrm__loss_reasons') }}

),

latest as (

    {{ latest_version('source') }}

),

renamed as (

    select
        latest.account,
        cast(latest.record_id as bigint) as loss_reason_id,
        {{ safe_text(json_str('latest.payload', 'name')) }} as loss_reason_name,
        cast({{ json_str('latest.payload', 'sort') }} as integer) as loss_reason_sort
    from latest

)

select * from renamed
