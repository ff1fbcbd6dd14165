-- The one date every mart reports up to. Marts never read the wall clock: the as-of date is
-- the `as_of_date` var, or else the latest event date found in the data.
-- The refs below are declared unconditionally so the DAG is the same with or without the var:
-- depends_on: {{ ref('int_crm__leads_unioned') }}
-- depends_on: {{ ref('stg_amocrm__lead_status_events') }}
-- depends_on: {{ ref('stg_bitrix24__stage_history') }}
-- depends_on: {{ ref('stg_amocrm__transactions') }}
-- depends_on: {{ ref('stg_files__orders') }}
-- depends_on: {{ ref('int_ad_spend__unioned') }}
{% set as_of = var('as_of_date', none) %}

with

{% if as_of %}

as_of as (

    select cast('{{ as_of }}' as date) as as_of_date

),

{% else %}

event_dates as (

    select max(cast(created_at as date)) as event_date from {{ ref('int_crm__leads_unioned') }}
    union all
    select max(cast(updated_at as date)) from {{ ref('int_crm__leads_unioned') }}
    union all
    select max(cast(closed_at as date)) from {{ ref('int_crm__leads_unioned') }}
    union all
    select max(cast(changed_at as date)) from {{ ref('stg_amocrm__lead_status_events') }}
    union all
    select max(cast(changed_at as date)) from {{ ref('stg_bitrix24__stage_history') }}
    union all
    select max(cast(completed_at as date)) from {{ ref('stg_amocrm__transactions') }}
    union all
    select max(order_date) from {{ ref('stg_files__orders') }}
    union all
    select max(spend_date) from {{ ref('int_ad_spend__unioned') }}

),

as_of as (

    select max(event_date) as as_of_date from event_dates

),

{% endif %}

final as (

    select
        as_of_date,
        {{ month_start('as_of_date') }} as as_of_month,
        {{ add_days('as_of_date', 1) }} as day_after_as_of_date
    from as_of

)

select * from final
