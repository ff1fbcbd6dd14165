{{ config(meta={
    'activity_window_days': var('activity_window_days'),
    'ltv_max_lifetime_years': var('ltv_max_lifetime_years', 5),
    'margin_rate': var('margin_rate', 1),
    'lapsed_days': [90, 180, 365],
}) }}
-- One row per calendar month of int_months (the as-of month ends on the as-of date). Every
-- "at the end" state is taken on period_stop = the day after period_end, exactly as
-- fct_crr_monthly does: a customer is active there when their last order before it is at most
-- W = `activity_window_days` (default 180) days old (order_date >= period_stop - W).
--   aov = revenue / orders; purchase_frequency = orders / customers with an order (the month);
--   *_12m: the 12 calendar months ending with this one (month - 11 .. period_end);
--   annual_retention = customers active on period_stop - 12 months who are active on
--     period_stop / customers active on period_stop - 12 months;
--   expected_lifetime_years = min(1 / (1 - annual_retention), `ltv_max_lifetime_years` = 5);
--   formula_ltv = aov_12m x purchase_frequency_per_year x expected_lifetime_years x
--     margin_12m, where margin_12m = gross margin / revenue of the 12 months (each order's
--     own source margin where it has one, else amount x `margin_rate`, default 1) and
--     margin_known_share = the 12 months' revenue with a source margin / their revenue;
--   month_complete = the as-of date is after the month's last day;
--   repeat_purchase_rate = customers with >= 2 orders to date / customers to date;
--   churned = customers to date not active at the end; lapsed_Nd = customers to date whose last
--     order is more than N days old on period_stop (N in 90, 180, 365).
{% set window_days = var('activity_window_days') | int %}
{% set max_lifetime_years = var('ltv_max_lifetime_years', 5) %}
{% set margin_rate = var('margin_rate', 1) %}
{% set lapsed_days = [90, 180, 365] %}
{% set max_lookback_days = (lapsed_days + [window_days]) | max %}

with

orders as (

    select customer_id, order_date, order_month, amount, gross_margin, has_source_margin,
        order_number
    from {{ ref('int_orders') }}

),

periods as (

    -- period_stop is exclusive: the day after the period (int_months)
    select month, period_stop, period_end from {{ ref('int_months') }}

),

bounded as (

    select
        month,
        period_stop,
        {{ add_months('month', -11) }} as trailing_start,
        {{ add_months('period_stop', -12) }} as year_before_stop
    from periods

),

windows as (

    select
        month,
        period_stop,
        trailing_start,
        year_before_stop,
        -- the earliest order any column of the month looks at
        least(
            trailing_start,
            {{ add_days(add_months('period_stop', -12), -window_days) }},
            {{ add_days('period_stop', -max_lookback_days) }}
        ) as lookback_start
    from bounded

),

customer_periods as (

    select
        windows.month,
        orders.customer_id,
        sum(case when orders.order_date >= windows.month then 1 else 0 end) as orders,
        sum(case when orders.order_date >= windows.month then orders.amount else 0 end)
            as revenue,
        sum(case when orders.order_date >= windows.trailing_start then 1 else 0 end)
            as orders_12m,
        sum(case when orders.order_date >= windows.trailing_start then orders.amount else 0 end)
            as revenue_12m,
        sum(case when orders.order_date >= windows.trailing_start then orders.gross_margin
                 else 0 end) as gross_margin_12m,
        sum(case when orders.order_date >= windows.trailing_start and orders.has_source_margin
                 then orders.amount else 0 end) as revenue_source_margin_12m,
        max(case
            when orders.order_date >= {{ add_days('windows.year_before_stop', -window_days) }}
                and orders.order_date < windows.year_before_stop then 1 else 0
        end) as is_active_year_before,
        max(case
            when orders.order_date >= {{ add_days('windows.period_stop', -window_days) }}
                then 1 else 0
        end) as is_active_end
        {%- for n in lapsed_days %},
        max(case
            when orders.order_date >= {{ add_days('windows.period_stop', -n) }} then 1 else 0
        end) as ordered_within_{{ n }}d
        {%- endfor %}
    from windows
    inner join orders
        on orders.order_date >= windows.lookback_start
        and orders.order_date < windows.period_stop
    group by windows.month, orders.customer_id

),

activity as (

    select
        month,
        sum(orders) as orders,
        sum(revenue) as revenue,
        sum(case when orders > 0 then 1 else 0 end) as customers_with_order,
        sum(orders_12m) as orders_12m,
        sum(revenue_12m) as revenue_12m,
        sum(gross_margin_12m) as gross_margin_12m,
        sum(revenue_source_margin_12m) as revenue_source_margin_12m,
        sum(case when orders_12m > 0 then 1 else 0 end) as customers_with_order_12m,
        sum(is_active_year_before) as customers_active_year_before,
        sum(case when is_active_year_before = 1 and is_active_end = 1 then 1 else 0 end)
            as customers_retained_year,
        sum(is_active_end) as active_customers
        {%- for n in lapsed_days %},
        sum(ordered_within_{{ n }}d) as ordered_within_{{ n }}d
        {%- endfor %}
    from customer_periods
    group by month

),

