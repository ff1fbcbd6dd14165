-- One row per Bitrix24 portal user (user.get).
with

source as (

    {{ raw_source('bitrix24', 'bitrix24__users') }}

),

latest as (

    {{ latest_version('source') }}

),

renamed as (

    select
        latest.account,
        cast(latest.record_id as bigint) as user_id,
        {{ safe_text("nullif(trim(coalesce(" ~ json_str('latest.payload', 'NAME')
            ~ ", '') || ' ' || coalesce(" ~ json_str('latest.payload', 'LAST_NAME')
            ~ ", '')), '')") }} as user_name,
        nullif(lower(trim({{ json_str('latest.payload', 'EMAIL') }})), '') as email,
        -- user.get sends ACTIVE as JSON true/false (some portals 'Y'/'N')
        coalesce({{ yn_to_bool(json_str('latest.payload', 'ACTIVE')) }}, false) as is_active
    from latest

)

select * from renamed
