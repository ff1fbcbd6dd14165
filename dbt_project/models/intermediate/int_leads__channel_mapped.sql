-- One row per lead (both CRMs) with its acquisition channel, from its own UTM tags and the
-- `channel_mapping` seed (rule in macros/identity.sql: exact (utm_source, utm_medium) row,
-- then a '*' source row for the medium; no UTM at all is `direct`; anything else `other`).
with

leads as (

    select account, lead_id, utm_source, utm_medium
    from {{ ref('int_crm__leads_unioned') }}

),

mapped as (

    {{ select_channel('leads', ['account', 'lead_id']) }}

)

select * from mapped
