-- One row per customer: when their next order is expected (metrics.md "Repeat-sales
-- segments": reminders, due / overdue / lapsed), all as of int_as_of_date.
-- The median rule:
--   median_gap_days          = median of the customer's own inter-order gaps (null with one
--                              order);
--   category_median_gap_days = for a one-order customer (or one whose own median rounds to 0
--                              days: all repeats on the same day), the median over ALL customers' gaps
--                              (int_customer_order_gaps) whose earlier order has that order's
--                              product_category (null when the order has no category or the
--                              category has no repeat yet);
--   overall_median_gap_days  = the median of all customers' gaps;
--   median_rule_gap_days     = the first of those three that is known, the own median only
--                              when it rounds to at least a day (expected_gap_basis
--                              says which);
--   median_rule_next_order_date = last order date + median_rule_gap_days rounded half up to
--                              whole days (a median of an even count can end in .5).
-- The CRM's own date (amoCRM buyer next_date, stg_amocrm__customers.next_purchase_at, local
-- date; the buyer belongs to the customer of its main contact, as its transactions do in
-- int_orders) is a candidate when the buyer is not deleted, was last updated on or before the
-- as-of date (a later update may already reflect purchases after it) and the date is AFTER
-- the customer's last order (an order on or after it, from any source, has answered it). Its
-- expected gap is the date - the last order date. A candidate applies when it is past by at
-- most its overdue expiry; the earliest applying one wins (expected_next_order_basis 'crm'),
-- else the median rule (basis customer | category | overall).
-- overdue_expiry_days = var `overdue_expiry_days` when set, else
--   max(ceil(var `overdue_expiry_gap_multiple` (2) x expected_gap_days),
--       var `overdue_expiry_min_days` (90)).
-- days_until_expected_order = expected_next_order_date - as-of date (negative when past);
-- repurchase_status: upcoming (> var `due_window_days` ahead), due (0..due_window_days),
-- overdue (past by 1..overdue_expiry_days days), lapsed (past by more); null without an
-- expectation (no gap is known anywhere).
-- Medians are continuous (the mean of the two middle gaps for an even count), the same on
-- DuckDB (quantile_cont) and PostgreSQL (percentile_cont).
{%- set due_days = var('due_window_days') | int -%}
{%- set fixed_expiry = var('overdue_expiry_days', none) -%}
{%- if fixed_expiry is not none and fixed_expiry | string | lower not in ('', 'none', 'null') -%}
    {%- set expiry_sql = 'cast(' ~ (fixed_expiry | int) ~ ' as integer)' -%}
{%- else -%}
    {%- set expiry_sql = 'greatest(cast(ceil(' ~ (var('overdue_expiry_gap_multiple') | float)
        ~ ' * GAP) as integer), ' ~ (var('overdue_expiry_min_days') | int) ~ ')' -%}
{%- endif %}
{%- set median_gap -%}
    {%- if target.type == 'postgres' -%}
        percentile_cont(0.5) within group (order by gap_days)
    {%- else -%}
        quantile_cont(gap_days, 0.5)
    {%- endif -%}
{%- endset %}

with

as_of as (

    select as_of_date from {{ ref('int_as_of_date') }}

),

orders as (

    select customer_id, order_number, order_date, product_category
    from {{ ref('int_orders') }}

),

gaps as (

    select customer_id, gap_days, previous_product_category
    from {{ ref('int_customer_order_gaps') }}

),

last_orders as (

    -- the latest order (order_number is unique per customer)
    select
        orders.customer_id,
        orders.order_date as last_order_date,
        orders.product_category as last_order_category,
        orders.order_number as orders_count
    from orders
    inner join (
        select customer_id, max(order_number) as last_number
        from orders
        group by customer_id
    ) as latest
        on orders.customer_id = latest.customer_id
        and orders.order_number = latest.last_number

),

customer_medians as (

    select customer_id, cast({{ median_gap }} as double precision) as median_gap_days
    from gaps
    group by customer_id

),

category_medians as (

    select
        previous_product_category as product_category,
        cast({{ median_gap }} as double precision) as median_gap_days
    from gaps
    where previous_product_category is not null
    group by previous_product_category

),

overall_median as (

    select cast({{ median_gap }} as double precision) as median_gap_days
    from gaps

),

