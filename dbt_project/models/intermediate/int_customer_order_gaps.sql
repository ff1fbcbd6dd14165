-- One row per pair of consecutive orders of a customer (orders numbered by int_orders:
-- ordered_at, then order_id): the gap in days from the earlier order to the next one, and
-- the earlier order's product_category. A customer with n orders has n - 1 gaps; same-day
-- repeat orders give a gap of 0. Feeds the median inter-order gap of dim_customers.
with

orders as (

    select customer_id, order_id, order_number, order_date, product_category
    from {{ ref('int_orders') }}

),

paired as (

    select
        customer_id,
        order_id,
        order_number,
        order_date,
        lag(order_id) over (partition by customer_id order by order_number) as previous_order_id,
        lag(order_date) over (partition by customer_id order by order_number)
            as previous_order_date,
        lag(product_category) over (partition by customer_id order by order_number)
            as previous_product_category
    from orders

),

final as (

    select
        customer_id,
        order_id,
        order_number,
        previous_order_id,
        previous_order_date,
        order_date,
        cast({{ dbt.datediff('previous_order_date', 'order_date', 'day') }} as integer)
            as gap_days,
        previous_product_category
    from paired
    where previous_order_id is not null

)

select * from final
