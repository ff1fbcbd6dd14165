-- One row per source: the as-of date this build reported up to (and which rule set it:
-- configured | data | today), the source's data range, and how many of its records are dated
-- after the as-of date and so left out of every mart (a future-dated order, a deal closed
-- "tomorrow"). Published with the marts, so a BI reader can see what "today" meant.
-- Dates per source, the same ones int_as_of_date reads:
--   crm_leads            leads/deals created, updated, closed and their stage changes;
--                        left out when created after the as-of date (int_leads__enriched)
--   amocrm_transactions  completed_at (int_orders)
--   files_orders         order_date (int_orders; the landing already quarantines orders
--                        dated after today in Moscow or VORONKA_AS_OF_DATE)
--   ad_spend             spend_date (fct_ad_spend_daily)
-- and one row per source system (source_kind = system; the rows above are source_kind =
-- dataset), so a reader sees how far each connector's data reaches:
--   amocrm               leads created / updated / closed, lead status events, buyer
--                        transactions (records: leads created, transactions)
--   bitrix24             leads and deals created / updated / closed, stage history
--                        (records: leads and deals created)
--   files                file orders (order_date) and offline ad spend files (spend_date)
--   yandex_direct, vk_ads, google_ads, meta_ads
--                        the platform's API spend rows (spend_date); a platform with no
--                        data has null dates
with

as_of as (

    select as_of_date, as_of_basis from {{ ref('int_as_of_date') }}

),

leads as (

    select crm, created_at, updated_at, closed_at from {{ ref('int_crm__leads_unioned') }}

),

stage_changes as (

    select 'amocrm' as crm, changed_at from {{ ref('stg_amocrm__lead_status_events') }}
    union all
    select 'bitrix24', changed_at from {{ ref('stg_bitrix24__stage_history') }}

),

crm_leads as (

    select
        'crm_leads' as source,
        (select min(cast(created_at as date)) from leads) as first_data_date,
        (
            select max(d) from (
                select max(cast(created_at as date)) as d from leads
                union all
                select max(cast(updated_at as date)) from leads
                union all
                select max(cast(closed_at as date)) from leads
                union all
                select max(cast(changed_at as date)) from stage_changes
            ) as newest
        ) as last_data_date,
        (
            select count(*) from leads cross join as_of
            where cast(leads.created_at as date) > as_of.as_of_date
        ) as records_after_as_of

),

dated as (

    select 'amocrm_transactions' as source, cast(completed_at as date) as record_date
    from {{ ref('stg_amocrm__transactions') }}
    union all
    select 'files_orders', order_date from {{ ref('stg_files__orders') }}
    union all
    select 'ad_spend', spend_date from {{ ref('int_ad_spend__unioned') }}

),

known_sources as (

    select 'amocrm_transactions' as source
    union all
    select 'files_orders'
    union all
    select 'ad_spend'

),

other_sources as (

    select
        known_sources.source,
        min(dated.record_date) as first_data_date,
        max(dated.record_date) as last_data_date,
        count(case when dated.record_date > as_of.as_of_date then 1 end) as records_after_as_of
    from known_sources
    cross join as_of
    left join dated
        on known_sources.source = dated.source
    group by known_sources.source

),

-- per source system: every dated thing it sends; is_record marks the dates that count as a
-- record for records_after_as_of (a lead's creation, an order, a spend row; not its edits)
system_dates as (

    select crm as source, cast(created_at as date) as data_date, 1 as is_record from leads
    union all
    select crm, cast(updated_at as date), 0 from leads
    union all
    select crm, cast(closed_at as date), 0 from leads
    union all
    select crm, cast(changed_at as date), 0 from stage_changes
    union all
    select 'amocrm', cast(completed_at as date), 1
    from {{ ref('stg_amocrm__transactions') }}
    union all
    select 'files', order_date, 1 from {{ ref('stg_files__orders') }}
    union all
    select source, spend_date, 1 from {{ ref('int_ad_spend__unioned') }}

),

known_systems as (

    {% for system in ['amocrm', 'bitrix24', 'files', 'yandex_direct', 'vk_ads', 'google_ads',
                      'meta_ads'] %}
    select '{{ system }}' as source
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

systems as (

    select
        known_systems.source,
        min(case when system_dates.is_record = 1 then system_dates.data_date end)
            as first_data_date,
        max(system_dates.data_date) as last_data_date,
        count(case when system_dates.is_record = 1
            and system_dates.data_date > as_of.as_of_date then 1 end) as records_after_as_of
    from known_systems
    cross join as_of
    left join system_dates
        on known_systems.source = system_dates.source
    group by known_systems.source

),

final as (

    select
        cast(sources.source as {{ dbt.type_string() }}) as source,
        as_of.as_of_date,
        cast(as_of.as_of_basis as {{ dbt.type_string() }}) as as_of_basis,
        sources.first_data_date,
        sources.last_data_date,
        cast(sources.records_after_as_of as bigint) as records_after_as_of,
        cast(sources.source_kind as {{ dbt.type_string() }}) as source_kind
    from (
        select *, 'dataset' as source_kind from crm_leads
        union all
        select *, 'dataset' as source_kind from other_sources
        union all
        select *, 'system' as source_kind from systems
    ) as sources
    cross join as_of

)

select * from final
