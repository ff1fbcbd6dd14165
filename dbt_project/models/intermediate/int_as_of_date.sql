-- The one date every mart reports up to: the `as_of_date` var (VORONKA_AS_OF_DATE) when set;
-- else the latest event date found in the data, but never later than today in Moscow, so one
-- future-dated row (an order typed as 2099) cannot make every customer lapsed. "Today" is the
-- `as_of_today` var, or else the day this dbt invocation started (run_started_at, in the
-- `reporting_timezone`, Europe/Moscow):
-- fixed for the whole run, never the wall clock of a single query.
-- as_of_basis says which one won: configured | data | today.
-- The refs below are declared unconditionally so the DAG is the same with or without the var:
-- depends_on: {{ ref('int_crm__leads_unioned') }}
-- depends_on: {{ ref('stg_amocrm__lead_status_events') }}
-- depends_on: {{ ref('stg_bitrix24__stage_history') }}
-- depends_on: {{ ref('stg_amocrm__transactions') }}
-- depends_on: {{ ref('stg_files__orders') }}
-- depends_on: {{ ref('int_ad_spend__unioned') }}
{% set as_of = var('as_of_date', none) %}
{% set today = var('as_of_today', none) or run_started_at.astimezone(
    modules.pytz.timezone(var('reporting_timezone'))).strftime('%Y-%m-%d') %}

with

{% if as_of %}

as_of as (

    select
        cast('{{ as_of }}' as date) as as_of_date,
        cast('configured' as {{ dbt.type_string() }}) as as_of_basis

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

newest as (

    select max(event_date) as newest_date from event_dates

),

as_of as (

    select
        case
            when newest_date is null or newest_date > cast('{{ today }}' as date)
                then cast('{{ today }}' as date)
            else newest_date
        end as as_of_date,
        case
            when newest_date is null or newest_date > cast('{{ today }}' as date) then 'today'
            else 'data'
        end as as_of_basis
    from newest

),

{% endif %}

final as (

    select
        as_of_date,
        as_of_basis,
        {{ month_start('as_of_date') }} as as_of_month,
        {{ add_days('as_of_date', 1) }} as day_after_as_of_date
    from as_of

)

select * from final
