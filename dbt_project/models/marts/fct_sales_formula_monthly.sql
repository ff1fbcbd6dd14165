{{ config(meta={'margin_rate': var('margin_rate', 1)}) }}
-- The sales formula, one row per month of int_months (first activity .. as-of month):
--   value = leads x cv x aov x orders_per_customer x margin
--         = leads x (customers / leads) x (revenue / orders) x (orders / customers)
--           x (gross_margin / revenue)
--         = gross_margin,
-- and month over month the log decomposition ln(V1/V0) = sum over factors of ln(f1/f0).
-- gross_margin = the sum of the month's orders' int_orders.gross_margin: each order's own
-- source margin where it has one, else amount x var `margin_rate` (default 1: with no source
-- margins value is the month's revenue); margin_known_share = revenue of orders with a source
-- margin / revenue. margin_rate is the var, shown for reference. month_complete: the as-of
-- date is after the month's last day.
{#- Validated here: a non-numeric var would be pasted into SQL, and a rate outside [0, 1]
    is not a margin. -#}
{% set margin_rate = var('margin_rate', 1) | string | trim %}
{% if not modules.re.match('^(0(\\.[0-9]+)?|1(\\.0*)?|\\.[0-9]+)$', margin_rate) %}
    {{ exceptions.raise_compiler_error(
        "var margin_rate must be a number in [0, 1], got '" ~ margin_rate ~ "'") }}
{% endif %}

with

months as (

    select month from {{ ref('int_months') }}

),

leads as (

    select created_month as month, count(*) as leads
    from {{ ref('int_leads__enriched') }}
    group by created_month

),

orders as (

    -- customers = distinct buyers of the month (a customer ordering twice counts once here
    -- and twice in orders: that ratio is orders_per_customer)
    select
        order_month as month,
        count(*) as orders,
        count(distinct customer_id) as customers,
        sum(amount) as revenue,
        sum(gross_margin) as gross_margin,
        sum(case when has_source_margin then amount else 0 end) as revenue_source_margin
    from {{ ref('int_orders') }}
    group by order_month

),

counted as (

    select
        months.month,
        coalesce(leads.leads, 0) as leads,
        coalesce(orders.customers, 0) as customers,
        coalesce(orders.orders, 0) as orders,
        -- money first: revenue and gross margin are what the product must reconcile to
        {{ money('coalesce(orders.revenue, 0)') }} as revenue,
        {{ money('coalesce(orders.gross_margin, 0)') }} as gross_margin,
        {{ money('coalesce(orders.revenue_source_margin, 0)') }} as revenue_source_margin
    from months
    left join leads
        on months.month = leads.month
    left join orders
        on months.month = orders.month

),

factors as (

    -- Factors stay double precision (never rounded): rounding cv or aov would make their
    -- product miss the revenue by more than a cent. Only value is rounded, once, at the end.
    select
        month,
        leads,
        customers,
        orders,
        revenue,
        cast({{ margin_rate }} as double precision) as margin_rate,
        gross_margin,
        {{ safe_divide('revenue_source_margin', 'revenue') }} as margin_known_share,
        -- no revenue: margin undefined (null)
        {{ safe_divide('gross_margin', 'revenue') }} as margin,
        -- no leads: cv undefined (null); leads but no buyer: cv = 0
        {{ safe_divide('customers', 'leads') }} as cv,
        -- no orders: aov and orders_per_customer undefined (null)
        {{ safe_divide('revenue', 'orders') }} as aov,
        {{ safe_divide('orders', 'customers') }} as orders_per_customer
    from counted

),

valued as (

    select
        factors.*,
        -- full-precision product: drives the log decomposition (a rounded value would not
        -- add up to the factors' logs). No orders: value is 0 (nothing was sold, whatever the
        -- null factors); orders without leads: the formula is undefined, value null.
        case
            when orders = 0 then cast(0 as double precision)
            else cast(leads as double precision) * cv * aov * orders_per_customer * margin
        end as value_exact
    from factors

),

with_previous as (

    -- int_months is gapless, so the previous row is the previous calendar month
    select
        valued.*,
        lag(leads) over (order by month) as leads_0,
        lag(cv) over (order by month) as cv_0,
        lag(aov) over (order by month) as aov_0,
        lag(orders_per_customer) over (order by month) as orders_per_customer_0,
        lag(margin) over (order by month) as margin_0,
        lag(value_exact) over (order by month) as value_exact_0
    from valued

),

final as (

    select
        with_previous.month,
        {{ add_months('with_previous.month', 1) }} <= as_of.as_of_date as month_complete,
        cast(leads as bigint) as leads,
        cast(customers as bigint) as customers,
        cast(orders as bigint) as orders,
        revenue,
        margin_rate,
        gross_margin,
        margin_known_share,
        cv,
        aov,
        orders_per_customer,
        margin,
        {{ money('value_exact') }} as value,
        -- contribution_<f> = ln(f1 / f0), only where the factor is positive in both months
        -- (ln of 0 fails on PostgreSQL; a null or zero factor explains nothing: null)
        {% for factor in ['leads', 'cv', 'aov', 'orders_per_customer', 'margin'] -%}
        case
            when {{ factor }}_0 > 0 and {{ factor }} > 0
                then ln({{ safe_divide(factor, factor ~ '_0') }})
        end as contribution_{{ factor }},
        {% endfor -%}
        case
            when value_exact_0 > 0 and value_exact > 0
                then ln(value_exact / value_exact_0)
        end as value_log_change
    from with_previous
    cross join {{ ref('int_as_of_date') }} as as_of

)

select * from final
