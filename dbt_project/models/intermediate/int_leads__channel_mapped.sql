-- One row per lead with its acquisition channel, from its own UTM tags and the
-- `channel_mapping` seed: an exact (utm_source, utm_medium) row wins, then a '*' source row
-- for the medium; no UTM at all is `direct`; anything else is `other`.
with

leads as (

    select account, lead_id, utm_source, utm_medium
    from {{ ref('stg_amocrm__leads') }}

),

mapping as (

    select
        lower(trim(utm_source)) as utm_source,
        lower(trim(utm_medium)) as utm_medium,
        channel
    from {{ ref('channel_mapping') }}

),

mapped as (

    select
        leads.account,
        leads.lead_id,
        case
            when leads.utm_source is null and leads.utm_medium is null then 'direct'
            else coalesce(exact_match.channel, any_source.channel, 'other')
        end as channel
    from leads
    left join mapping as exact_match
        on exact_match.utm_source <> '*'
        and leads.utm_source = exact_match.utm_source
        and leads.utm_medium = exact_match.utm_medium
    left join mapping as any_source
        on any_source.utm_source = '*'
        and leads.utm_medium = any_source.utm_medium

)

select * from mapped
