-- Month spine: every calendar month from the first month with any activity (lead, file
-- order or ad spend on any platform) to the as-of month, inclusive.
with recursive

as_of as (

    select * from {{ ref('int_as_of_date') }}

),

activity_months as (

    select min({{ month_start('created_at') }}) as first_month
    from {{ ref('int_crm__leads_unioned') }}
    union all
    select min({{ month_start('order_date') }})
    from {{ ref('stg_files__orders') }}
    union all
    select min({{ month_start('spend_date') }})
    from {{ ref('int_ad_spend__unioned') }}

),

bounds as (

    select
        least(coalesce(min(activity_months.first_month), max(as_of.as_of_month)),
              max(as_of.as_of_month)) as first_month,
        max(as_of.as_of_month) as last_month
    from activity_months
    cross join as_of

),

months (month_start) as (

    select first_month from bounds
    union all
    select {{ add_months('months.month_start', 1) }}
    from months
    cross join bounds
    where months.month_start < bounds.last_month

)

-- period_stop: the exclusive end of the month's reporting period (the as-of month stops the day
-- after the as-of date); period_end: its last day. Monthly marts measure "at the end" there.
-- month_complete (docs metrics.md, "Periods"): the as-of date is after the month's last day,
-- i.e. the whole month lies before the as-of date (the as-of day itself may be partial).
select
    months.month_start as month,
    {{ add_months('months.month_start', 1) }} as next_month,
    least({{ add_months('months.month_start', 1) }}, as_of.day_after_as_of_date) as period_stop,
    {{ add_days("least(" ~ add_months('months.month_start', 1) ~ ", as_of.day_after_as_of_date)", -1) }}
        as period_end,
    {{ add_months('months.month_start', 1) }} <= as_of.as_of_date as month_complete
from months
cross join as_of
