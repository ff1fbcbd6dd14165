-- One row per valid normalised phone or e-mail of an identity-graph node: amoCRM contacts,
-- Bitrix24 contacts, Bitrix24 leads (the form's phone and e-mail) and file orders (the
-- buyer's phone and e-mail). node_id is
-- '<source>:<account>:<id>'.
with

amocrm as (

    select {{ node_id('amocrm', 'account', 'contact_id') }} as node_id,
        point_kind, value_normalized
    from {{ ref('stg_amocrm__contact_points') }}
    where is_valid

),

bitrix24 as (

    select {{ node_id('bitrix24', 'account', 'contact_id') }} as node_id,
        point_kind, value_normalized
    from {{ ref('stg_bitrix24__contact_points') }}
    where is_valid

),

bitrix24_leads as (

    select {{ node_id('bitrix24_lead', 'account', 'contact_id') }} as node_id,
        point_kind, value_normalized
    from {{ ref('stg_bitrix24__lead_contact_points') }}
    where is_valid

),

file_orders as (

    select {{ node_id('files', 'account', 'contact_id') }} as node_id,
        point_kind, value_normalized
    from {{ ref('stg_files__order_contact_points') }}
    where is_valid

),

unioned as (

    select * from amocrm
    union
    select * from bitrix24
    union
    select * from bitrix24_leads
    union
    select * from file_orders

)

select * from unioned
