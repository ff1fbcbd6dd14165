{{ config(meta={'lookalike_top_share': var('lookalike_top_share')}) }}
-- The look-alike seed audience: the top var `lookalike_top_share` (default 0.1) of
-- CONTACTABLE customers (dim_customers.is_contactable: no withdrawn consent, no do-not-contact
-- flag) by LTV = revenue to date, ranked by revenue descending, ties by customer_id.
-- Size = ceil(share x contactable customers), computed in decimals (0.1 x 870 is exactly 87).
-- lookalike_value = revenue to date: the value column Meta's value-based look-alike
-- (LOOKALIKE_VALUE) expects.
with

customers as (

    select customer_id, channel, orders_count, revenue, last_order_date
    from {{ ref('dim_customers') }}
    where is_contactable

),

ranked as (

    select
        customer_id,
        channel,
        orders_count,
        last_order_date,
        revenue,
        row_number() over (order by revenue desc, customer_id) as lookalike_rank,
        count(*) over () as contactable_customers
    from customers

),

sized as (

    select
        *,
        cast(ceil(
            cast({{ var('lookalike_top_share') }} as numeric(18, 9)) * contactable_customers
        ) as bigint) as seed_size
    from ranked

),

final as (

    select
        customer_id,
        cast(lookalike_rank as bigint) as lookalike_rank,
        revenue as lookalike_value,
        channel,
        orders_count,
        last_order_date,
        cast(contactable_customers as bigint) as contactable_customers,
        seed_size
    from sized
    where lookalike_rank <= seed_size

)

select * from final
