-- One row per CRM user (manager) of both CRMs; user_id as text, unique per (crm, account).
with

amocrm as (

    select
        'amocrm' as crm,
        account,
        cast(user_id as varchar) as user_id,
        user_name,
        email,
        is_active
    from {{ ref('stg_amocrm__users') }}

),

bitrix24 as (

    select
        'bitrix24' as crm,
        account,
        cast(user_id as varchar) as user_id,
        user_name,
        email,
        is_active
    from {{ ref('stg_bitrix24__users') }}

),

unioned as (

    select * from amocrm
    union all
    select * from bitrix24

)

select * from unioned
