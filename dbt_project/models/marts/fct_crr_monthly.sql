{{ config(meta={'activity_window_days': var('activity_window_days')}) }}
-- One row per calendar month (first activity .. as-of month; the as-of month ends on the
-- as-of date). A customer is active on a date when their last order before that date is at
-- most `activity_window_days` (default 180) days old.
--   S = active at the start (first day), E = active at the end (the day after period_end),
--   N = new customers (first order in the period);  crr = (E - N) / S x 100;
--   strict_retention = customers of S who ordered again within the period / S.
-- Honest periods (docs metrics.md, "Periods"): month_complete = the as-of date is after the
-- month's last day (int_months); is_warm_up = the month starts less than W days after the
-- first order in the data, so the activity window before its start reaches back before the
-- data begins: S misses customers whose orders predate the data and no customer of the data
-- can have lapsed by the month's start, which inflates CRR.
{% set window_days = var('activity_window_days') | int %}

with

orders as (

    select customer_id, order_date from {{ ref('int_orders') }}

),

customers as (

    select customer_id, first_order_date from {{ ref('dim_customers') }}

),

periods as (

    -- period_stop is exclusive: the day after the period (int_months)
    select month, month as period_start, period_stop, period_end, month_complete
    from {{ ref('int_months') }}

),

data_start as (

    select min(order_date) as first_order_date from orders

),

customer_periods as (

    select
        periods.month,
        orders.customer_id,
        max(case
            when orders.order_date >= {{ add_days('periods.period_start', -window_days) }}
                and orders.order_date < periods.period_start then 1 else 0
        end) as is_active_start,
        max(case
            when orders.order_date >= {{ add_days('periods.period_stop', -window_days) }}
                and orders.order_date < periods.period_stop then 1 else 0
        end) as is_active_end,
        max(case
            when orders.order_date >= periods.period_start
                and orders.order_date < periods.period_stop then 1 else 0
        end) as ordered_in_period
    from periods
    inner join orders
        on orders.order_date >= {{ add_days('periods.period_start', -window_days) }}
        and orders.order_date < periods.period_stop
    group by periods.month, orders.customer_id

),

activity as (

    select
        month,
        sum(is_active_start) as customers_active_start,
        sum(is_active_end) as customers_active_end,
        sum(case when is_active_start = 1 and ordered_in_period = 1 then 1 else 0 end)
            as retained_customers
    from customer_periods
    group by month

),

new_customers as (

    select
        periods.month,
        count(*) as new_customers
    from customers
    inner join periods
        on customers.first_order_date >= periods.period_start
        and customers.first_order_date < periods.period_stop
    group by periods.month

),

joined as (

    select
        periods.month,
        periods.period_end,
        periods.month_complete,
        coalesce(periods.period_start
            < {{ add_days('data_start.first_order_date', window_days) }}, true) as is_warm_up,
        coalesce(activity.customers_active_start, 0) as customers_active_start,
        coalesce(activity.customers_active_end, 0) as customers_active_end,
        coalesce(new_customers.new_customers, 0) as new_customers,
        coalesce(activity.retained_customers, 0) as retained_customers
    from periods
    cross join data_start
    left join activity
        on periods.month = activity.month
    left join new_customers
        on periods.month = new_customers.month

),

final as (

    select
        month,
        period_end,
        cast(customers_active_start as bigint) as customers_active_start,
        cast(customers_active_end as bigint) as customers_active_end,
        cast(new_customers as bigint) as new_customers,
        cast(retained_customers as bigint) as retained_customers,
        {{ safe_divide('customers_active_end - new_customers', 'customers_active_start') }}
            * 100 as crr,
        {{ safe_divide('retained_customers', 'customers_active_start') }} as strict_retention,
        month_complete,
        is_warm_up
    from joined

)

select * from final