-- first and second orders per month: a customer counts to date from their first order, and
-- as a repeat customer from their second (orders are numbered by time, so the second order
-- is never dated before the first)
milestones_by_month as (

    select
        order_month,
        sum(case when order_number = 1 then 1 else 0 end) as first_orders,
        sum(case when order_number = 2 then 1 else 0 end) as second_orders
    from orders
    where order_number <= 2
    group by order_month

),

to_date as (

    select
        periods.month,
        sum(milestones_by_month.first_orders) as customers_to_date,
        sum(milestones_by_month.second_orders) as repeat_customers
    from periods
    inner join milestones_by_month
        on milestones_by_month.order_month <= periods.month
    group by periods.month

),

joined as (

    select
        periods.month,
        periods.period_end,
        coalesce(activity.orders, 0) as orders,
        coalesce(activity.revenue, 0) as revenue,
        coalesce(activity.customers_with_order, 0) as customers_with_order,
        coalesce(activity.orders_12m, 0) as orders_12m,
        coalesce(activity.revenue_12m, 0) as revenue_12m,
        coalesce(activity.gross_margin_12m, 0) as gross_margin_12m,
        coalesce(activity.revenue_source_margin_12m, 0) as revenue_source_margin_12m,
        coalesce(activity.customers_with_order_12m, 0) as customers_with_order_12m,
        coalesce(activity.customers_active_year_before, 0) as customers_active_year_before,
        coalesce(activity.customers_retained_year, 0) as customers_retained_year,
        coalesce(to_date.customers_to_date, 0) as customers_to_date,
        coalesce(to_date.repeat_customers, 0) as repeat_customers,
        coalesce(activity.active_customers, 0) as active_customers
        {%- for n in lapsed_days %},
        coalesce(activity.ordered_within_{{ n }}d, 0) as ordered_within_{{ n }}d
        {%- endfor %}
    from periods
    left join activity
        on periods.month = activity.month
    left join to_date
        on periods.month = to_date.month

),

rates as (

    select
        joined.*,
        {{ safe_divide('revenue_12m', 'orders_12m') }} as aov_12m_raw,
        {{ safe_divide('gross_margin_12m', 'revenue_12m') }} as margin_12m,
        {{ safe_divide('revenue_source_margin_12m', 'revenue_12m') }} as margin_known_share,
        {{ safe_divide('orders_12m', 'customers_with_order_12m') }}
            as purchase_frequency_per_year,
        {{ safe_divide('customers_retained_year', 'customers_active_year_before') }}
            as annual_retention
    from joined

),

lifetimes as (

    select
        rates.*,
        case
            when annual_retention is null then null
            when annual_retention >= 1
                then cast({{ max_lifetime_years }} as double precision)
            else least(1.0 / (1.0 - annual_retention),
                       cast({{ max_lifetime_years }} as double precision))
        end as expected_lifetime_years
    from rates

),

final as (

    select
        lifetimes.month,
        lifetimes.period_end,
        {{ add_months('lifetimes.month', 1) }} <= as_of.as_of_date as month_complete,
        cast(orders as bigint) as orders,
        {{ money('revenue') }} as revenue,
        cast(customers_with_order as bigint) as customers_with_order,
        {{ money(safe_divide('revenue', 'orders')) }} as aov,
        {{ safe_divide('orders', 'customers_with_order') }} as purchase_frequency,
        cast(orders_12m as bigint) as orders_12m,
        {{ money('revenue_12m') }} as revenue_12m,
        cast(customers_with_order_12m as bigint) as customers_with_order_12m,
        {{ money('aov_12m_raw') }} as aov_12m,
        purchase_frequency_per_year,
        cast(customers_active_year_before as bigint) as customers_active_year_before,
        cast(customers_retained_year as bigint) as customers_retained_year,
        annual_retention,
        expected_lifetime_years,
        cast({{ margin_rate }} as double precision) as margin_rate,
        margin_12m,
        margin_known_share,
        {{ money('aov_12m_raw * purchase_frequency_per_year * expected_lifetime_years'
                 ' * margin_12m') }} as formula_ltv,
        cast(customers_to_date as bigint) as customers_to_date,
        cast(repeat_customers as bigint) as repeat_customers,
        {{ safe_divide('repeat_customers', 'customers_to_date') }} as repeat_purchase_rate,
        cast(active_customers as bigint) as active_customers,
        cast(customers_to_date - active_customers as bigint) as churned_customers
        {%- for n in lapsed_days %},
        cast(customers_to_date - ordered_within_{{ n }}d as bigint) as lapsed_{{ n }}d
        {%- endfor %}
    from lifetimes
    cross join {{ ref('int_as_of_date') }} as as_of

)

select * from final
