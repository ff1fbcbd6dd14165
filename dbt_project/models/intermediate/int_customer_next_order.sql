-- One row per customer: when their next order is expected (repeat-sales "due" segments).
--   median_gap_days          = median of the customer's own inter-order gaps (null with one
--                              order);
--   category_median_gap_days = for a one-order customer, the median over ALL customers' gaps
--                              (int_customer_order_gaps) whose earlier order has that order's
--                              product_category (null when the order has no category or the
--                              category has no repeat yet);
--   overall_median_gap_days  = the median of all customers' gaps;
--   expected_gap_days        = the first of those three that is known (expected_gap_basis
--                              says which);
--   expected_next_order_date = last order date + expected_gap_days rounded half up to whole
--                              days (a median of an even count can end in .5).
-- Medians are continuous (the mean of the two middle gaps for an even count), the same on
-- DuckDB (quantile_cont) and PostgreSQL (percentile_cont).
{%- set median_gap -%}
    {%- if target.type == 'postgres' -%}
        percentile_cont(0.5) within group (order by gap_days)
    {%- else -%}
        quantile_cont(gap_days, 0.5)
    {%- endif -%}
{%- endset %}

with

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
        case when last_orders.orders_count = 1 then category_medians.median_gap_days end
            as category_median_gap_days,
        overall_median.median_gap_days as overall_median_gap_days
    from last_orders
    left join customer_medians
        on last_orders.customer_id = customer_medians.customer_id
    left join category_medians
        on last_orders.last_order_category = category_medians.product_category
    cross join overall_median

),

expected as (

    select
        *,
        coalesce(median_gap_days, category_median_gap_days, overall_median_gap_days)
            as expected_gap_days,
        case
            when median_gap_days is not null then 'customer'
            when category_median_gap_days is not null then 'category'
            when overall_median_gap_days is not null then 'overall'
        end as expected_gap_basis
    from joined

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
        expected_gap_days,
        expected_gap_basis,
        case when expected_gap_days is not null then
            {{ add_days('last_order_date', 'cast(floor(expected_gap_days + 0.5) as integer)') }}
        end as expected_next_order_date
    from expected

)

select * from final
