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
with

as_of as (

    select as_of_date, as_of_basis from {{ ref('int_as_of_date') }}

),

leads as (

    select created_at, updated_at, closed_at from {{ ref('int_crm__leads_unioned') }}

),

stage_changes as (

    select changed_at from {{ ref('stg_amocrm__lead_status_events') }}
    union all
    select changed_at from {{ ref('stg_bitrix24__stage_history') }}

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

final as (

    select
        cast(sources.source as {{ dbt.type_string() }}) as source,
        as_of.as_of_date,
        cast(as_of.as_of_basis as {{ dbt.type_string() }}) as as_of_basis,
        sources.first_data_date,
        sources.last_data_date,
        cast(sources.records_after_as_of as bigint) as records_after_as_of
    from (
        select * from crm_leads
        union all
        select * from other_sources
    ) as sources
    cross join as_of

)

select * from final
