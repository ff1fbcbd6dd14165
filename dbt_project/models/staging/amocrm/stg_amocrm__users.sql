-- One row per amoCRM user (manager).
with

source as (

    {{ raw_source('amocrm', 'amocrm__users') }}

),

latest as (

    {{ latest_version('source') }}

),

renamed as (

    select
        latest.account,
        cast(latest.record_id as bigint) as user_id,
        {{ safe_text(json_str('latest.payload', 'name')) }} as user_name,
        lower({{ json_str('latest.payload', 'email') }}) as email,
        coalesce({{ json_str('latest.payload', 'rights.is_active') }} = 'true', false)
            as is_active,
        coalesce({{ json_str('latest.payload', 'rights.is_admin') }} = 'true', false)
            as is_admin
    from latest

)

select * from renamed
