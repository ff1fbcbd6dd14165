-- One row per order (won lead or deal, amoCRM transaction, file order) up to the as-of date,
-- numbered per customer.
-- channel = the customer's first-touch channel. currency = the one account currency (file rows in
-- another are quarantined; a mart check refuses two currencies in one mart).
with

orders as (

    select * from {{ ref('int_orders') }}

),

channels as (

    select * from {{ ref('int_customer_channel') }}

),

final as (

    select
        orders.order_id,
        orders.order_source,
        orders.lead_id,
        orders.customer_id,
        orders.order_date,
        orders.order_month,
        {{ money('orders.amount') }} as amount,
        orders.currency,
        {{ money('orders.gross_margin') }} as gross_margin,
        orders.margin_known,
        orders.product_category,
        orders.order_number,
        orders.order_number = 1 as is_first_order,
        channels.channel
    from orders
    left join channels
        on orders.customer_id = channels.customer_id

)

select * from final