joined as (

    select
        last_orders.customer_id,
        last_orders.orders_count,
        last_orders.last_order_date,
        last_orders.last_order_category,
        customer_medians.median_gap_days,
        -- a customer whose own median rounds to no gap at all (every repeat on the day of
        -- the order before) says nothing about when they come back: the category's median
        case when customer_medians.median_gap_days is null
                or customer_medians.median_gap_days < 0.5
            then category_medians.median_gap_days end as category_median_gap_days,
        overall_median.median_gap_days as overall_median_gap_days
    from last_orders
    left join customer_medians
        on last_orders.customer_id = customer_medians.customer_id
    left join category_medians
        on last_orders.last_order_category = category_medians.product_category
    cross join overall_median

),

median_rule as (

    select
        *,
        coalesce(case when median_gap_days >= 0.5 then median_gap_days end,
                 category_median_gap_days, overall_median_gap_days) as median_rule_gap_days,
        case
            when median_gap_days >= 0.5 then 'customer'
            when category_median_gap_days is not null then 'category'
            when overall_median_gap_days is not null then 'overall'
        end as expected_gap_basis
    from joined

),

median_dates as (

    select
        *,
        case when median_rule_gap_days is not null then
            {{ add_days('last_order_date', 'cast(floor(median_rule_gap_days + 0.5) as integer)') }}
        end as median_rule_next_order_date
    from median_rule

),

-- amoCRM buyers known at the as-of date, with the customer their transactions belong to
buyers as (

    select
        coalesce(customers.customer_id, 'b_' || cast(buyers.amocrm_customer_id as varchar))
            as customer_id,
        cast(buyers.next_purchase_at as date) as crm_next_order_date
    from {{ ref('stg_amocrm__customers') }} as buyers
    cross join as_of
    left join {{ ref('int_customers__resolved') }} as customers
        on customers.node_id
            = {{ node_id('amocrm', 'buyers.account', 'buyers.main_contact_id') }}
    where not buyers.is_deleted
        and buyers.next_purchase_at is not null
        and cast(coalesce(buyers.updated_at, buyers.created_at) as date) <= as_of.as_of_date

),

crm_candidates as (

    select
        buyers.customer_id,
        buyers.crm_next_order_date,
        cast({{ dbt.datediff('last_orders.last_order_date', 'buyers.crm_next_order_date', 'day') }}
            as integer) as crm_gap_days,
        cast({{ dbt.datediff('buyers.crm_next_order_date', 'as_of.as_of_date', 'day') }}
            as integer) as crm_days_past
    from buyers
    cross join as_of
    inner join last_orders
        on buyers.customer_id = last_orders.customer_id
    where buyers.crm_next_order_date > last_orders.last_order_date

),

crm_dates as (

    -- the earliest CRM date not past its overdue expiry
    select customer_id, min(crm_next_order_date) as crm_next_order_date
    from crm_candidates
    where crm_days_past <= {{ expiry_sql | replace('GAP', 'crm_gap_days') }}
    group by customer_id

),

chosen as (

    select
        median_dates.*,
        crm_dates.crm_next_order_date,
        case
            when crm_dates.crm_next_order_date is not null then 'crm'
            else median_dates.expected_gap_basis
        end as expected_next_order_basis,
        case
            when crm_dates.crm_next_order_date is not null then cast(
                {{ dbt.datediff('median_dates.last_order_date', 'crm_dates.crm_next_order_date',
                                'day') }} as double precision)
            else median_dates.median_rule_gap_days
        end as expected_gap_days,
        coalesce(crm_dates.crm_next_order_date, median_dates.median_rule_next_order_date)
            as expected_next_order_date
    from median_dates
    left join crm_dates
        on median_dates.customer_id = crm_dates.customer_id

),

timed as (

    select
        chosen.*,
        cast({{ dbt.datediff('as_of.as_of_date', 'chosen.expected_next_order_date', 'day') }}
            as integer) as days_until_expected_order,
        case when chosen.expected_next_order_date is not null then
            {{ expiry_sql | replace('GAP', 'chosen.expected_gap_days') }}
        end as overdue_expiry_days
    from chosen
    cross join as_of

),

final as (

    select
        customer_id,
        orders_count,
        last_order_date,
        last_order_category,
        median_gap_days,
        category_median_gap_days,
        overall_median_gap_days,
        median_rule_gap_days,
        expected_gap_basis,
        median_rule_next_order_date,
        crm_next_order_date,
        expected_next_order_basis,
        expected_gap_days,
        expected_next_order_date,
        days_until_expected_order,
        overdue_expiry_days,
        case
            when expected_next_order_date is null then null
            when days_until_expected_order > {{ due_days }} then 'upcoming'
            when days_until_expected_order >= 0 then 'due'
            when -days_until_expected_order <= overdue_expiry_days then 'overdue'
            else 'lapsed'
        end as repurchase_status
    from timed

)

select * from final
